//! Human-readable rendering of the API's views: tables of projects and tasks, a task's detail,
//! the next step a task waits for, and one line per transcript event. `--json` bypasses all of it.

use anyhow::{Context, Result};
use domain::{Signal, TaskState, TranscriptEvent};
use engine::api::{LogEntry, ProjectView, RunView, TaskDetail, TaskView};
use serde::Serialize;
use std::fmt::Write as _;

/// Longest tool output or command output shown per event (the full text is in `--json`).
const MAX_OUTPUT_LINES: usize = 12;
/// Longest tool-call input shown (the full input is in `--json`).
const MAX_INLINE_CHARS: usize = 160;

pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode the answer as JSON")?;
    println!("{text}");
    Ok(())
}

/// Left-aligned columns separated by two spaces.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn projects(projects: &[ProjectView]) -> String {
    if projects.is_empty() {
        return "no projects yet: add one with `atelier project add <path-to-git-repo>`\n".into();
    }
    let rows: Vec<Vec<String>> = projects
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.name.clone(),
                p.default_branch.clone(),
                p.path.clone(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "BRANCH", "PATH"], &rows)
}

pub fn tasks(tasks: &[TaskView]) -> String {
    if tasks.is_empty() {
        return "no tasks: create one with `atelier task new --project P --title T`\n".into();
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.project.clone(),
                t.state.name().to_string(),
                t.priority.to_string(),
                t.title.clone(),
            ]
        })
        .collect();
    table(&["ID", "PROJECT", "STATE", "PRIO", "TITLE"], &rows)
}

/// One line about a task, plus what it waits for (if anything).
pub fn task_summary(task: &TaskView) -> String {
    let mut out = format!(
        "task {} ({}): {}\n  state: {}\n",
        task.id, task.key, task.title, task.state
    );
    if let Some(next) = next_step(task) {
        let _ = writeln!(out, "  next:  {next}");
    }
    out
}

/// What a human can do now, or `None` while agents work.
pub fn next_step(task: &TaskView) -> Option<String> {
    let id = task.id;
    match &task.state {
        TaskState::Running { .. } => None,
        TaskState::Waiting { .. } => Some(format!(
            "it retries on its own; `atelier task run {id}` retries now"
        )),
        TaskState::NeedsInput { .. } => {
            Some(format!("answer with `atelier task answer {id} \"…\"`"))
        }
        TaskState::PlanGate => Some(format!(
            "read the plan in {}, then `atelier task approve {id}` (or `atelier task request-changes {id} --feedback \"…\"`)",
            task.doc_path
        )),
        TaskState::AwaitingMerge { merge_error: None } => Some(format!(
            "review and merge the pull request (or `atelier task merge {id}`)"
        )),
        TaskState::AwaitingMerge {
            merge_error: Some(_),
        } => Some(format!(
            "fix what made the merge fail, then `atelier task merge {id}` again"
        )),
        TaskState::Merging | TaskState::AwaitingChecks => None,
        TaskState::Closed => Some(format!(
            "reopen the pull request, or `atelier task resume {id}` to run the pr stage again"
        )),
        TaskState::Blocked { .. } | TaskState::Stopped { .. } => Some(format!(
            "fix what stopped it, then `atelier task resume {id}`"
        )),
        TaskState::Done { .. } => None,
    }
}

pub fn task_detail(detail: &TaskDetail) -> String {
    let task = &detail.task;
    let mut out = format!("task {} ({}): {}\n", task.id, task.key, task.title);
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "  {name:<13} {value}");
    };
    field("project:", &task.project);
    field("state:", &task.state.to_string());
    if let Some(next) = next_step(task) {
        field("next:", &next);
    }
    field("branch:", &task.branch);
    field("worktree:", task.worktree.as_deref().unwrap_or("(none)"));
    field("doc:", &task.doc_path);
    field(
        "counters:",
        &format!(
            "priority {}, {} review round(s), {} run(s), {}",
            task.priority,
            task.review_rounds,
            task.runs_started,
            if task.technical {
                "technical owner"
            } else {
                "non-technical owner"
            }
        ),
    );
    match &detail.pull_request {
        Some(pr) => field(
            "pull request:",
            &format!(
                "{} ({} ← {} at {}){}",
                pr.url,
                pr.base,
                pr.branch,
                short_sha(&pr.head_sha),
                if pr.merged { ", merged" } else { ", open" }
            ),
        ),
        None => field("pull request:", "(none yet)"),
    }
    if !detail.comments.is_empty() {
        out.push_str("\ncomments on the pull request:\n");
        for comment in &detail.comments {
            let what = match (&comment.status[..], comment.run, &comment.reason) {
                ("taken", Some(run), _) => format!("taken by run {run}"),
                ("ignored", _, Some(reason)) => format!("ignored: {reason}"),
                (status, _, _) => status.to_string(),
            };
            let _ = writeln!(
                out,
                "  {} {} ({}): {what}",
                comment.kind, comment.author, comment.association
            );
        }
    }
    out.push('\n');
    if detail.runs.is_empty() {
        out.push_str("no runs yet\n");
    } else {
        out.push_str(&runs(&detail.runs));
    }
    out
}

fn short_sha(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

fn runs(runs: &[RunView]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.stage.to_string(),
                r.iteration.to_string(),
                r.status.to_string(),
                r.turns.to_string(),
                r.signal.as_ref().map(signal).unwrap_or_default(),
                format!("{}/{}", r.input_tokens, r.output_tokens),
                format!("${:.4}", r.cost_usd),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "RUN",
            "STAGE",
            "ITER",
            "STATUS",
            "TURNS",
            "SIGNAL",
            "TOKENS IN/OUT",
            "COST",
            "REASON",
        ],
        &rows,
    )
}

