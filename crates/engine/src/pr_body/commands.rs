//! The test, build and lint commands a task's agents ran, read from their transcripts: a
//! harness reports a command as `CommandOutput { command, exit_code }`, or as a shell tool call
//! (`Bash`, `shell`, `exec_command` … with a `command` input) answered by a `ToolResult` — then
//! only whether it failed is known. Only commands that look like checks are kept, each once, with
//! the result of its last run.

use super::markdown::clean;
use domain::{RunId, Stage, TranscriptEvent};
use serde_json::Value;

/// One distinct command and the result of its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandRun {
    /// The command as run, cleaned of control characters, its white space collapsed.
    pub command: String,
    /// The stage whose agent ran it last.
    pub stage: Stage,
    /// Its exit code, when the harness reported one.
    pub exit_code: Option<i32>,
    /// Whether it failed (a non-zero exit code, or a tool result marked as an error).
    pub failed: bool,
}

/// Tool names harnesses give a shell command (compared without case).
const SHELL_TOOLS: &[&str] = &[
    "bash",
    "shell",
    "exec_command",
    "local_shell",
    "run_shell_command",
    "execute_command",
];

/// A shell tool call waiting for its result.
struct Pending {
    run: RunId,
    id: Option<String>,
    /// `None` for a call of another tool (kept so results without ids pair in order).
    command: Option<String>,
}

/// The check commands of a task's transcript events (in order: by run, then `seq`), each once,
/// ordered by their last run.
pub(crate) fn test_runs(events: &[(RunId, Stage, TranscriptEvent)]) -> Vec<CommandRun> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut runs: Vec<CommandRun> = Vec::new();
    let mut record = |command: String, stage: Stage, exit_code: Option<i32>, failed: bool| {
        if command.is_empty() || !looks_like_check(&command) {
            return;
        }
        runs.retain(|run| run.command != command);
        runs.push(CommandRun {
            command,
            stage,
            exit_code,
            failed,
        });
    };
    for (run, stage, event) in events {
        match event {
            TranscriptEvent::ToolCall { id, name, input } => {
                let shell = SHELL_TOOLS.iter().any(|t| t.eq_ignore_ascii_case(name));
                let background = input.get("background").and_then(Value::as_bool) == Some(true);
                pending.push(Pending {
                    run: *run,
                    id: id.clone(),
                    command: if shell && !background {
                        command_of(input)
                    } else {
                        None
                    },
                });
            }
            TranscriptEvent::ToolResult { id, is_error, .. } => {
                let index = match id {
                    Some(id) => pending
                        .iter()
                        .position(|p| p.run == *run && p.id.as_ref() == Some(id)),
                    None => pending.iter().position(|p| p.run == *run && p.id.is_none()),
                };
                if let Some(index) = index
                    && let Some(command) = pending.remove(index).command
                {
                    record(command, *stage, None, *is_error);
                }
            }
            TranscriptEvent::CommandOutput {
                command, exit_code, ..
            } => {
                let command = normalize(command);
                // The harness reported the call's outcome this way instead of a tool result.
                if let Some(index) = pending
                    .iter()
                    .position(|p| p.run == *run && p.command.as_ref() == Some(&command))
                {
                    pending.remove(index);
                }
                record(
                    command,
                    *stage,
                    *exit_code,
                    exit_code.is_some_and(|c| c != 0),
                );
            }
            _ => {}
        }
    }
    runs
}

/// The command of a shell tool call's input: `command` (or `cmd`) as a string, or as an argument
/// list (`["bash", "-lc", "…"]` is its script).
fn command_of(input: &Value) -> Option<String> {
    let value = input.get("command").or_else(|| input.get("cmd"))?;
    if let Some(text) = value.as_str() {
        return Some(normalize(text));
    }
    let args: Vec<&str> = value.as_array()?.iter().filter_map(Value::as_str).collect();
    match args.as_slice() {
        [shell, flag, script, ..]
            if matches!(basename(shell), "sh" | "bash" | "zsh")
                && matches!(*flag, "-c" | "-lc") =>
        {
            Some(normalize(script))
        }
        _ => Some(normalize(&args.join(" "))),
    }
}

