//! What the simulator needs to know about a request, whatever API it came in: the system text,
//! the texts the user typed (not tool results, not text the CLI injected), how many tool calls
//! the assistant made since the last of them, the tools on offer and the working directory.
//!
//! Each API module fills a [`Conversation`] from its own request shape; everything after that
//! ([`play`](crate::play), [`vocab`](crate::vocab)) is API-neutral.

use serde_json::Value;
use std::path::PathBuf;

/// One request, reduced to what decides the answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// The model name the request asked for.
    pub model: Option<String>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// System prompt, instructions and developer messages, joined by newlines.
    pub system: String,
    /// Every user message's text, injected parts included, in order (where the stage line is
    /// searched, after the system text).
    pub user_text: String,
    /// The text of each user message that carries something the user typed, in order: one per
    /// turn of the session.
    pub typed: Vec<String>,
    /// Tool calls the assistant made after the last typed user message.
    pub calls_since_typed: usize,
    /// The tools the request offers.
    pub tools: Vec<OfferedTool>,
    /// Bytes of the request body (for the made-up usage).
    pub body_len: usize,
}

/// A tool the request offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTool {
    pub name: String,
    pub kind: ToolKind,
}

/// How a tool takes its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// JSON arguments (Anthropic tools, OpenAI functions).
    Json,
    /// Free-form text input (OpenAI Responses `custom` tools such as Codex's `apply_patch`).
    Freeform,
}

impl Conversation {
    /// The turn of the session: typed user messages minus one.
    pub fn turn(&self) -> u32 {
        u32::try_from(self.typed.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// The working directory the CLI announced in its system prompt or context, if any
    /// (Claude Code: `Primary working directory:`, OpenCode: `Working directory:`, Codex:
    /// `<cwd>…</cwd>`).
    pub fn cwd(&self) -> Option<PathBuf> {
        find_cwd(&self.system).or_else(|| find_cwd(&self.user_text))
    }

    /// Whether the request offers a tool named `name`.
    pub fn offers(&self, name: &str) -> Option<&OfferedTool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Records one user message made of `parts` (its text parts; `has_tool_result` when it
    /// also carries tool results, which makes it tool output rather than typed text).
    pub fn push_user(&mut self, parts: &[&str], has_tool_result: bool) {
        for part in parts {
            self.user_text.push_str(part);
            self.user_text.push('\n');
        }
        if has_tool_result {
            return;
        }
        let typed: Vec<&str> = parts.iter().copied().filter(|p| !is_injected(p)).collect();
        if !typed.is_empty() {
            self.typed.push(typed.join("\n"));
            self.calls_since_typed = 0;
        }
    }

    /// Records tool calls the assistant made.
    pub fn push_calls(&mut self, calls: usize) {
        self.calls_since_typed += calls;
    }

    /// Appends system text.
    pub fn push_system(&mut self, text: &str) {
        if !text.is_empty() {
            self.system.push_str(text);
            self.system.push('\n');
        }
    }
}

/// Whether a user text part was put there by the CLI rather than typed: empty, one whole
/// `<tag>…</tag>` element (Claude Code's `<system-reminder>`, Codex's `<environment_context>`,
/// `<turn_aborted>` …), Codex's `# AGENTS.md` instructions, or Claude Code's interruption note.
pub fn is_injected(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() || t.starts_with("# AGENTS.md") || t.starts_with("[Request interrupted by user")
    {
        return true;
    }
    let Some(rest) = t.strip_prefix('<') else {
        return false;
    };
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    !name.is_empty() && t.ends_with(&format!("</{name}>"))
}

fn find_cwd(text: &str) -> Option<PathBuf> {
    for prefix in [
        "Primary working directory:",
        "Current working directory:",
        "Working directory:",
    ] {
        if let Some(at) = text.find(prefix) {
            let rest = text[at + prefix.len()..].trim_start_matches([' ', '\t']);
            let path: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            if path.starts_with('/') {
                return Some(PathBuf::from(path));
            }
        }
    }
    let start = text.find("<cwd>")? + "<cwd>".len();
    let end = text[start..].find("</cwd>")?;
    let path = text[start..start + end].trim();
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// The text of a content value: a string, or the `text` of each part of an array (any part
/// type that has a string `text`).
pub fn texts(content: &Value) -> Vec<&str> {
    match content {
        Value::String(s) => vec![s.as_str()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    }
}

/// `body[key]` as a string, if it is one.
pub fn str_of<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_injected_text_from_typed_text() {
        for injected in [
            "",
            "  \n",
            "<system-reminder>\nx\n</system-reminder>",
            "<environment_context>\n  <cwd>/w</cwd>\n</environment_context>",
            "# AGENTS.md instructions for /w\n\n<INSTRUCTIONS>x</INSTRUCTIONS>",
            "[Request interrupted by user]",
        ] {
            assert!(is_injected(injected), "{injected:?}");
        }
        for typed in ["hello", "<b>bold</b> start", "Fix <this>", "<a>x</b>"] {
            assert!(!is_injected(typed), "{typed:?}");
        }
    }

    #[test]
    fn counts_turns_and_calls() {
        let mut c = Conversation::default();
        assert_eq!(c.turn(), 0);
        c.push_user(&["<system-reminder>r</system-reminder>", "do it"], false);
        c.push_calls(2);
        c.push_user(&["ignored"], true);
        assert_eq!((c.turn(), c.calls_since_typed), (0, 2));
        c.push_user(&["<system-reminder>only</system-reminder>"], false);
        assert_eq!((c.turn(), c.calls_since_typed), (0, 2));
        c.push_user(&["again"], false);
        c.push_calls(1);
        assert_eq!((c.turn(), c.calls_since_typed), (1, 1));
        assert_eq!(c.typed, ["do it", "again"]);
    }

    #[test]
    fn finds_the_working_directory() {
        let cwd = |system: &str| {
            Conversation {
                system: system.into(),
                ..Conversation::default()
            }
            .cwd()
        };
        assert_eq!(
            cwd("Env\n - Primary working directory: /tmp/a b\n"),
            Some("/tmp/a".into())
        );
        assert_eq!(
            cwd("Working directory: /w/x\nPlatform"),
            Some("/w/x".into())
        );
        assert_eq!(cwd("<env><cwd>/r</cwd></env>"), Some("/r".into()));
        assert_eq!(cwd("Working directory: relative"), None);
        assert_eq!(cwd("nothing"), None);
    }
}
