//! The scripted agent program: plays one turn of a scenario and writes one JSON
//! `TranscriptEvent` per line to stdout, like a real agent CLI would (only already normalized).
//!
//! It runs as the hidden `atelier scripted-agent` subcommand, so `signal` steps call the very
//! binary that runs it (`<current_exe> signal …`). Synchronous and std-only: it is a small
//! program, not part of the server.

use super::AgentArgs;
use super::doc;
use super::shell::{run_captured, shell_quote};
use crate::process::new_session;
use crate::scenario::{Scenario, Step};
use domain::TranscriptEvent;
use serde_json::json;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Exit code when the turn could not be played at all (bad scenario file, missing turn).
pub const EXIT_SCENARIO: i32 = 2;
/// Exit code of a turn that failed (`fail` step, refused file write).
pub const EXIT_FAILED: i32 = 1;
/// Exit code when stdout is gone (nobody is listening any more).
const EXIT_STDOUT: i32 = 3;

/// Reads the prompt (fresh turn) or the follow-up input (resumed turn) from stdin to EOF, plays
/// turn `turn` of run `iteration` of the scenario in the current directory and writes the events
/// to stdout. Returns the process exit code: 0 for a turn that ended well, 1 for a failed turn,
/// 2 when the scenario could not be played, or the code of a `crash` step.
pub fn run_agent(args: AgentArgs) -> i32 {
    let mut input = Vec::new();
    // An unreadable stdin is treated as an empty prompt; the scenario decides what matters.
    let _ = io::stdin().lock().read_to_end(&mut input);
    let env = AgentEnv {
        input: String::from_utf8_lossy(&input).into_owned(),
        workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        task_doc: std::env::var_os("ATELIER_TASK_DOC").map(PathBuf::from),
        exe: std::env::current_exe().map_err(|e| e.to_string()),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    play(&args, &env, &mut out, &mut io::stderr())
}

/// Everything the agent takes from its surroundings, so tests can play turns in-process.
#[derive(Debug, Clone)]
pub(crate) struct AgentEnv {
    /// The prompt or follow-up input.
    pub input: String,
    pub workdir: PathBuf,
    /// `$ATELIER_TASK_DOC` (relative paths are taken from `workdir`).
    pub task_doc: Option<PathBuf>,
    /// The binary that answers `signal …`.
    pub exe: Result<PathBuf, String>,
}

/// Plays one turn; see [`run_agent`].
pub(crate) fn play(
    args: &AgentArgs,
    env: &AgentEnv,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let mut agent = Agent {
        env,
        out,
        err,
        turn: args.turn,
        calls: 0,
        steps: 0,
    };
    agent.play(args).unwrap_or(EXIT_STDOUT)
}

/// Plays one step outside any turn (for `atelier scripted-step`): its events go to `out`, and
/// a step that would end the turn only writes that turn end.
pub(crate) fn play_step(
    step: &Step,
    env: &AgentEnv,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    let mut agent = Agent {
        env,
        out,
        err,
        turn: 0,
        calls: 0,
        steps: 1,
    };
    agent.step(step).map(drop)
}

/// What to do after a step.
enum Flow {
    Continue,
    /// End the turn successfully now.
    EndTurn,
    /// Exit with this code now (the step already wrote whatever it had to).
    Exit(i32),
}

struct Agent<'a> {
    env: &'a AgentEnv,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    turn: u32,
    /// Tool calls so far (for call ids).
    calls: u32,
    /// Steps played so far (for the made-up usage).
    steps: u64,
}