fn normalize(command: &str) -> String {
    clean(command)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Programs whose runs are builds, tests or lints.
const CHECK_PROGRAMS: &[&str] = &[
    "cargo",
    "npm",
    "npx",
    "pnpm",
    "yarn",
    "bun",
    "deno",
    "node",
    "pytest",
    "tox",
    "nox",
    "make",
    "gmake",
    "ninja",
    "cmake",
    "ctest",
    "bazel",
    "gradle",
    "gradlew",
    "mvn",
    "mvnw",
    "ant",
    "dotnet",
    "mix",
    "rake",
    "rspec",
    "jest",
    "vitest",
    "mocha",
    "eslint",
    "tsc",
    "ruff",
    "flake8",
    "pylint",
    "mypy",
    "black",
    "prettier",
    "phpunit",
    "composer",
    "swift",
    "just",
    "shellcheck",
];

/// Words in a program's or script's name that mark a check (`test.sh`, `run-tests`, `lint`).
fn checky(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["test", "lint", "check", "build", "spec"]
        .iter()
        .any(|word| name.contains(word))
}

/// Whether a command looks like a test, build or lint run: one of its simple commands (split at
/// `;`, `&&`, `||`, `|`, parentheses and line breaks) runs a known tool (`cargo`, `npm`,
/// `pytest`, `make` …), `go test`/`build`/`vet`, `python -m pytest`, or a program or script whose
/// name says test, lint, check, build or spec.
pub(crate) fn looks_like_check(command: &str) -> bool {
    command
        .split([';', '&', '|', '(', ')', '\n'])
        .any(simple_command_is_check)
}

fn simple_command_is_check(part: &str) -> bool {
    let words: Vec<&str> = part
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .collect();
    // Past variable assignments and wrappers.
    let mut rest = words.as_slice();
    while let [first, tail @ ..] = rest {
        let assignment = first.contains('=') && !first.starts_with('-');
        let wrapper = matches!(
            *first,
            "sudo" | "time" | "env" | "nice" | "exec" | "command" | "xvfb-run" | "timeout"
        );
        // Options and arguments of a wrapper (`timeout 60`, `nice -n 5`).
        let option = first.starts_with('-') || first.starts_with(|c: char| c.is_ascii_digit());
        if assignment || wrapper || option {
            rest = tail;
        } else {
            break;
        }
    }
    let [program, args @ ..] = rest else {
        return false;
    };
    let name = basename(program);
    if CHECK_PROGRAMS.contains(&name) || checky(name) {
        return true;
    }
    match name {
        "go" => matches!(args.first(), Some(&("test" | "build" | "vet"))),
        "python" | "python3" => args.iter().any(|a| {
            matches!(
                *a,
                "pytest" | "unittest" | "mypy" | "ruff" | "pylint" | "flake8" | "tox"
            )
        }),
        "sh" | "bash" | "zsh" => args
            .iter()
            .filter(|a| !a.starts_with('-'))
            .any(|a| checky(basename(a)) || simple_command_is_check(a)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_are_told_from_other_commands() {
        for check in [
            "cargo test -p engine",
            "cargo clippy --workspace -- -D warnings",
            "npm test",
            "pytest -q tests/",
            "go test ./...",
            "make",
            "RUST_LOG=debug cargo nextest run",
            "cd app && npm run lint",
            "sh ./test.sh",
            "./scripts/test",
            "bash -c 'make check'",
            "python3 -m pytest",
            "timeout 60 ./run-tests.sh",
            "git status; ./build.sh",
        ] {
            assert!(looks_like_check(check), "{check}");
        }
        for other in [
            "git status --short",
            "git add -A && git commit -qm 'Add tests'",
            "cat farewell.txt",
            "grep -q goodbye farewell.txt",
            "ls -la",
            "go mod tidy",
            "python3 script.py",
            "sh -c 'exit 0'",
            "",
        ] {
            assert!(!looks_like_check(other), "{other}");
        }
    }

    fn at(run: i64, stage: Stage, event: TranscriptEvent) -> (RunId, Stage, TranscriptEvent) {
        (RunId(run), stage, event)
    }

    fn output(command: &str, exit_code: Option<i32>) -> TranscriptEvent {
        TranscriptEvent::CommandOutput {
            command: command.into(),
            output: String::new(),
            exit_code,
        }
    }

    fn call(id: Option<&str>, name: &str, input: Value) -> TranscriptEvent {
        TranscriptEvent::ToolCall {
            id: id.map(str::to_string),
            name: name.into(),
            input,
        }
    }

    fn result(id: Option<&str>, is_error: bool) -> TranscriptEvent {
        TranscriptEvent::ToolResult {
            id: id.map(str::to_string),
            output: String::new(),
            is_error,
        }
    }

    fn ran(command: &str, stage: Stage, exit_code: Option<i32>, failed: bool) -> CommandRun {
        CommandRun {
            command: command.into(),
            stage,
            exit_code,
            failed,
        }
    }

    #[test]
    fn the_last_result_of_each_check_is_kept_in_the_order_of_last_runs() {
        use Stage::{Implement, Review};
        let events = vec![
            // The scripted agent: a `shell` call, then the command's output.
            at(
                1,
                Implement,
                call(Some("c1"), "shell", json!({"command": "sh test.sh"})),
            ),
            at(1, Implement, output("sh test.sh", Some(1))),
            at(
                1,
                Implement,
                call(Some("c2"), "shell", json!({"command": "git status"})),
            ),
            at(1, Implement, output("git status", Some(0))),
            // Claude: a `Bash` call answered by the command's output.
            at(
                1,
                Implement,
                call(Some("c3"), "Bash", json!({"command": "cargo  build"})),
            ),
            at(1, Implement, output("cargo build", Some(0))),
            // Codex-like: an argument list, answered by a tool result (no exit code).
            at(
                2,
                Review,
                call(
                    Some("c4"),
                    "exec_command",
                    json!({"command": ["bash", "-lc", "npm test"]}),
                ),
            ),
            at(2, Review, result(Some("c4"), true)),
            // Results without ids pair with calls in order; another tool's result is not a run.
            at(2, Review, call(None, "Read", json!({"path": "make"}))),
            at(
                2,
                Review,
                call(None, "bash", json!({"command": "make lint"})),
            ),
            at(2, Review, result(None, false)),
            at(2, Review, result(None, false)),
            // A background start is not a result.
            at(
                2,
                Review,
                call(
                    Some("c5"),
                    "shell",
                    json!({"command": "npm run dev", "background": true}),
                ),
            ),
            at(2, Review, result(Some("c5"), false)),
            // The same check again, passing now.
            at(2, Review, output("sh test.sh", Some(0))),
            // Opencode: a tool result, then the output with the exit code.
            at(
                2,
                Review,
                call(Some("c6"), "bash", json!({"command": "pytest"})),
            ),
            at(2, Review, result(Some("c6"), false)),
            at(2, Review, output("pytest", Some(2))),
            at(2, Review, output("make check", None)),
        ];
        assert_eq!(
            test_runs(&events),
            vec![
                ran("cargo build", Implement, Some(0), false),
                ran("npm test", Review, None, true),
                ran("make lint", Review, None, false),
                ran("sh test.sh", Review, Some(0), false),
                ran("pytest", Review, Some(2), true),
                ran("make check", Review, None, false),
            ]
        );
    }
}
