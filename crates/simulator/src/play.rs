//! From a [`Conversation`] to the next answer: which scenario (the `Atelier-Stage:` line),
//! which turn (typed user messages), which step (tool calls since the last of them), and what
//! the response carries.
//!
//! Stateless like the model APIs it imitates, with ONE exception: [`Counters`] remembers how
//! many requests an infrastructure step (`http_error`, `stall`, `garbage`) already answered,
//! keyed by (scenario file, run, turn, step index), since a retried request looks exactly like
//! the first one.

use crate::conversation::Conversation;
use harness::scenario::{STAGE_LINE_PREFIX, Scenario, Step, parse_stage_line};
use harness::scripted::shell_quote;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The text that ends a turn whose last steps say nothing.
pub const DONE: &str = "done";

/// What to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Send nothing at all for this long first (`None` inside: until shutdown).
    pub stall: Option<Option<Duration>>,
    pub outcome: Outcome,
    /// Where in the scenario this answer comes from (for the recorder), e.g. `review #0 turn 1
    /// step 3`.
    pub position: String,
}

/// The body of the reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A model response.
    Answer(Answer),
    /// An HTTP error: `body` verbatim, or `message` in the API's error shape.
    HttpError {
        status: u16,
        message: String,
        body: Option<String>,
    },
    /// A 200 whose body is not SSE.
    Garbage { lines: u64 },
}

/// A model response, API-neutral.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub parts: Vec<Part>,
    pub tail: Tail,
    /// Pause before each chunk of the stream (`slow` step).
    pub pacing: Option<Duration>,
}

/// One piece of the response before its tail.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Thinking(String),
    /// Stop streaming for a while (a `sleep` step, `burst` pacing).
    Pause(Duration),
}

/// How the response ends.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Tail {
    /// End of the turn (`end_turn` / `stop`).
    #[default]
    EndTurn,
    /// One tool call (`tool_use` / `tool_calls`).
    Action(Action),
    /// Stop sending and never finish (`hang`).
    Hang,
    /// Drop the connection mid-stream (`crash`).
    Cut,
}

/// A tool call, before it is put in one harness's vocabulary ([`crate::vocab`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create or overwrite a file (relative path).
    Write { path: String, content: String },
    /// Run a shell command in the working directory.
    Shell { command: String },
    /// Call a tool by name if offered; otherwise print `output` with the shell.
    Named {
        name: String,
        input: serde_json::Value,
        output: String,
    },
}

/// Why a request cannot be played: the simulator answers 400 with this message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PlayError(pub String);

/// The one piece of state: how often each infrastructure step has answered.
#[derive(Debug, Default)]
pub struct Counters {
    seen: Mutex<HashMap<(PathBuf, usize, u32, usize), u32>>,
}

impl Counters {
    /// Counts one more request at `key` and says whether the step still applies (it applied
    /// fewer than `times` times before).
    fn take(&self, key: (PathBuf, usize, u32, usize), times: u32) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = seen.entry(key).or_insert(0);
        if *count < times {
            *count += 1;
            true
        } else {
            false
        }
    }
}

/// Decides the reply to `conv` from the scenarios in `dir`.
pub fn play(conv: &Conversation, dir: &Path, counters: &Counters) -> Result<Reply, PlayError> {
    let found = parse_stage_line(&conv.system).or_else(|| parse_stage_line(&conv.user_text));
    let Some((stage, iteration)) = found else {
        return Err(PlayError(format!(
            "Atelier simulator: no `{STAGE_LINE_PREFIX} <stage> #<iteration>` line in the system \
             prompt or the user messages, so there is no scenario to play (the engine's prompt \
             must contain e.g. `{STAGE_LINE_PREFIX} review #0`)"
        )));
    };
    let path = dir.join(format!("{stage}.json"));
    let scenario = Scenario::load(&path).map_err(|e| {
        PlayError(format!(
            "Atelier simulator: stage `{stage}`: {e} (from the line `{STAGE_LINE_PREFIX} {stage} \
             #{iteration}`)"
        ))
    })?;
    let run_index = usize::try_from(iteration)
        .unwrap_or(usize::MAX)
        .min(scenario.runs.len().saturating_sub(1));
    let run = scenario.run(iteration);
    let turn = conv.turn();
    let Some(steps) = run.turn(turn) else {
        return Err(PlayError(format!(
            "Atelier simulator: scenario {} has no turn {turn} in run {run_index} (it has {} turns)",
            path.display(),
            run.turns().len()
        )));
    };

    let calls = conv.calls_since_typed;
    let mut reply = Reply {
        stall: None,
        outcome: Outcome::Answer(Answer::default()),
        position: format!("{stage} #{run_index} turn {turn} step {calls}"),
    };
    let Some(start) = segment_start(steps, calls) else {
        reply.outcome = Outcome::Answer(Answer {
            parts: vec![Part::Text(DONE.into())],
            ..Answer::default()
        });
        return Ok(reply);
    };
    let mut answer = Answer::default();
    for (index, step) in steps.iter().enumerate().skip(start) {
        let key = || (path.clone(), run_index, turn, index);
        match step {
            Step::Message { text } => answer.parts.push(Part::Text(text.clone())),
            Step::Thinking { text } => answer.parts.push(Part::Thinking(text.clone())),
            Step::EchoInput {} => {
                let input = conv.typed.last().cloned().unwrap_or_default();
                answer.parts.push(Part::Text(input));
            }
            Step::Sleep { ms } => answer.parts.push(Part::Pause(Duration::from_millis(*ms))),
            Step::Burst { count, per_second } => burst(&mut answer, *count, *per_second),
            Step::Slow { ms_per_chunk } => {
                answer.pacing = Some(Duration::from_millis(*ms_per_chunk));
            }
            Step::Stall { ms } => {
                if counters.take(key(), 1) {
                    reply.stall = Some(ms.map(Duration::from_millis));
                }
            }
            Step::HttpError {
                status,
                body,
                times,
            } => {
                if counters.take(key(), times.unwrap_or(1)) {
                    reply.outcome = Outcome::HttpError {
                        status: *status,
                        message: default_message(*status),
                        body: body.clone(),
                    };
                    return Ok(reply);
                }
            }
            Step::Garbage { lines } => {
                if counters.take(key(), 1) {
                    reply.outcome = Outcome::Garbage { lines: *lines };
                    return Ok(reply);
                }
            }
            Step::Fail { error } => {
                reply.outcome = Outcome::HttpError {
                    status: 400,
                    message: error.clone(),
                    body: None,
                };
                return Ok(reply);
            }
            Step::Hang {} => {
                answer.tail = Tail::Hang;
                break;
            }
            Step::Crash { .. } => {
                answer.tail = Tail::Cut;
                break;
            }
            action => {
                if let Some(action) = to_action(action) {
                    answer.tail = Tail::Action(action);
                    break;
                }
            }
        }
    }
    let says_something = answer.parts.iter().any(|p| matches!(p, Part::Text(_)));
    if answer.tail == Tail::EndTurn && !says_something {
        answer.parts.push(Part::Text(DONE.into()));
    }
    reply.outcome = Outcome::Answer(answer);
    Ok(reply)
}

