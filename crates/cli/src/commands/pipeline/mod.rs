//! `atelier pipeline …`: pipeline definitions. `check` validates definition files
//! (`.atelier/pipelines.toml`) and prints each problem as `file:line: reason`; `list` shows the
//! built-in pipelines (and a file's) as a summary; `simulate` runs one task through a runnable
//! pipeline with scripted agents in a scratch repository. None needs a server.
//!
//! Status: pipelines are defined and validated; the engine runs the built-ins `standard` and
//! `yolo`.

mod simulate;

use crate::GlobalArgs;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use domain::pipeline_def::{PipelineDef, Role, StageDef, builtins};
use engine::pipelines::{Checked, check_files};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

const PIPELINE_HELP: &str = "\
A pipeline is a named list of stages (plan, implement, review, qa, refine, pr), each with the \
signals it accepts and where each leads, its caps and whether a human gate follows it. \
Built in: standard, full, yolo. A repository defines its own in .atelier/pipelines.toml \
(format: docs/pipelines.md).

Status: pipelines are defined and validated today; tasks run the built-ins standard and yolo.

Examples:
  atelier pipeline check .atelier/pipelines.toml
  atelier pipeline list
  atelier pipeline simulate --pipeline yolo --scenarios ./scenarios
  atelier pipeline list --file .atelier/pipelines.toml";

const CHECK_HELP: &str = "\
Prints `ok: <pipeline names> (<file>)` for each sound file, or every problem as \
`file:line: reason` on stderr, and exits non-zero if there is any. Checked: the TOML itself, \
unknown fields, stage kinds, the signals of each kind and where they lead, harness names and \
their models, prompt files' variables (paths relative to the file; a prompt file that cannot \
be read is a note, not an error), unreachable stages, loops without a cap, a path to `done`, \
duplicate names, and a second reviewer on the first one's harness and model.

Examples:
  atelier pipeline check .atelier/pipelines.toml
  atelier pipeline check team.toml experiments.toml

