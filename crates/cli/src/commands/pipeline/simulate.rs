//! `atelier pipeline simulate`: one task through a pipeline, played by scripted agents in a
//! scratch repository with an embedded engine and server on loopback (the demo's world, see
//! `commands::scratch`). The plan gate is approved and the pull request merged automatically;
//! what is printed is the path the task took, every guard that fired, and the final state.

use super::{err, out};
use crate::commands::scratch::{self, Embedded, POLL, repo};
use crate::commands::serve;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use domain::{Pipeline, RunStatus, Signal, TaskId, TaskState, TranscriptEvent};
use engine::Engine;
use engine::api::{FollowItem, LogEntry, NewTask, RunView, TaskDetail};
use engine::pipelines::check_files;
use futures::StreamExt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

pub const SIMULATE_HELP: &str = "\
Builds a scratch repository (a sample `greeter` project with a bare remote) in a temporary \
directory, starts an embedded engine and server on 127.0.0.1, gives each stage of the pipeline \
a scripted agent playing DIR/<stage>.json (format: crates/harness/src/scenario.rs; `atelier \
demo --keep` leaves a ready-made set), creates one task and walks it: the plan gate is approved \
and the pull request merged on the local forge automatically. No model is called and nothing \
beyond loopback is used.

It prints the path the task took (each run: stage, iteration, status, signal), every guard that \
fired (refused signals, nudges, guard blocks: to-do, stage order, no progress, repetition, \
unreviewed commits), then the final state. Exits 0 when the task reached done, 1 otherwise \
(blocked, waiting for an answer, or not done by the deadline).

Any pipeline can be simulated: a built-in (`standard` needs plan, implement, review and pr .json; \
`full` also qa and refine; `yolo` implement and pr) or one a --file defines (validated like \
`atelier pipeline check` first, then committed into the scratch repository's \
.atelier/pipelines.toml; a second reviewer needs second_review.json).

Examples:
  atelier pipeline simulate --pipeline yolo --scenarios ./scenarios
  atelier pipeline simulate --pipeline standard --scenarios ./scenarios --keep
  atelier pipeline simulate --pipeline careful --file .atelier/pipelines.toml --scenarios ./s
  atelier pipeline simulate --pipeline standard --scenarios ./scenarios --timeout-secs 300";

const TITLE: &str = "Simulated task";
const REQUEST: &str = "A task played by scripted agents (`atelier pipeline simulate`).";

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The pipeline to run: a built-in (`standard`, `full`, `yolo`) or one defined in --file
    #[arg(long, value_name = "NAME")]
    pipeline: String,
    /// The scenario directory: one DIR/<stage>.json per stage of the pipeline
    #[arg(long, value_name = "DIR")]
    scenarios: PathBuf,
    /// A pipeline definition file (validated like `atelier pipeline check`)
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Keep the scratch directory (repository, remote, data) and print where it is
    #[arg(long)]
    keep: bool,
    /// Give up (exit 1) when the task is not done after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout_secs: u64,
}

pub async fn run(args: SimulateArgs) -> Result<()> {
    let chosen = resolve(&args.pipeline, args.file.as_deref())?;
    // Check the scenario files before building anything.
    crate::commands::project::scripted_roles_for(&args.scenarios, &chosen.pipeline.stages())?;
    let scenarios = std::path::absolute(&args.scenarios)
        .with_context(|| format!("cannot make {} absolute", args.scenarios.display()))?;
    serve::init_tracing("warn");
    let dir = tempfile::Builder::new()
        .prefix("atelier-simulate-")
        .tempdir()
        .context("cannot create a temporary directory for the simulation")?;
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let outcome = simulate(dir.path(), &chosen, &scenarios, timeout).await;
    if args.keep {
        let root = dir.keep();
        println!(
            "\nkept the scratch directory {} (greeter/: the repository, remote.git: its remote, \
             data/: the server's data directory)",
            root.display()
        );
    } else {
        let root = dir.path().display().to_string();
        if let Err(e) = dir.close() {
            eprintln!("warning: cannot remove the scratch directory {root}: {e}");
        }
    }
    outcome
}

