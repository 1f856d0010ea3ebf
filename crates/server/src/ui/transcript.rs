//! A task's transcript as HTML: one line per tool call (its call and result together, with a
//! summary — the command, the file, the exit code — and the output folded away), messages as
//! sanitized markdown, thinking folded, failures marked, ANSI escapes stripped. Served whole in
//! the task page (the last events only, with "earlier" paging) and as fragments the page's
//! script appends as the agent works (`GET /tasks/{id}/transcript?from=` or `?before=`), and as
//! pages of earlier events for a reader without script (`GET /tasks/{id}/events?before=`).

use super::layout::time;
use super::markdown;
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::{RunId, TaskId, TranscriptEvent};
use engine::api::{TranscriptCursor, TranscriptEntry, TranscriptQuery};
use maud::{Markup, html};
use serde::Deserialize;

/// Events shown at first, and per "earlier" page.
pub(crate) const PAGE: u32 = 300;
/// Output longer than this is cut in the page (the API has it whole).
const MAX_OUTPUT: usize = 20_000;

#[derive(Deserialize)]
pub(crate) struct Cursor {
    /// `<run>-<seq>`: events from this one on (inclusive: a running tool call is rendered again
    /// with its result).
    from: Option<String>,
    /// `<run>-<seq>`: the page of events before this one.
    before: Option<String>,
}

/// `GET /tasks/{id}/transcript`: `<li>` lines, newest last.
pub(crate) async fn fragment<B: Backend>(
    viewer: Viewer<B>,
    Path(id): Path<i64>,
    Query(cursor): Query<Cursor>,
) -> Response {
    let query = match (cursor.from.as_deref(), cursor.before.as_deref()) {
        (Some(from), None) => match parse_key(from) {
            Some((run, seq)) => TranscriptQuery::After {
                cursor: TranscriptCursor { run, seq: seq - 1 },
                limit: engine::api::MAX_TRANSCRIPT_LIMIT,
            },
            None => return bad_key(from),
        },
        (None, Some(before)) => match page_before(before) {
            Some(query) => query,
            None => return bad_key(before),
        },
        _ => TranscriptQuery::Last { limit: PAGE },
    };
    match viewer.backend.transcript(TaskId(id), query).await {
        Ok(page) => {
            let more = page.earlier && cursor.before.is_some();
            html! {
                (lines(&page.entries, &page.live_runs))
                @if more { (earlier_marker(&page.entries)) }
            }
            .into_response()
        }
        Err(err) => super::failure(err, viewer.who.admin).into_response(),
    }
}

/// The page of events before `<run>-<seq>` (`None` for a malformed key).
fn page_before(key: &str) -> Option<TranscriptQuery> {
    let (run, seq) = parse_key(key)?;
    Some(TranscriptQuery::Before {
        cursor: TranscriptCursor { run, seq },
        limit: PAGE,
    })
}

fn bad_key(key: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("bad transcript cursor {key:?}: expected <run>-<seq>, e.g. 12-40"),
    )
        .into_response()
}

fn parse_key(key: &str) -> Option<(RunId, i64)> {
    let (run, seq) = key.split_once('-')?;
    Some((RunId(run.parse().ok()?), seq.parse().ok()?))
}

/// The whole transcript section of the task page.
pub(crate) fn section(
    task: TaskId,
    entries: &[TranscriptEntry],
    earlier: bool,
    live: &[RunId],
) -> Markup {
    html! {
        section #transcript-panel .panel aria-labelledby="transcript-h" {
            h2 #transcript-h { "Transcript" }
            @if earlier {
                // A link to the paged transcript without script; the script loads them here.
                a #transcript-earlier href=(earlier_href(task, entries)) data-task=(task) { "Show earlier events" }
            }
            @if entries.is_empty() { p.empty #transcript-empty { "No agent has run yet." } }
            ol #transcript .transcript data-task=(task) aria-live="off" { (lines(entries, live)) }
        }
    }
}

/// The page of the events before the first of `entries`.
fn earlier_href(task: TaskId, entries: &[TranscriptEntry]) -> String {
    match entries.first() {
        Some(first) => format!("/tasks/{task}/events?before={}", key(first.run, first.seq)),
        None => format!("/tasks/{task}/events"),
    }
}