A minimal file:
  [pipeline.quick]
  [[pipeline.quick.stage]]
  kind = \"implement\"
  on = { pr-done = \"pr\" }
  [[pipeline.quick.stage]]
  kind = \"pr\"
  on = { pr-done = \"done\" }";

const LIST_HELP: &str = "\
Shows each pipeline's stages in order: the signals each accepts and where they lead, its caps \
(rounds, runs, timeout), its role when the pipeline sets one (otherwise the project's role for \
that kind of stage), and the human gates.

Examples:
  atelier pipeline list
  atelier pipeline list --file .atelier/pipelines.toml
  atelier pipeline list --json";

/// Check, show and simulate pipelines (no server needed)
#[derive(Subcommand, Debug)]
#[command(after_help = PIPELINE_HELP)]
pub enum PipelineCommand {
    /// Validate pipeline definition files; exits non-zero on any problem
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Show the built-in pipelines, and those of --file
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// Run one task through a pipeline with scripted agents in a scratch repository; exits 0
    /// when it reaches done
    #[command(after_help = simulate::SIMULATE_HELP)]
    Simulate(simulate::SimulateArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Definition files (TOML)
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Also show the pipelines of this definition file (repeatable)
    #[arg(long, value_name = "FILE")]
    file: Vec<PathBuf>,
}

pub async fn run(command: PipelineCommand, global: &GlobalArgs) -> Result<()> {
    match command {
        PipelineCommand::Check(args) => check(args, global),
        PipelineCommand::List(args) => list(args, global),
        PipelineCommand::Simulate(args) => simulate::run(args).await,
    }
}

fn check(args: CheckArgs, global: &GlobalArgs) -> Result<()> {
    let checked = check_files(&args.files);
    print_notes(&checked)?;
    if global.json {
        let report = serde_json::json!({
            "ok": checked.errors.is_empty(),
            "pipelines": checked.pipelines.iter().map(|p| serde_json::json!({
                "file": p.file, "line": p.line, "name": p.def.name,
            })).collect::<Vec<_>>(),
            "errors": checked.errors.iter().map(|e| serde_json::json!({
                "file": e.file, "line": e.line, "reason": e.reason,
            })).collect::<Vec<_>>(),
        });
        out(&format!("{report:#}\n"))?;
    } else {
        let mut text = String::new();
        for file in &args.files {
            let file = file.display().to_string();
            if checked.errors.iter().any(|e| e.file == file) {
                continue;
            }
            let names: Vec<&str> = checked
                .pipelines
                .iter()
                .filter(|p| p.file == file)
                .map(|p| p.def.name.as_str())
                .collect();
            let _ = writeln!(text, "ok: {} ({file})", names.join(", "));
        }
        out(&text)?;
        let mut errors = String::new();
        for error in &checked.errors {
            let _ = writeln!(errors, "{error}");
        }
        err(&errors)?;
    }
    match checked.errors.len() {
        0 => Ok(()),
        1 => bail!("1 problem in the pipeline definitions; fix it and check again"),
        n => bail!("{n} problems in the pipeline definitions; fix them and check again"),
    }
}

fn list(args: ListArgs, global: &GlobalArgs) -> Result<()> {
    let checked = if args.file.is_empty() {
        Checked::default()
    } else {
        check_files(&args.file)
    };
    print_notes(&checked)?;
    if !checked.errors.is_empty() {
        let mut errors = String::new();
        for error in &checked.errors {
            let _ = writeln!(errors, "{error}");
        }
        err(&errors)?;
        bail!(
            "the pipeline definitions have problems; `atelier pipeline check {}` lists them",
            args.file
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if global.json {
        let report = serde_json::json!({
            "builtin": builtins(),
            "files": checked.pipelines.iter().map(|p| serde_json::json!({
                "file": p.file, "line": p.line, "pipeline": p.def,
            })).collect::<Vec<_>>(),
        });
        return out(&format!("{report:#}\n"));
    }
    let mut text = String::from(
        "Built-in pipelines (defined and validated; tasks run `standard` and `yolo`):\n",
    );
    for def in builtins() {
        text.push('\n');
        text.push_str(&summary(&def));
    }
    for file in &args.file {
        let file = file.display().to_string();
        let _ = write!(text, "\nFrom {file}:\n");
        for pipeline in checked.pipelines.iter().filter(|p| p.file == file) {
            text.push('\n');
            text.push_str(&summary(&pipeline.def));
        }
    }
    out(&text)
}

/// A readable summary of a pipeline: one line per stage with its signals, caps and gate.
pub fn summary(def: &PipelineDef) -> String {
    let mut text = def.name.clone();
    if let Some(description) = &def.description {
        let _ = write!(text, ": {description}");
    }
    text.push('\n');
    if let Some(max) = def.max_runs {
        let _ = writeln!(text, "  at most {max} runs in all");
    }
    let width = def
        .stages
        .iter()
        .map(|s| stage_label(s).len())
        .max()
        .unwrap_or(0);
    for (i, stage) in def.stages.iter().enumerate() {
        let transitions: Vec<String> = stage
            .on
            .iter()
            .map(|t| {
                if stage.gate {
                    format!("{} → human gate → {}", t.signal, t.to)
                } else {
                    format!("{} → {}", t.signal, t.to)
                }
            })
            .collect();
        let _ = write!(
            text,
            "  {}. {:width$}  {}",
            i + 1,
            stage_label(stage),
            transitions.join(" · ")
        );
        let mut extra = Vec::new();
        if let Some(n) = stage.caps.max_rounds {
            extra.push(format!("max {n} rounds"));
        }
        if let Some(n) = stage.caps.max_runs {
            extra.push(format!("max {n} runs"));
        }
        if let Some(secs) = stage.caps.timeout_secs {
            extra.push(format!("timeout {secs} s"));
        }
        if let Some(role) = role_text(&stage.role) {
            extra.push(role);
        }
        if let Some(second) = &stage.second_reviewer {
            extra.push(format!(
                "second reviewer {}",
                role_text(second).unwrap_or_else(|| "(project's role)".into())
            ));
        }
        if !extra.is_empty() {
            let _ = write!(text, "  [{}]", extra.join("; "));
        }
        text.push('\n');
    }
    text
}

fn stage_label(stage: &StageDef) -> String {
    if stage.name == stage.kind.as_str() {
        stage.name.clone()
    } else {
        format!("{} ({})", stage.name, stage.kind)
    }
}

fn role_text(role: &Role) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(harness) = &role.harness {
        parts.push(harness.clone());
    }
    if let Some(model) = &role.model {
        parts.push(model.clone());
    }
    if let Some(effort) = &role.effort {
        parts.push(format!("effort {effort}"));
    }
    if let Some(prompt) = &role.prompt {
        parts.push(format!("prompt {prompt}"));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn print_notes(checked: &Checked) -> Result<()> {
    let mut notes = String::new();
    for note in &checked.notes {
        let _ = writeln!(notes, "{note}");
    }
    err(&notes)
}

fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

fn err(text: &str) -> Result<()> {
    let mut stderr = std::io::stderr().lock();
    stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush())
        .context("cannot write to stderr")
}