/// A pipeline to simulate: the built-in called `name`, or the one `file` defines (with its
/// file and prompt files, committed into the scratch repository's `.atelier/` as a team would).
struct Chosen {
    pipeline: Pipeline,
    files: Vec<(String, Vec<u8>)>,
}

/// The pipeline called `name` — defined in `file` when given and it defines one by that name,
/// else a built-in — or why it cannot be simulated (the file's problems, an unknown name).
fn resolve(name: &str, file: Option<&Path>) -> Result<Chosen> {
    if let Some(file) = file {
        let checked = check_files(&[file.to_path_buf()]);
        let mut text = String::new();
        for note in &checked.notes {
            let _ = writeln!(text, "{note}");
        }
        for error in &checked.errors {
            let _ = writeln!(text, "{error}");
        }
        err(&text)?;
        if !checked.errors.is_empty() || !checked.notes.is_empty() {
            bail!(
                "{} has problems (listed above); `atelier pipeline check {}` checks it again",
                file.display(),
                file.display()
            );
        }
        if let Some(defined) = checked.pipelines.into_iter().find(|p| p.def.name == name) {
            let dir = file.parent().unwrap_or(Path::new("."));
            let mut files = vec![(
                engine::pipelines::REPO_FILE.to_string(),
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
            )];
            for stage in &defined.def.stages {
                for role in std::iter::once(&stage.role).chain(&stage.second_reviewer) {
                    if let Some(prompt) = &role.prompt {
                        let bytes = std::fs::read(dir.join(prompt))
                            .with_context(|| format!("cannot read the prompt file {prompt}"))?;
                        files.push((format!(".atelier/{prompt}"), bytes));
                    }
                }
            }
            return Ok(Chosen {
                pipeline: Pipeline::new(defined.def)?,
                files,
            });
        }
    }
    Ok(Chosen {
        pipeline: Pipeline::parse_builtin(name)?,
        files: Vec::new(),
    })
}

async fn simulate(root: &Path, chosen: &Chosen, scenarios: &Path, timeout: Duration) -> Result<()> {
    let kind = &chosen.pipeline;
    let deadline = Instant::now() + timeout;
    let sample = repo::create(root).await?;
    if !chosen.files.is_empty() {
        repo::commit_files(&sample, &chosen.files).await?;
    }
    let stage_timeout = timeout.min(Duration::from_secs(60));
    let embedded = Embedded::start(root, "127.0.0.1:0".parse()?, stage_timeout).await?;
    let outcome = async {
        let stages: Vec<String> = kind.stages().iter().map(ToString::to_string).collect();
        out(&format!(
            "simulating pipeline `{kind}` ({}) with scripted agents from {}\n",
            stages.join(" → "),
            scenarios.display()
        ))?;
        let project = embedded
            .add_scripted_project(&sample, "greeter", scenarios, &kind.stages())
            .await?;
        let task = embedded
            .engine
            .create_task(NewTask {
                project: project.name.clone(),
                title: TITLE.into(),
                body: REQUEST.into(),
                priority: 0,
                technical: true,
                pipeline: Some(kind.name().into()),
            })
            .await
            .context("cannot create the task")?;
        let mut notes = Vec::new();
        let walked = tokio::select! {
            walked = tokio::time::timeout_at(deadline, walk(&embedded.engine, task.id, deadline, &mut notes)) => walked,
            _ = tokio::signal::ctrl_c() => return Err(anyhow!("interrupted")),
        };
        let detail = embedded.engine.task(task.id).await?;
        let logs = transcript(&embedded.engine, task.id).await?;
        let walk_error = match walked {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(format!(
                "timed out after {} s (--timeout-secs)",
                timeout.as_secs()
            )),
        };
        out(&report(&detail, &logs, &notes, walk_error.as_deref()))?;
        match &detail.task.state {
            TaskState::Done { .. } => Ok(()),
            state => bail!("the task did not reach done: it is {state}"),
        }
    }
    .await;
    embedded.shutdown().await;
    outcome
}