/// `GET /tasks/{id}/events?before=<run>-<seq>`: a page of the transcript's events before that
/// one (the last ones without it), linking to the page before — what "Show earlier events"
/// opens without script. Not followed live: the task page is.
pub(crate) async fn page<B: Backend>(
    viewer: Viewer<B>,
    Path(id): Path<i64>,
    // `from` is the script's, for lines newer than the page: not taken here.
    Query(cursor): Query<Cursor>,
) -> Response {
    let id = TaskId(id);
    let query = match cursor.before.as_deref() {
        Some(before) => match page_before(before) {
            Some(query) => query,
            None => return bad_key(before),
        },
        None => TranscriptQuery::Last { limit: PAGE },
    };
    let detail = match viewer.backend.task(id).await {
        Ok(detail) => detail,
        Err(err) => return super::error_page(&viewer, err),
    };
    let page = match viewer.backend.transcript(id, query).await {
        Ok(page) => page,
        Err(err) => return super::error_page(&viewer, err),
    };
    let content = html! {
        section.panel aria-label="Transcript" {
            @if page.earlier && !page.entries.is_empty() {
                p { a #events-earlier href=(earlier_href(id, &page.entries)) { "Show earlier events" } }
            }
            @if page.entries.is_empty() { p.empty { "No events here." } }
            ol #transcript-page .transcript { (lines(&page.entries, &page.live_runs)) }
            p { a href={ "/tasks/" (id) } { "Back to the task and its latest events" } }
        }
    };
    super::task::subpage(
        &viewer,
        &detail.task,
        html! { "Transcript: earlier events" },
        content,
    )
}

fn earlier_marker(entries: &[TranscriptEntry]) -> Markup {
    let first = entries
        .first()
        .map(|e| key(e.run, e.seq))
        .unwrap_or_default();
    html! { li.earlier data-before=(first) hidden {} }
}

fn key(run: RunId, seq: i64) -> String {
    format!("{}-{}", run.0, seq)
}

/// Lines for `entries`, a tool call folded together with its result when both are there: the
/// result with the call's id, or — for harnesses whose calls carry none — the next result or
/// command output of the same run before its next call. A call without a result is running
/// while its run is in `live`, and shown as having none otherwise.
pub(crate) fn lines(entries: &[TranscriptEntry], live: &[RunId]) -> Markup {
    let mut result_of = vec![None; entries.len()];
    let mut folded = vec![false; entries.len()];
    for (i, entry) in entries.iter().enumerate() {
        let TranscriptEvent::ToolCall { id, .. } = &entry.event else {
            continue;
        };
        let found = entries
            .iter()
            .enumerate()
            .skip(i + 1)
            .filter(|(j, e)| e.run == entry.run && !folded[*j])
            .take_while(|(_, e)| {
                id.is_some() || !matches!(e.event, TranscriptEvent::ToolCall { .. })
            })
            .find(|(_, e)| match (&e.event, id) {
                (TranscriptEvent::ToolResult { id: Some(rid), .. }, Some(id)) => rid == id,
                (TranscriptEvent::ToolResult { id: None, .. }, None) => true,
                (TranscriptEvent::CommandOutput { .. }, None) => true,
                _ => false,
            });
        if let Some((j, _)) = found {
            result_of[i] = Some(j);
            folded[j] = true;
        }
    }
    html! {
        @for (i, entry) in entries.iter().enumerate() {
            @if !folded[i] {
                @if let TranscriptEvent::ToolCall { name, input, .. } = &entry.event {
                    (tool_line(entry, name, input, result_of[i].map(|j| &entries[j]), live.contains(&entry.run)))
                } @else {
                    (line(entry))
                }
            }
        }
    }
}

fn tool_line(
    call: &TranscriptEntry,
    name: &str,
    input: &serde_json::Value,
    result: Option<&TranscriptEntry>,
    live: bool,
) -> Markup {
    let (output, failed, exit) = match result.map(|r| &r.event) {
        Some(TranscriptEvent::ToolResult {
            output, is_error, ..
        }) => (Some(output.as_str()), *is_error, None),
        Some(TranscriptEvent::CommandOutput {
            output, exit_code, ..
        }) => (
            Some(output.as_str()),
            exit_code.is_some_and(|c| c != 0),
            *exit_code,
        ),
        _ => (None, false, None),
    };
    let last = result.map_or(call.seq, |r| r.seq);
    let running = result.is_none() && live;
    let class = match (result.is_some(), running, failed) {
        (false, true, _) => "ev tool running",
        (false, false, _) => "ev tool unfinished",
        (true, _, true) => "ev tool fail",
        (true, _, false) => "ev tool ok",
    };
    let summary = tool_summary(input);
    html! {
        li class=(class) data-key=(key(call.run, call.seq)) data-last=(key(call.run, last))
            data-started=(call.at_ms) data-stage=(call.stage.as_str()) {
            details {
                summary {
                    span.tool-name { (name) }
                    " " code.tool-summary { (summary) }
                    @if running { " " span.elapsed data-since=(call.at_ms) { "running" } }
                    @if result.is_none() && !running { " " span.muted { "no result" } }
                    @if let Some(code) = exit { " " span class=(if failed { "status-fail" } else { "muted" }) { "exit " (code) } }
                    @else if failed { " " span.status-fail { "failed" } }
                }
                @if !input.is_null() && summary.is_empty() {
                    pre.out { (clip(&input.to_string())) }
                }
                @if let Some(output) = output { pre.out { (clip(&strip_ansi(output))) } }
            }
        }
    }
}

/// The one-line summary of a tool call: its command, file or pattern.
fn tool_summary(input: &serde_json::Value) -> String {
    for field in [
        "command",
        "cmd",
        "file_path",
        "filePath",
        "path",
        "pattern",
        "url",
        "query",
        "description",
    ] {
        match input.get(field) {
            Some(serde_json::Value::String(text)) => return first_line(text),
            Some(serde_json::Value::Array(parts)) => {
                let words: Vec<&str> = parts.iter().filter_map(|p| p.as_str()).collect();
                if !words.is_empty() {
                    return first_line(&words.join(" "));
                }
            }
            _ => {}
        }
    }
    String::new()
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(160).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

fn line(entry: &TranscriptEntry) -> Markup {
    let k = key(entry.run, entry.seq);
    let stage = entry.stage.as_str();
    match &entry.event {
        TranscriptEvent::Message { text } => html! {
            li.ev.message data-key=(k) data-last=(k) data-stage=(stage) {
                div.doc { (markdown::render(text)) }
            }
        },
        // Live typing: shown inline while the message is generated, hidden (folded) as soon as
        // any later event, the whole message first, arrives (app.css).
        TranscriptEvent::Partial { text } => html! {
            li.ev.partial data-key=(k) data-last=(k) data-stage=(stage) { (text) }
        },
        TranscriptEvent::Thinking { text } => html! {
            li.ev.thinking data-key=(k) data-last=(k) data-stage=(stage) {
                details { summary { "Thinking" } pre.out { (clip(text)) } }
            }
        },
        TranscriptEvent::CommandOutput {
            command,
            output,
            exit_code,
        } => {
            let failed = exit_code.is_some_and(|c| c != 0);
            html! {
                li class=(if failed { "ev tool fail" } else { "ev tool ok" }) data-key=(k) data-last=(k) data-stage=(stage) {
                    details {
                        summary {
                            span.tool-name { "$" } " " code.tool-summary { (first_line(command)) }
                            @if let Some(code) = exit_code { " " span class=(if failed { "status-fail" } else { "muted" }) { "exit " (code) } }
                        }
                        pre.out { (clip(&strip_ansi(output))) }
                    }
                }
            }
        }
        TranscriptEvent::ToolResult {
            output, is_error, ..
        } => html! {
            li class=(if *is_error { "ev tool fail" } else { "ev tool ok" }) data-key=(k) data-last=(k) data-stage=(stage) {
                details { summary { span.tool-name { "result" } } pre.out { (clip(&strip_ansi(output))) } }
            }
        },
        TranscriptEvent::ToolCall { name, input, .. } => tool_line(entry, name, input, None, false),
        TranscriptEvent::FileChange { path, kind } => html! {
            li.ev.file data-key=(k) data-last=(k) data-stage=(stage) { span.muted { (kind) } " " code { (path) } }
        },
        TranscriptEvent::Error { message } => html! {
            li.ev.fail.error data-key=(k) data-last=(k) data-stage=(stage) { strong { "Error: " } (strip_ansi(message)) }
        },
        TranscriptEvent::TurnEnd { ok, error, .. } => html! {
            li class=(if *ok { "ev status" } else { "ev status fail" }) data-key=(k) data-last=(k) data-stage=(stage) {
                @if *ok { "Turn ended" } @else { "Turn failed: " (error.as_deref().unwrap_or("no reason given")) }
                " · " (time(entry.at_ms))
            }
        },
        TranscriptEvent::Status { text } => html! {
            li.ev.status data-key=(k) data-last=(k) data-stage=(stage) { (text) " · " (time(entry.at_ms)) }
        },
        TranscriptEvent::Usage { .. }
        | TranscriptEvent::Session { .. }
        | TranscriptEvent::RateLimit { .. } => html! {
            li.ev.quiet data-key=(k) data-last=(k) hidden {}
        },
    }
}

fn clip(text: &str) -> String {
    if text.len() <= MAX_OUTPUT {
        return text.to_string();
    }
    let mut end = MAX_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n… ({} more bytes: see `atelier task logs`)",
        &text[..end],
        text.len() - end
    )
}

/// `text` without ANSI escape sequences (colours, cursor moves, OSC titles).
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // CSI: parameters and intermediates, then one final byte in @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                // OSC: up to BEL or ESC \
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Stage;

    fn entry(seq: i64, event: TranscriptEvent) -> TranscriptEntry {
        TranscriptEntry {
            run: RunId(1),
            stage: Stage::Implement,
            seq,
            event,
            at_ms: 1_000,
        }
    }

    #[test]
    fn ansi_escapes_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[31mred\u{1b}[0m and \u{1b}]0;title\u{7}plain"),
            "red and plain"
        );
    }

    #[test]
    fn a_tool_call_and_its_result_are_one_line_and_a_failure_is_marked() {
        let html = lines(
            &[
                entry(
                    1,
                    TranscriptEvent::ToolCall {
                        id: Some("t1".into()),
                        name: "Bash".into(),
                        input: serde_json::json!({"command": "cargo test"}),
                    },
                ),
                entry(
                    2,
                    TranscriptEvent::Message {
                        text: "meanwhile".into(),
                    },
                ),
                entry(
                    3,
                    TranscriptEvent::ToolResult {
                        id: Some("t1".into()),
                        output: "\u{1b}[31merror\u{1b}[0m".into(),
                        is_error: true,
                    },
                ),
            ],
            &[],
        )
        .into_string();
        assert_eq!(html.matches("<li").count(), 2, "{html}");
        assert!(
            html.contains(r#"class="ev tool fail" data-key="1-1" data-last="1-3""#),
            "{html}"
        );
        assert!(html.contains("cargo test"), "{html}");
        assert!(html.contains(">error<"), "{html}");
    }

    #[test]
    fn a_tool_call_without_result_is_running_only_while_its_run_is() {
        let call = [entry(
            4,
            TranscriptEvent::ToolCall {
                id: Some("t2".into()),
                name: "Write".into(),
                input: serde_json::json!({"file_path": "src/a.rs"}),
            },
        )];
        let html = lines(&call, &[RunId(1)]).into_string();
        assert!(html.contains(r#"class="ev tool running""#), "{html}");
        assert!(html.contains("src/a.rs"), "{html}");
        let ended = lines(&call, &[]).into_string();
        assert!(ended.contains(r#"class="ev tool unfinished""#), "{ended}");
        assert!(ended.contains("no result"), "{ended}");
    }

    #[test]
    fn a_call_without_an_id_takes_the_next_output_of_its_run() {
        let html = lines(
            &[
                entry(
                    1,
                    TranscriptEvent::ToolCall {
                        id: None,
                        name: "shell".into(),
                        input: serde_json::json!({"command": "make"}),
                    },
                ),
                entry(
                    2,
                    TranscriptEvent::CommandOutput {
                        command: "make".into(),
                        output: "boom".into(),
                        exit_code: Some(2),
                    },
                ),
                entry(
                    3,
                    TranscriptEvent::ToolCall {
                        id: None,
                        name: "shell".into(),
                        input: serde_json::json!({"command": "ls"}),
                    },
                ),
                entry(
                    4,
                    TranscriptEvent::CommandOutput {
                        command: "ls".into(),
                        output: "a".into(),
                        exit_code: Some(0),
                    },
                ),
            ],
            &[],
        )
        .into_string();
        assert_eq!(html.matches("<li").count(), 2, "{html}");
        assert!(
            html.contains(r#"class="ev tool fail" data-key="1-1" data-last="1-2""#),
            "{html}"
        );
        assert!(html.contains("exit 2"), "{html}");
        assert!(
            html.contains(r#"class="ev tool ok" data-key="1-3" data-last="1-4""#),
            "{html}"
        );
    }

    #[test]
    fn agent_text_cannot_inject_markup() {
        let html = lines(
            &[
                entry(
                    1,
                    TranscriptEvent::Message {
                        text: "<script>window.__pwned=1</script><img src=x onerror=alert(1)>"
                            .into(),
                    },
                ),
                entry(
                    2,
                    TranscriptEvent::ToolCall {
                        id: None,
                        name: "<b>x</b>".into(),
                        input: serde_json::json!({"command": "<script>alert(1)</script>"}),
                    },
                ),
                entry(
                    3,
                    TranscriptEvent::CommandOutput {
                        command: "ls".into(),
                        output: "<iframe src=x>".into(),
                        exit_code: Some(1),
                    },
                ),
            ],
            &[],
        )
        .into_string();
        for bad in ["<script", "onerror", "<iframe", "<b>"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(html.contains("exit 1"), "{html}");
    }
}