/// A signal as the agent would have typed it.
pub fn signal(signal: &Signal) -> String {
    match signal {
        Signal::PlanReady => "plan-ready".into(),
        Signal::Question { .. } => "question".into(),
        Signal::Verdict {
            verdict,
            reason: Some(reason),
        } => format!("verdict {verdict}: {reason}"),
        Signal::Verdict {
            verdict,
            reason: None,
        } => format!("verdict {verdict}"),
        Signal::PrDone { no_changes: true } => "pr-done (no changes)".into(),
        Signal::PrDone { no_changes: false } => "pr-done".into(),
        Signal::Qa {
            result,
            reason: Some(reason),
        } => format!("qa {result}: {reason}"),
        Signal::Qa {
            result,
            reason: None,
        } => format!("qa {result}"),
        Signal::RefineDone => "refine-done".into(),
    }
}

/// `[run 3 review #12] message: …` — continuation lines are indented under the text.
pub fn log_entry(entry: &LogEntry) -> String {
    let prefix = format!("[run {} {} #{}]", entry.run, entry.stage, entry.seq);
    let body = event(&entry.event);
    let indent = " ".repeat(prefix.len() + 1);
    let mut lines = body.lines();
    let mut out = format!("{prefix} {}", lines.next().unwrap_or_default());
    for line in lines {
        let _ = write!(out, "\n{indent}{line}");
    }
    out
}

pub fn event(event: &TranscriptEvent) -> String {
    match event {
        TranscriptEvent::Session { id } => format!("session {id}"),
        TranscriptEvent::Message { text } => format!("message: {text}"),
        TranscriptEvent::Partial { text } => format!("typing: {text}"),
        TranscriptEvent::Thinking { text } => format!("thinking: {text}"),
        TranscriptEvent::ToolCall { name, input, .. } => {
            format!("tool_call {name} {}", clip_inline(&input.to_string()))
        }
        TranscriptEvent::ToolResult {
            output, is_error, ..
        } => {
            let label = if *is_error {
                "tool_result (error)"
            } else {
                "tool_result"
            };
            format!("{label}: {}", clip(output))
        }
        TranscriptEvent::CommandOutput {
            command,
            output,
            exit_code,
        } => {
            let code = exit_code.map_or_else(|| "?".to_string(), |c| c.to_string());
            format!("command `{command}` exited {code}: {}", clip(output))
        }
        TranscriptEvent::FileChange { path, kind } => format!("file {kind}: {path}"),
        TranscriptEvent::Usage {
            input_tokens,
            output_tokens,
            cost_usd,
            ..
        } => {
            format!("usage: {input_tokens} in, {output_tokens} out, ${cost_usd:.4}")
        }
        TranscriptEvent::Error { message } => format!("error: {message}"),
        TranscriptEvent::RateLimit { detail } => format!("rate limit: {detail}"),
        TranscriptEvent::TurnEnd { ok: true, .. } => "turn end: ok".into(),
        TranscriptEvent::TurnEnd {
            ok: false, error, ..
        } => {
            format!(
                "turn end: failed: {}",
                error.as_deref().unwrap_or("no reason given")
            )
        }
        TranscriptEvent::Status { text } => format!("status: {text}"),
    }
}

/// At most `MAX_INLINE_CHARS` characters of a one-line text.
fn clip_inline(text: &str) -> String {
    match text.char_indices().nth(MAX_INLINE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The first lines of a long output, saying how many were left out.
fn clip(text: &str) -> String {
    let text = text.trim_end();
    let total = text.lines().count();
    if total <= MAX_OUTPUT_LINES {
        return text.to_string();
    }
    let head: Vec<&str> = text.lines().take(MAX_OUTPUT_LINES).collect();
    format!(
        "{}\n… ({} more lines; --json shows all)",
        head.join("\n"),
        total - MAX_OUTPUT_LINES
    )
}

/// A time in ms since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(super::when(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::when(1_709_210_096_000), "2024-02-29 12:34 UTC");
    }

    use super::*;
    use domain::{RunId, Stage};

    #[test]
    fn log_lines_name_run_stage_and_seq() {
        let entry = LogEntry {
            run: RunId(3),
            stage: Stage::Review,
            seq: 12,
            event: TranscriptEvent::Message {
                text: "first\nsecond".into(),
            },
        };
        assert_eq!(
            log_entry(&entry),
            "[run 3 review #12] message: first\n                   second"
        );
        let call = TranscriptEvent::ToolCall {
            id: None,
            name: "shell".into(),
            input: serde_json::json!({"cmd": "ls"}),
        };
        assert_eq!(event(&call), r#"tool_call shell {"cmd":"ls"}"#);
    }

    #[test]
    fn long_outputs_are_clipped() {
        let long: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let clipped = clip(&long);
        assert_eq!(clipped.lines().count(), MAX_OUTPUT_LINES + 1);
        assert!(clipped.ends_with("(8 more lines; --json shows all)"));
        let wide = "é".repeat(MAX_INLINE_CHARS + 5);
        assert_eq!(clip_inline(&wide).chars().count(), MAX_INLINE_CHARS + 1);
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![vec!["1".to_string(), "a long name".to_string()]];
        assert_eq!(table(&["ID", "NAME"], &rows), "ID  NAME\n1   a long name\n");
    }
}