/// The index of the first step after `calls` tool-call steps, or `None` when the turn is over
/// (all its tool calls made, or a `question` among them).
fn segment_start(steps: &[Step], calls: usize) -> Option<usize> {
    let mut made = 0;
    for (index, step) in steps.iter().enumerate() {
        if made == calls {
            return Some(index);
        }
        if to_action(step).is_some() {
            made += 1;
            if matches!(step, Step::Question { .. }) && made <= calls {
                return None;
            }
        }
    }
    None
}

/// The tool call a step makes, for the steps that make one.
pub fn to_action(step: &Step) -> Option<Action> {
    let shell = |command: String| Some(Action::Shell { command });
    match step {
        Step::Write { path, content } => Some(Action::Write {
            path: path.clone(),
            content: content.clone(),
        }),
        Step::Append { path, content } => shell(write_command(path, content, true)),
        Step::Run { command } => shell(command.clone()),
        Step::Spawn { command } => shell(format!(
            "nohup sh -c {} > /dev/null 2>&1 &",
            shell_quote(command)
        )),
        Step::Signal { args } => shell(signal_command(args)),
        Step::Question { text } => shell(signal_command(&["question".into(), text.clone()])),
        Step::Check { .. }
        | Step::Uncheck { .. }
        | Step::DocAppend { .. }
        | Step::DocSection { .. } => {
            let json = serde_json::to_string(step).ok()?;
            shell(format!("atelier scripted-step {}", shell_quote(&json)))
        }
        Step::Tool {
            name,
            input,
            output,
        } => Some(Action::Named {
            name: name.clone(),
            input: input.clone(),
            output: output.clone(),
        }),
        _ => None,
    }
}

fn signal_command(args: &[String]) -> String {
    let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    format!("atelier signal {}", args.join(" "))
}

/// A shell command that writes (or appends) `content` to `path` exactly, creating its
/// directory: a quoted heredoc when the content ends with a newline, `printf` otherwise.
pub fn write_command(path: &str, content: &str, append: bool) -> String {
    let redirect = if append { ">>" } else { ">" };
    let target = shell_quote(path);
    let mut command = String::new();
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        command = format!("mkdir -p {} && ", shell_quote(&dir.to_string_lossy()));
    }
    const EOF: &str = "ATELIER_EOF";
    if content.ends_with('\n') && !content.lines().any(|l| l == EOF) {
        command.push_str(&format!(
            "cat {redirect} {target} <<'{EOF}'\n{content}{EOF}"
        ));
    } else {
        command.push_str(&format!(
            "printf '%s' {} {redirect} {target}",
            shell_quote(content)
        ));
    }
    command
}

fn burst(answer: &mut Answer, count: u64, per_second: Option<f64>) {
    let gap = per_second.map(|rate| Duration::from_secs_f64(1.0 / rate));
    for i in 1..=count {
        if let (Some(gap), true) = (gap, i > 1) {
            answer.parts.push(Part::Pause(gap));
        }
        answer.parts.push(Part::Text(format!("burst {i}")));
    }
}

/// The error message of an `http_error` step without a body.
fn default_message(status: u16) -> String {
    match status {
        429 => "Rate limit exceeded: too many requests (simulated). Please try again later.".into(),
        529 => "Overloaded (simulated)".into(),
        500 => "Internal server error (simulated)".into(),
        503 => "Service unavailable (simulated)".into(),
        other => format!("HTTP {other} (simulated)"),
    }
}
