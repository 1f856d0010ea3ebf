//! The pull request's description — the task's evidence bundle — rebuilt at every publish so it
//! stays current with the branch, and kept as `evidence.md` in the task's attachments: the plan's
//! overview, the to-do list as checked off, every review verdict with its reviewer and the
//! commit it was given on, the QA evidence attached to the task, the test, build and lint
//! commands the agents ran with their exit codes, and the runs and usage per stage.
//!
//! Everything comes from the task doc, the run records and the transcripts, never from an
//! agent's account of its own work. Agent-written text (the doc, reasons, commands, models) is
//! untrusted: the forge renders the body as markdown, so such text is cleaned and bounded, then
//! quoted as inline code or escaped to read as plain text (`markdown`), so it can neither hide
//! text nor inject HTML, images or links. [`build`] is a pure function of its inputs; the engine
//! gathers them (`evidence`).

mod commands;
mod markdown;

pub(crate) use commands::{CommandRun, test_runs};

use domain::{Signal, Stage, TaskId};
use markdown::{code, text_block, text_line};
use store::RunRow;

/// The name of the bundle in the task's attachments (left out of the attachments it lists).
pub(crate) const EVIDENCE_FILE: &str = "evidence.md";

/// Longest plan summary taken from the doc, in characters.
const OVERVIEW_LIMIT: usize = 4_000;
/// Longest to-do item, reason, command and harness or model name shown, in characters.
const ITEM_LIMIT: usize = 300;
const REASON_LIMIT: usize = 300;
const COMMAND_LIMIT: usize = 200;
const NAME_LIMIT: usize = 80;
/// Most to-do items, commands and attachments listed.
const MAX_ITEMS: usize = 100;
const MAX_COMMANDS: usize = 30;
const MAX_ATTACHMENTS: usize = 50;

/// What the bundle is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Evidence<'a> {
    pub task: TaskId,
    pub title: &'a str,
    /// The task doc's text.
    pub doc: &'a str,
    /// The task's runs, in order.
    pub runs: &'a [RunRow],
    /// The check commands the agents ran (see [`test_runs`]), ordered by their last run.
    pub commands: &'a [CommandRun],
    /// The names of the task's attachments.
    pub attachments: &'a [String],
    /// The server's URL, if known, that the attachments' links start with.
    pub server_url: Option<&'a str>,
}

/// The bundle's markdown: the pull request's body and the content of `evidence.md`.
pub(crate) fn build(evidence: &Evidence<'_>) -> String {
    let mut body = format!(
        "Atelier task #{}: {}\n",
        evidence.task,
        text_line(evidence.title)
    );
    section(&mut body, "Plan summary", &plan_summary(evidence.doc));
    section(&mut body, "To-do list", &todo_list(evidence.doc));
    section(&mut body, "Review verdicts", &verdicts(evidence.runs));
    section(
        &mut body,
        "Test commands",
        &test_commands(evidence.commands),
    );
    section(&mut body, "QA evidence", &qa_evidence(evidence));
    section(&mut body, "Runs and usage", &usage(evidence.runs));
    body.push_str(&format!(
        "\n---\n\n_Built by Atelier from the task doc and its run records at publish time, and \
         kept as `{EVIDENCE_FILE}` in the task's attachments. Text written by agents is quoted, \
         not rendered._\n"
    ));
    body
}

fn section(body: &mut String, heading: &str, text: &str) {
    body.push_str(&format!("\n## {heading}\n\n{text}\n"));
}

/// The doc's Overview section as plain text.
fn plan_summary(doc: &str) -> String {
    let overview = doc_section(doc, "Overview").map(|text| text_block(&text, OVERVIEW_LIMIT));
    match overview {
        Some(text) if !text.is_empty() => text,
        _ => "_The task doc has no Overview, or it is empty._".to_string(),
    }
}

/// The text under the doc's `## <heading>`, up to the next heading of level 1 or 2.
fn doc_section(doc: &str, heading: &str) -> Option<String> {
    let mut lines = doc.lines();
    lines.find(|l| l.trim() == format!("## {heading}"))?;
    let text: Vec<&str> = lines
        .take_while(|l| !l.starts_with("## ") && !l.starts_with("# "))
        .collect();
    Some(text.join("\n"))
}

/// The doc's to-do items as checked, with how many are done.
fn todo_list(doc: &str) -> String {
    let items = domain::todo_items(doc);
    if items.is_empty() {
        return "_The task doc has no to-do list._".to_string();
    }
    let done = items.iter().filter(|item| item.checked).count();
    let mut text = format!("{done} of {} done.\n", items.len());
    for item in items.iter().take(MAX_ITEMS) {
        let mark = if item.checked { 'x' } else { ' ' };
        text.push_str(&format!(
            "\n- [{mark}] {}",
            text_line(&markdown::cap(&item.text, ITEM_LIMIT))
        ));
    }
    if items.len() > MAX_ITEMS {
        text.push_str(&format!(
            "\n\n_{} more items not shown._",
            items.len() - MAX_ITEMS
        ));
    }
    text
}