/// Drives the task like a human who approves every plan and merges every pull request, until
/// it is done or stops where only a human could move it on.
async fn walk(
    engine: &Engine,
    id: TaskId,
    deadline: Instant,
    notes: &mut Vec<String>,
) -> Result<()> {
    loop {
        let detail = engine.task(id).await?;
        match &detail.task.state {
            TaskState::Running { .. }
            | TaskState::Waiting { .. }
            | TaskState::Merging
            | TaskState::AwaitingChecks => tokio::time::sleep(POLL).await,
            TaskState::PlanGate => {
                notes.push("plan gate: approved automatically".into());
                engine
                    .approve(id)
                    .await
                    .context("cannot approve the plan")?;
            }
            TaskState::AwaitingMerge { .. } => {
                let detail = scratch::wait_for_pull_request(engine, id, deadline).await?;
                if let Some(pr) = &detail.pull_request {
                    notes.push(format!(
                        "pull request {} ({} ← {}): merged automatically on the local forge",
                        pr.url, pr.base, pr.branch
                    ));
                }
                engine
                    .merge(id)
                    .await
                    .context("cannot merge the pull request")?;
                scratch::wait_until_done(engine, id, deadline).await?;
                return Ok(());
            }
            TaskState::Done { .. }
            | TaskState::Closed
            | TaskState::NeedsInput { .. }
            | TaskState::Blocked { .. }
            | TaskState::Stopped { .. } => return Ok(()),
        }
    }
}

/// Every transcript event of the task so far.
async fn transcript(engine: &Engine, id: TaskId) -> Result<Vec<LogEntry>> {
    let mut items = engine
        .logs(id, false)
        .await
        .context("cannot read the task's transcript")?;
    let mut entries = Vec::new();
    while let Some(item) = items.next().await {
        match item {
            FollowItem::Event(entry) => entries.push(entry),
            FollowItem::End { .. } => break,
        }
    }
    Ok(entries)
}

/// A guard that fired: which, in which run, and what it said.
#[derive(Debug, PartialEq)]
struct Fired {
    guard: &'static str,
    run: Option<String>,
    text: String,
}

fn report(
    detail: &TaskDetail,
    logs: &[LogEntry],
    notes: &[String],
    walk_error: Option<&str>,
) -> String {
    let mut text = format!("\npath of task {}:\n", detail.task.id);
    if detail.runs.is_empty() {
        text.push_str("  (no run)\n");
    }
    for (i, run) in detail.runs.iter().enumerate() {
        let _ = write!(
            text,
            "  {}. {} (iteration {}, run {}): {}",
            i + 1,
            run.stage,
            run.iteration,
            run.id,
            run.status
        );
        if let Some(signal) = &run.signal {
            let _ = write!(text, ", signal {}", signal_text(signal));
        }
        if let Some(reason) = run.reason.as_deref().filter(|r| !r.is_empty()) {
            let _ = write!(text, " — {}", first_line(reason));
        }
        text.push('\n');
    }
    if detail.task.state.is_done() {
        text.push_str("  → done\n");
    }
    for note in notes {
        let _ = writeln!(text, "  · {note}");
    }

    let fired = guards_fired(&detail.runs, logs, &detail.task.state);
    let _ = writeln!(text, "\nguards fired: {}", fired.len());
    for f in &fired {
        let run = f
            .run
            .as_deref()
            .map(|r| format!(" in {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  - {} guard{run}: {}",
            f.guard,
            f.text.replace('\n', "\n      ")
        );
    }
    if let Some(error) = walk_error {
        let _ = writeln!(text, "\nsimulation stopped: {error}");
    }
    let _ = writeln!(text, "\nfinal state: {}", detail.task.state);
    text
}

fn signal_text(signal: &Signal) -> String {
    match signal {
        Signal::PlanReady => "plan-ready".into(),
        Signal::Question { text } => format!("question “{}”", first_line(text)),
        Signal::Verdict { verdict, reason } => match reason {
            Some(reason) => format!("verdict {verdict} ({})", first_line(reason)),
            None => format!("verdict {verdict}"),
        },
        Signal::PrDone { no_changes: true } => "pr-done --no-changes".into(),
        Signal::PrDone { no_changes: false } => "pr-done".into(),
        Signal::Qa { result, reason } => match reason {
            Some(reason) => format!("qa {result} ({})", first_line(reason)),
            None => format!("qa {result}"),
        },
        Signal::RefineDone => "refine-done".into(),
    }
}

fn first_line(text: &str) -> &str {
    text.trim().lines().next().unwrap_or("")
}

/// Which guard a refusal, nudge or run reason comes from, by its wording.
fn classify(text: &str) -> &'static str {
    let text = text.to_lowercase();
    if text.contains("`verdict ready` refused") || text.contains("unchecked item") {
        "to-do"
    } else if text.contains("unreviewed") || text.contains("`pr-done` refused") {
        "reviewed-commit"
    } else if text.contains("cannot start yet") || text.contains("has no review stage") {
        "stage-order"
    } else if text.contains("same tool call") || text.contains("looping") {
        "repetition"
    } else if text.contains("progress") || text.contains("no new commit") {
        "no-progress"
    } else {
        "refusal"
    }
}