impl Agent<'_> {
    fn play(&mut self, args: &AgentArgs) -> io::Result<i32> {
        let session = args.session.clone().unwrap_or_else(new_session_id);
        self.emit(TranscriptEvent::Session { id: session })?;
        let scenario = match Scenario::load(&args.scenario) {
            Ok(scenario) => scenario,
            Err(e) => return self.abort(e.to_string()),
        };
        let run = scenario.run(args.iteration);
        let Some(steps) = run.turn(args.turn) else {
            let played = args
                .iteration
                .min(scenario.runs.len().saturating_sub(1) as u32);
            return self.abort(format!(
                "scenario {} has no turn {} in run {played} (it has {} turns)",
                args.scenario.display(),
                args.turn,
                run.turns().len()
            ));
        };
        for step in steps {
            self.steps += 1;
            match self.step(step)? {
                Flow::Continue => {}
                Flow::EndTurn => break,
                Flow::Exit(code) => return Ok(code),
            }
        }
        self.end_turn(None)?;
        Ok(0)
    }

    fn step(&mut self, step: &Step) -> io::Result<Flow> {
        match step {
            Step::Message { text } => self.emit(TranscriptEvent::Message { text: text.clone() })?,
            Step::Thinking { text } => {
                self.emit(TranscriptEvent::Thinking { text: text.clone() })?;
            }
            Step::Tool {
                name,
                input,
                output,
            } => {
                let id = self.call(name, input.clone())?;
                self.emit(TranscriptEvent::ToolResult {
                    id,
                    output: output.clone(),
                    is_error: false,
                })?;
            }
            Step::Write { path, content } => return self.write_file(path, content, false),
            Step::Append { path, content } => return self.write_file(path, content, true),
            Step::Run { command } => self.run(command)?,
            Step::Spawn { command } => self.spawn(command)?,
            Step::Check { item } => {
                self.edit_doc(json!({"check": item}), |d| {
                    doc::set_checkbox(d, item, true)
                        .ok_or_else(|| format!("no unchecked to-do item containing `{item}`"))
                })?;
            }
            Step::Uncheck { item } => {
                self.edit_doc(json!({"uncheck": item}), |d| {
                    doc::set_checkbox(d, item, false)
                        .ok_or_else(|| format!("no checked to-do item containing `{item}`"))
                })?;
            }
            Step::DocAppend { text } => {
                self.edit_doc(json!({"append": text}), |d| Ok(doc::append(d, text)))?;
            }
            Step::DocSection { heading, body } => {
                self.edit_doc(json!({"section": heading, "body": body}), |d| {
                    Ok(doc::set_section(d, heading, body))
                })?;
            }
            Step::Signal { args } => self.signal(args)?,
            Step::Question { text } => {
                self.signal(&["question".to_string(), text.clone()])?;
                return Ok(Flow::EndTurn);
            }
            Step::EchoInput {} => self.emit(TranscriptEvent::Message {
                text: self.env.input.clone(),
            })?,
            Step::Sleep { ms } | Step::Stall { ms: Some(ms) } => {
                self.out.flush()?;
                std::thread::sleep(Duration::from_millis(*ms));
            }
            Step::Hang {} | Step::Stall { ms: None } => {
                self.out.flush()?;
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            Step::Burst { count, per_second } => self.burst(*count, *per_second)?,
            Step::Crash { code, stderr } => {
                self.out.flush()?;
                if let Some(text) = stderr {
                    // Best effort: the exit code is what a crash is about.
                    let _ = self.err.write_all(text.as_bytes());
                    let _ = self.err.flush();
                }
                return Ok(Flow::Exit(*code));
            }
            Step::Garbage { lines } => {
                for i in 1..=*lines {
                    writeln!(self.out, "garbage line {i}: this is not JSON {{")?;
                }
                self.out.flush()?;
            }
            Step::Fail { error } => {
                self.end_turn(Some(error.clone()))?;
                return Ok(Flow::Exit(EXIT_FAILED));
            }
            Step::HttpError { status, .. } => {
                let message = format!("the model API answered HTTP {status} (http_error step)");
                self.emit(TranscriptEvent::Error {
                    message: message.clone(),
                })?;
                self.end_turn(Some(message))?;
                return Ok(Flow::Exit(EXIT_FAILED));
            }
            Step::Slow { .. } => {}
        }
        Ok(Flow::Continue)
    }

    fn write_file(&mut self, path: &str, content: &str, append: bool) -> io::Result<Flow> {
        let name = if append { "append" } else { "write" };
        self.call(name, json!({"path": path, "content": content}))?;
        match write_in(&self.env.workdir, path, content, append) {
            Ok(kind) => {
                self.emit(TranscriptEvent::FileChange {
                    path: path.to_string(),
                    kind: kind.to_string(),
                })?;
                Ok(Flow::Continue)
            }
            Err(message) => {
                self.emit(TranscriptEvent::Error {
                    message: message.clone(),
                })?;
                self.end_turn(Some(message))?;
                Ok(Flow::Exit(EXIT_FAILED))
            }
        }
    }

    fn run(&mut self, command: &str) -> io::Result<()> {
        self.call("shell", json!({"command": command}))?;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", command]).current_dir(&self.env.workdir);
        match run_captured(cmd) {
            Ok((output, exit_code)) => self.emit(TranscriptEvent::CommandOutput {
                command: command.to_string(),
                output,
                exit_code,
            }),
            Err(e) => self.emit(TranscriptEvent::Error {
                message: format!("cannot run `{command}`: {e}"),
            }),
        }
    }

    fn spawn(&mut self, command: &str) -> io::Result<()> {
        let id = self.call("shell", json!({"command": command, "background": true}))?;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", command])
            .current_dir(&self.env.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The child is never waited for: it outlives the turn like a CLI's background tool.
        match new_session(&mut cmd).spawn() {
            Ok(child) => self.emit(TranscriptEvent::ToolResult {
                id,
                output: format!("started in the background (pid {})", child.id()),
                is_error: false,
            }),
            Err(e) => self.emit(TranscriptEvent::Error {
                message: format!("cannot start `{command}` in the background: {e}"),
            }),
        }
    }

    /// Reads the task doc, applies `edit` and writes it back; a failure is an error event and
    /// the turn goes on.
    fn edit_doc(
        &mut self,
        input: serde_json::Value,
        edit: impl FnOnce(&str) -> Result<String, String>,
    ) -> io::Result<()> {
        let Some(rel) = &self.env.task_doc else {
            return self.emit(TranscriptEvent::Error {
                message: "ATELIER_TASK_DOC is not set: there is no task doc to edit".into(),
            });
        };
        let shown = rel.display().to_string();
        let mut input = input;
        if let Some(map) = input.as_object_mut() {
            map.insert("path".into(), json!(shown));
        }
        self.call("edit", input)?;
        let path = self.env.workdir.join(rel);
        let result = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the task doc {shown}: {e}"))
            .and_then(|text| edit(&text))
            .and_then(|text| {
                std::fs::write(&path, text)
                    .map_err(|e| format!("cannot write the task doc {shown}: {e}"))
            });
        match result {
            Ok(()) => self.emit(TranscriptEvent::FileChange {
                path: shown,
                kind: "modify".into(),
            }),
            Err(message) => self.emit(TranscriptEvent::Error { message }),
        }
    }

    /// Runs `<exe> signal <args…>`; a rejected signal is an error event and the turn goes on.
    fn signal(&mut self, args: &[String]) -> io::Result<()> {
        let shown: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let id = self.call(
            "shell",
            json!({"command": format!("atelier signal {}", shown.join(" "))}),
        )?;
        let exe = match &self.env.exe {
            Ok(exe) => exe.clone(),
            Err(e) => {
                return self.emit(TranscriptEvent::Error {
                    message: format!("cannot find the atelier binary to signal with: {e}"),
                });
            }
        };
        let mut cmd = Command::new(&exe);
        cmd.arg("signal").args(args).current_dir(&self.env.workdir);
        let (output, code) = match run_captured(cmd) {
            Ok(result) => result,
            Err(e) => (format!("cannot run {}: {e}", exe.display()), None),
        };
        let accepted = code == Some(0);
        self.emit(TranscriptEvent::ToolResult {
            id,
            output: output.clone(),
            is_error: !accepted,
        })?;
        if !accepted {
            let status = code.map_or("no exit code".to_string(), |c| format!("exit code {c}"));
            self.emit(TranscriptEvent::Error {
                message: format!("signal rejected ({status}): {}", output.trim()),
            })?;
        }
        Ok(())
    }

    fn burst(&mut self, count: u64, per_second: Option<f64>) -> io::Result<()> {
        let start = Instant::now();
        for i in 1..=count {
            let event = TranscriptEvent::Message {
                text: format!("burst {i}"),
            };
            match per_second {
                None => self.write_event(&event)?,
                Some(rate) => {
                    let due = start + Duration::from_secs_f64((i - 1) as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    self.emit(event)?;
                }
            }
        }
        self.out.flush()
    }

    /// Emits a tool call with a fresh id and returns the id.
    fn call(&mut self, name: &str, input: serde_json::Value) -> io::Result<Option<String>> {
        self.calls += 1;
        let id = Some(format!("call-{}-{}", self.turn, self.calls));
        self.emit(TranscriptEvent::ToolCall {
            id: id.clone(),
            name: name.to_string(),
            input,
        })?;
        Ok(id)
    }

    /// Usage, then the turn end (`error` makes it a failed turn).
    fn end_turn(&mut self, error: Option<String>) -> io::Result<()> {
        let input_tokens = 50 + self.env.input.len() as u64 / 4;
        let output_tokens = 20 + 10 * self.steps;
        self.emit(TranscriptEvent::Usage {
            input_tokens,
            output_tokens,
            cost_usd: (input_tokens * 3 + output_tokens * 15) as f64 / 1_000_000.0,
            cumulative: false,
        })?;
        self.emit(TranscriptEvent::TurnEnd {
            ok: error.is_none(),
            error,
            retryable: false,
        })
    }

    /// The turn cannot be played at all.
    fn abort(&mut self, message: String) -> io::Result<i32> {
        self.emit(TranscriptEvent::Error {
            message: message.clone(),
        })?;
        self.emit(TranscriptEvent::TurnEnd {
            ok: false,
            error: Some(message),
            retryable: false,
        })?;
        Ok(EXIT_SCENARIO)
    }

    fn emit(&mut self, event: TranscriptEvent) -> io::Result<()> {
        self.write_event(&event)?;
        self.out.flush()
    }

    fn write_event(&mut self, event: &TranscriptEvent) -> io::Result<()> {
        serde_json::to_writer(&mut *self.out, event)?;
        self.out.write_all(b"\n")
    }
}

fn new_session_id() -> String {
    format!("scripted-{:016x}", rand::random::<u64>())
}

/// Writes or appends `content` to `rel` inside `workdir`; returns the change kind (`add` for a
/// new file, `modify` otherwise) or why it refused or failed.
fn write_in(
    workdir: &Path,
    rel: &str,
    content: &str,
    append: bool,
) -> Result<&'static str, String> {
    let path = Path::new(rel);
    let escapes = path.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if rel.is_empty() || escapes {
        return Err(format!(
            "refusing to write `{rel}`: paths must be relative to the working directory, without `..`"
        ));
    }
    let full = workdir.join(path);
    let existed = full.exists();
    write_bytes(&full, content.as_bytes(), append)
        .map_err(|e| format!("cannot write `{rel}`: {e}"))?;
    Ok(if existed { "modify" } else { "add" })
}

fn write_bytes(path: &Path, bytes: &[u8], append: bool) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests;