/// Every verdict, in order — both reviewers' when there are two, and the QA agent's results:
/// the stage and round, harness and model, the verdict, the commit it was given on and its
/// reason.
fn verdicts(runs: &[RunRow]) -> String {
    let lines: Vec<String> = runs
        .iter()
        .filter_map(|run| {
            let (verdict, reason) = match &run.signal {
                Some(Signal::Verdict { verdict, reason }) => (verdict.to_string(), reason),
                Some(Signal::Qa { result, reason }) => (format!("qa {result}"), reason),
                _ => return None,
            };
            let by = match (&run.harness, &run.model) {
                (Some(harness), Some(model)) => format!(
                    " by {} (model {})",
                    code(harness, NAME_LIMIT),
                    code(model, NAME_LIMIT)
                ),
                (Some(harness), None) => format!(" by {}", code(harness, NAME_LIMIT)),
                (None, _) => String::new(),
            };
            let commit = match &run.reviewed_commit {
                Some(sha) => format!("on commit {}", code(short_sha(sha), NAME_LIMIT)),
                None => "on an unrecorded commit".to_string(),
            };
            let reason = reason
                .as_deref()
                .filter(|r| !r.trim().is_empty())
                .map(|r| format!(" — reason: {}", code(r, REASON_LIMIT)))
                .unwrap_or_default();
            Some(format!(
                "- {} round {}{by}: **{verdict}** {commit}{reason}",
                run.stage,
                run.iteration + 1
            ))
        })
        .collect();
    if lines.is_empty() {
        "_No verdict has been given._".to_string()
    } else {
        lines.join("\n")
    }
}

/// A commit's first 7 characters when it is a hex sha, else the whole text.
fn short_sha(sha: &str) -> &str {
    if sha.len() >= 7 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        &sha[..7]
    } else {
        sha
    }
}

/// The check commands, the last `MAX_COMMANDS` of them, each with its result.
fn test_commands(commands: &[CommandRun]) -> String {
    if commands.is_empty() {
        return "_No test, build or lint command was seen in the agents' transcripts._".to_string();
    }
    let skipped = commands.len().saturating_sub(MAX_COMMANDS);
    let mut lines = Vec::new();
    if skipped > 0 {
        lines.push(format!("_{skipped} earlier commands not shown._\n"));
    }
    for run in &commands[skipped..] {
        let (mark, result) = match (run.exit_code, run.failed) {
            (Some(0), _) => ("✓", "exit 0".to_string()),
            (Some(code), _) => ("✗", format!("exit {code}")),
            (None, true) => ("✗", "failed, no exit code reported".to_string()),
            (None, false) => ("·", "no exit code reported".to_string()),
        };
        lines.push(format!(
            "- {mark} {} — {result} ({})",
            code(&run.command, COMMAND_LIMIT),
            run.stage
        ));
    }
    lines.join("\n")
}

/// The task's attachments (but the bundle itself), linked when the server's URL is known.
fn qa_evidence(evidence: &Evidence<'_>) -> String {
    let names: Vec<&String> = evidence
        .attachments
        .iter()
        .filter(|name| {
            name.as_str() != EVIDENCE_FILE && crate::attachments::check_name(name).is_ok()
        })
        .collect();
    if names.is_empty() {
        return "_No attachments._".to_string();
    }
    let base = evidence.server_url.and_then(link_base);
    let mut lines: Vec<String> = names
        .iter()
        .take(MAX_ATTACHMENTS)
        .map(|name| {
            let path = format!("/api/tasks/{}/attachments/{name}", evidence.task);
            match base {
                Some(base) => format!("- [`{name}`]({base}{path})"),
                None => format!("- `{name}` (`{path}`)"),
            }
        })
        .collect();
    if names.len() > MAX_ATTACHMENTS {
        lines.push(format!(
            "\n_{} more attachments not shown._",
            names.len() - MAX_ATTACHMENTS
        ));
    }
    lines.join("\n")
}

/// The server's URL without its trailing slash, when it is a plain http(s) URL a link can hold.
fn link_base(url: &str) -> Option<&str> {
    let url = url.trim_end_matches('/');
    let plain = (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/[]@%".contains(c));
    plain.then_some(url)
}

/// Runs, tokens, cost and wall time per stage, and in total.
fn usage(runs: &[RunRow]) -> String {
    if runs.is_empty() {
        return "_No runs._".to_string();
    }
    let mut text = String::from(
        "| Stage | Runs | Tokens in | Tokens out | Cost | Wall time |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let row = |name: &str, runs: &[&RunRow]| {
        let input: u64 = runs.iter().map(|r| r.input_tokens).sum();
        let output: u64 = runs.iter().map(|r| r.output_tokens).sum();
        let cost: f64 = runs.iter().map(|r| r.cost_usd).sum();
        let timed: Vec<i64> = runs
            .iter()
            .filter_map(|r| Some(r.ended_at? - r.started_at?))
            .collect();
        let wall = if timed.is_empty() {
            "—".to_string()
        } else {
            duration(timed.iter().map(|ms| (*ms).max(0)).sum())
        };
        format!(
            "| {name} | {} | {input} | {output} | {} | {wall} |\n",
            runs.len(),
            dollars(cost)
        )
    };
    for stage in Stage::ALL {
        let of_stage: Vec<&RunRow> = runs.iter().filter(|r| r.stage == stage).collect();
        if !of_stage.is_empty() {
            text.push_str(&row(stage.as_str(), &of_stage));
        }
    }
    let all: Vec<&RunRow> = runs.iter().collect();
    text.push_str(&row("**total**", &all));
    text.trim_end().to_string()
}

fn dollars(cost: f64) -> String {
    if cost <= 0.0 {
        "—".to_string()
    } else if cost < 0.01 {
        "<$0.01".to_string()
    } else {
        format!("${cost:.2}")
    }
}

fn duration(ms: i64) -> String {
    let secs = ms / 1000;
    match secs {
        0..10 => format!("{:.1}s", ms as f64 / 1000.0),
        10..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests;
