//! The demo's narration of the transcript: each event once, a header when a new run starts, and
//! tool calls told by intent ("wrote greet.sh", "doc: checked …", "$ git commit …") rather than
//! as raw JSON. `atelier task logs` shows the complete events.

use domain::{RunId, Stage, TranscriptEvent};
use engine::api::{FollowItem, LogEntry};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use std::collections::HashMap;

/// Output lines shown per command (the rest is summarized).
const MAX_LINES: usize = 6;

#[derive(Default)]
pub struct Printer {
    last_seq: HashMap<RunId, i64>,
}

impl Printer {
    /// Prints new events until the stream's end marker (or its end).
    pub async fn follow(&mut self, mut items: BoxStream<'static, FollowItem>) {
        while let Some(item) = items.next().await {
            let FollowItem::Event(entry) = item else {
                return;
            };
            match self.last_seq.get(&entry.run) {
                Some(seen) if *seen >= entry.seq => continue,
                Some(_) => {}
                None => println!("\n── {} (run {}) ──", stage_title(entry.stage), entry.run),
            }
            self.last_seq.insert(entry.run, entry.seq);
            if let Some(text) = narrate(&entry) {
                println!("    {}", text.replace('\n', "\n      "));
            }
        }
    }
}

fn stage_title(stage: Stage) -> &'static str {
    match stage {
        Stage::Plan => "plan: the planner writes the plan into the task doc",
        Stage::Implement => "implement: the implementer works the to-do list",
        Stage::Review => "review: the reviewer verifies the work",
        Stage::SecondReview => "second review: another reviewer verifies the work",
        Stage::Qa => "qa: the QA agent runs the manual scenarios",
        Stage::Refine => "refine: a pass for simplicity and security",
        Stage::Pr => "pr: the branch becomes a pull request",
    }
}

/// One event as a line of the story, or `None` for bookkeeping events.
fn narrate(entry: &LogEntry) -> Option<String> {
    match &entry.event {
        TranscriptEvent::Session { .. }
        | TranscriptEvent::Usage { .. }
        | TranscriptEvent::FileChange { .. }
        | TranscriptEvent::RateLimit { .. }
        | TranscriptEvent::Partial { .. }
        | TranscriptEvent::TurnEnd { ok: true, .. } => None,
        TranscriptEvent::Message { text } => Some(format!("says: {text}")),
        TranscriptEvent::Thinking { text } => Some(format!("thinks: {text}")),
        TranscriptEvent::Status { text } => Some(format!("· {text}")),
        TranscriptEvent::ToolCall { name, input, .. } => Some(tool_call(name, input)),
        TranscriptEvent::ToolResult {
            output, is_error, ..
        } => {
            let output = output.trim();
            match (output.is_empty(), is_error) {
                (true, false) => None,
                (_, true) => Some(format!("  → failed: {}", clip(output))),
                (false, false) => Some(format!("  → {}", clip(output))),
            }
        }
        TranscriptEvent::CommandOutput {
            output, exit_code, ..
        } => {
            let output = output.trim();
            match exit_code {
                Some(0) | None if output.is_empty() => None,
                Some(0) | None => Some(format!("  → {}", clip(output))),
                Some(code) => Some(format!("  → exit {code}: {}", clip(output))),
            }
        }
        TranscriptEvent::Error { message } => Some(format!("error: {message}")),
        TranscriptEvent::TurnEnd {
            ok: false, error, ..
        } => Some(format!(
            "turn failed: {}",
            error.as_deref().unwrap_or("no reason given")
        )),
    }
}

fn tool_call(name: &str, input: &Value) -> String {
    let field = |key: &str| input.get(key).and_then(Value::as_str);
    if let Some(command) = field("command") {
        return format!("$ {command}");
    }
    if let Some(item) = field("check") {
        return format!("doc: checked “{item}”");
    }
    if let Some(item) = field("uncheck") {
        return format!("doc: unchecked “{item}”");
    }
    if let Some(section) = field("section") {
        return format!("doc: wrote the “{section}” section");
    }
    match (name, field("path")) {
        ("write", Some(path)) => format!("wrote {path}"),
        (name, Some(path)) => format!("{name} {path}"),
        (name, None) => format!("uses {name}"),
    }
}

fn clip(text: &str) -> String {
    let total = text.lines().count();
    if total <= MAX_LINES {
        return text.to_string();
    }
    let head: Vec<&str> = text.lines().take(MAX_LINES).collect();
    format!("{}\n… ({} more lines)", head.join("\n"), total - MAX_LINES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_calls_are_told_by_intent() {
        assert_eq!(tool_call("shell", &json!({"command": "ls"})), "$ ls");
        assert_eq!(
            tool_call(
                "edit",
                &json!({"path": "/d/task.md", "section": "Overview", "body": "…"})
            ),
            "doc: wrote the “Overview” section"
        );
        assert_eq!(
            tool_call("edit", &json!({"check": "Add x"})),
            "doc: checked “Add x”"
        );
        assert_eq!(
            tool_call("write", &json!({"path": "a.sh", "content": "x"})),
            "wrote a.sh"
        );
        assert_eq!(tool_call("browse", &json!({})), "uses browse");
    }
}