fn guards_fired(runs: &[RunView], logs: &[LogEntry], state: &TaskState) -> Vec<Fired> {
    let mut fired = Vec::new();
    for entry in logs {
        let run = || Some(format!("run {} ({})", entry.run, entry.stage));
        match &entry.event {
            TranscriptEvent::ToolResult {
                output,
                is_error: true,
                ..
            } if output.contains("refused") => fired.push(Fired {
                guard: classify(output),
                run: run(),
                text: refusal_text(output),
            }),
            TranscriptEvent::Message { text } if text.starts_with("Atelier guard:") => {
                fired.push(Fired {
                    guard: classify(text),
                    run: run(),
                    text: format!("nudge: {}", first_line(text)),
                })
            }
            TranscriptEvent::Status { text } if text.contains("refused") => fired.push(Fired {
                guard: classify(text),
                run: run(),
                text: first_line(text).to_string(),
            }),
            _ => {}
        }
    }
    for run in runs {
        let Some(reason) = run.reason.as_deref() else {
            continue;
        };
        let guard = if reason.contains("without progress") {
            "no-progress"
        } else if reason.contains("looping") {
            "repetition"
        } else if reason.contains("unreviewed commits") {
            "reviewed-commit"
        } else {
            continue;
        };
        if run.status != RunStatus::Queued {
            fired.push(Fired {
                guard,
                run: Some(format!("run {} ({})", run.id, run.stage)),
                text: first_line(reason).to_string(),
            });
        }
    }
    if let TaskState::Blocked { stage, reason } = state {
        let guard = match reason.code() {
            "no_progress" => Some("no-progress"),
            "looping" => Some("repetition"),
            _ => None,
        };
        if let Some(guard) = guard {
            fired.push(Fired {
                guard,
                run: None,
                text: format!("blocked the task at {stage}: {}", reason.code()),
            });
        }
    }
    fired
}

/// A refusal as the agent read it, without the CLI's `error: ` prefix, at most a few lines.
fn refusal_text(output: &str) -> String {
    let lines: Vec<&str> = output
        .trim()
        .lines()
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .take(4)
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_by_their_guard() {
        assert_eq!(
            classify(
                "error: `verdict ready` refused: the task doc's to-do list still has 1 unchecked item(s)"
            ),
            "to-do"
        );
        assert_eq!(
            classify("`pr-done` refused: the task branch's head 3f2c is not the commit"),
            "reviewed-commit"
        );
        assert_eq!(
            classify("Atelier guard: you made the same tool call with the same input"),
            "repetition"
        );
        assert_eq!(
            classify("Atelier guard: your last turn ended with no new commit on the task branch"),
            "no-progress"
        );
        assert_eq!(
            refusal_text("error: `verdict ready` refused: x\n- [ ] a\n"),
            "`verdict ready` refused: x\n- [ ] a"
        );
    }

    #[test]
    fn built_ins_resolve_and_unknown_pipelines_are_refused() {
        for name in ["standard", "full", "yolo"] {
            let chosen = resolve(name, None).unwrap();
            assert_eq!(chosen.pipeline.name(), name);
            assert!(chosen.files.is_empty());
        }
        let unknown = resolve("fast", None).err().unwrap().to_string();
        assert!(unknown.contains("unknown pipeline `fast`"), "{unknown}");
    }
}
