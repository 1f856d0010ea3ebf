//! Puts an [`Action`] into the tool vocabulary of the CLI that sent the request, chosen by the
//! tools the request offers:
//!
//! | action | Claude Code | Codex | OpenCode |
//! |---|---|---|---|
//! | write, new file | `Write {file_path, content}` | `apply_patch` (`*** Add File`) | `write {filePath, content}` |
//! | write, existing file | `Bash` heredoc | `exec_command` heredoc | `bash` heredoc |
//! | shell command | `Bash {command, description}` | `exec_command {cmd, workdir, login: false, yield_time_ms}` or `shell {command: [bash, -c, …]}` | `bash {command, description}` |
//!
//! Claude Code and OpenCode refuse to overwrite a file not read in the session, hence the shell
//! for existing files; `apply_patch` always ends a file with a newline, hence the shell for
//! content without one.

use crate::conversation::{Conversation, OfferedTool, ToolKind};
use crate::play::{Action, write_command};
use serde_json::{Value, json};
use std::path::Path;

/// A tool call in one CLI's vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub input: ToolInput,
}

/// The input of a tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolInput {
    /// JSON arguments.
    Json(Value),
    /// Free-form text (a `custom` tool).
    Text(String),
}

impl ToolInput {
    /// The input as one JSON object (free-form text as `{"input": text}`).
    pub fn to_json(&self) -> Value {
        match self {
            ToolInput::Json(v) => v.clone(),
            ToolInput::Text(t) => json!({ "input": t }),
        }
    }
}

/// Shell tools, most specific first.
const SHELLS: [&str; 5] = ["Bash", "bash", "exec_command", "shell_command", "shell"];

/// The call that performs `action` with the tools `conv` offers, or why none can.
pub fn tool_call(action: &Action, conv: &Conversation) -> Result<ToolCall, String> {
    let cwd = conv.cwd();
    match action {
        Action::Write { path, content } => {
            let absolute = cwd.as_ref().map(|c| c.join(path));
            let exists = absolute.as_ref().is_some_and(|p| p.exists());
            if !exists && let Some(call) = write_tool(conv, path, content, absolute.as_deref()) {
                return Ok(call);
            }
            shell_call(conv, &write_command(path, content, false), cwd.as_deref())
        }
        Action::Shell { command } => shell_call(conv, command, cwd.as_deref()),
        Action::Named {
            name,
            input,
            output,
        } => match conv.offers(name) {
            Some(OfferedTool {
                kind: ToolKind::Freeform,
                ..
            }) => Ok(ToolCall {
                name: name.clone(),
                input: ToolInput::Text(match input {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            }),
            Some(_) => Ok(ToolCall {
                name: name.clone(),
                input: ToolInput::Json(if input.is_null() {
                    json!({})
                } else {
                    input.clone()
                }),
            }),
            None => {
                let command = format!("printf '%s\\n' {}", harness::scripted::shell_quote(output));
                shell_call(conv, &command, cwd.as_deref())
            }
        },
    }
}

/// The CLI's own file-creating tool, when it has one that can write exactly `content`.
fn write_tool(
    conv: &Conversation,
    path: &str,
    content: &str,
    absolute: Option<&Path>,
) -> Option<ToolCall> {
    let call = |name: &str, input| {
        Some(ToolCall {
            name: name.into(),
            input,
        })
    };
    if let Some(abs) = absolute.map(|p| p.to_string_lossy().into_owned()) {
        if conv.offers("Write").is_some() {
            return call(
                "Write",
                ToolInput::Json(json!({"file_path": abs, "content": content})),
            );
        }
        if conv.offers("write").is_some() {
            return call(
                "write",
                ToolInput::Json(json!({"filePath": abs, "content": content})),
            );
        }
    }
    let patch_tool = conv.offers("apply_patch")?;
    if !(content.is_empty() || content.ends_with('\n')) {
        return None;
    }
    let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
    for line in content.lines() {
        patch.push('+');
        patch.push_str(line);
        patch.push('\n');
    }
    patch.push_str("*** End Patch\n");
    match patch_tool.kind {
        ToolKind::Freeform => call("apply_patch", ToolInput::Text(patch)),
        ToolKind::Json => call("apply_patch", ToolInput::Json(json!({ "input": patch }))),
    }
}

fn shell_call(conv: &Conversation, command: &str, cwd: Option<&Path>) -> Result<ToolCall, String> {
    let Some(name) = SHELLS.into_iter().find(|s| conv.offers(s).is_some()) else {
        let offered: Vec<&str> = conv.tools.iter().map(|t| t.name.as_str()).collect();
        return Err(format!(
            "Atelier simulator: the request offers no shell tool (one of {}) to run `{command}`; \
             it offers: {}",
            SHELLS.join(", "),
            if offered.is_empty() {
                "no tools".to_string()
            } else {
                offered.join(", ")
            }
        ));
    };
    let workdir = cwd.map(|c| c.to_string_lossy().into_owned());
    let mut input = match name {
        "Bash" | "bash" => json!({"command": command, "description": describe(command)}),
        // Not a login shell: a login shell's profile resets PATH, and the engine's PATH is
        // how the command finds `atelier`.
        "exec_command" => json!({"cmd": command, "login": false, "yield_time_ms": 30000}),
        "shell_command" => json!({"command": command, "login": false}),
        _ => json!({"command": ["bash", "-c", command]}),
    };
    if let (Some(dir), false, Some(map)) = (
        workdir,
        name.eq_ignore_ascii_case("bash"),
        input.as_object_mut(),
    ) {
        map.insert("workdir".into(), json!(dir));
    }
    Ok(ToolCall {
        name: name.into(),
        input: ToolInput::Json(input),
    })
}

/// A short description of a command for the tools that want one.
fn describe(command: &str) -> String {
    let first = command.lines().next().unwrap_or_default();
    let mut short: String = first.chars().take(60).collect();
    if short.len() < first.len() || command.contains('\n') {
        short.push('…');
    }
    format!("Run {short}")
}
