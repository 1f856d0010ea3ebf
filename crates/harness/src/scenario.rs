//! The scenario format: what a scripted agent does, run by run and turn by turn.
//!
//! Harness-neutral on purpose: the scripted agent plays these files today and a model simulator
//! will play the same files behind the real CLIs later, so steps are named by intent (`write`,
//! `run`, `check` …), never by one CLI's tool names.
//!
//! ```json
//! { "runs": [
//!     [ {"do": "write", "path": "a.txt", "content": "hi\n"}, {"do": "signal", "args": ["plan-ready"]} ],
//!     { "turns": [ [ {"do": "question", "text": "Which database?"} ],
//!                  [ {"do": "echo_input"} ] ] }
//! ] }
//! ```
//!
//! Run `n` of a stage plays `runs[min(n, len - 1)]`: the last entry repeats.

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// A whole scenario file: one script per run of the stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub runs: Vec<RunScript>,
}

/// The turns of one run. In JSON either a plain array of steps (a single turn) or
/// `{"turns": [[step…], [step…]]}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunScript {
    turns: Vec<Vec<Step>>,
}

/// One thing the scripted agent does. Tagged by `"do"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Say something (a message event).
    Message { text: String },
    /// Think out loud (a thinking event).
    Thinking { text: String },
    /// Pretend to use a tool: a tool call and its result, nothing else happens.
    Tool {
        name: String,
        #[serde(default)]
        input: serde_json::Value,
        #[serde(default)]
        output: String,
    },
    /// Create or overwrite a file, relative to the working directory.
    Write { path: String, content: String },
    /// Append to a file (created when missing), relative to the working directory.
    Append { path: String, content: String },
    /// Run `sh -c command` in the working directory and wait for it (and for everything that
    /// keeps its output open: use `spawn` for background processes).
    Run { command: String },
    /// Start `sh -c command` in a new session without waiting (a background tool).
    Spawn { command: String },
    /// Check the first unchecked `- [ ]` item of the task doc whose line contains `item`.
    Check { item: String },
    /// Uncheck the first checked `- [x]` item of the task doc whose line contains `item`.
    Uncheck { item: String },
    /// Append text to the task doc.
    DocAppend { text: String },
    /// Replace the body of the task doc's `## heading` section (appended when missing).
    DocSection { heading: String, body: String },
    /// Run `atelier signal <args…>`.
    Signal { args: Vec<String> },
    /// Ask a question (`atelier signal question <text>`) and end the turn (successfully, even
    /// when the signal was rejected: the rejection is an error event).
    Question { text: String },
    /// Say the prompt or follow-up input this turn received. (Written `EchoInput {}`: a unit
    /// variant would silently accept unknown fields.)
    EchoInput {},
    /// Pause.
    Sleep { ms: u64 },
    /// Never finish the turn.
    Hang {},
    /// Emit `count` messages as fast as possible, or paced at `per_second`.
    Burst {
        count: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        per_second: Option<f64>,
    },
    /// Write `stderr` and exit with `code` at once, without ending the turn.
    Crash {
        code: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stderr: Option<String>,
    },
    /// Print lines that are not JSON. (Model simulator: answer one request with a 200 whose body
    /// is not SSE, then go on.)
    Garbage {
        #[serde(default = "default_garbage_lines")]
        lines: u64,
    },
    /// End the turn as failed with `error`.
    Fail { error: String },
    /// Model simulator: answer the first `times` (default 1) requests that reach this step with
    /// HTTP `status` (each API's error shape, or `body` verbatim), then go on. The scripted agent
    /// reports an error and fails the turn.
    HttpError {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        times: Option<u32>,
    },
    /// Model simulator: accept the first request that reaches this step and send nothing for `ms`
    /// (forever when absent), then answer. The scripted agent sleeps (or hangs).
    Stall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
    },
    /// Model simulator: stream the response that carries the following steps slowly, pausing
    /// `ms_per_chunk` before each chunk. The scripted agent ignores it.
    Slow { ms_per_chunk: u64 },
}

fn default_garbage_lines() -> u64 {
    3
}

/// The line that tells the model simulator which scenario a conversation plays:
/// `Atelier-Stage: <stage> #<iteration>` (e.g. `Atelier-Stage: review #1` plays run 1 of
/// `review.json`; iterations count from 0 like [`Scenario::run`]). The engine puts it in the
/// prompt; [`parse_stage_line`] reads it back.
pub fn stage_line(stage: &str, iteration: u32) -> String {
    format!("{STAGE_LINE_PREFIX} {stage} #{iteration}")
}

/// The start of the [`stage_line`].
pub const STAGE_LINE_PREFIX: &str = "Atelier-Stage:";

/// Finds the first [`stage_line`] in `text` (the prefix may be preceded by other text on its
/// line) and returns its stage and iteration. The stage must be a plain name (ASCII letters,
/// digits, `-`, `_`), since it names a file.
pub fn parse_stage_line(text: &str) -> Option<(String, u32)> {
    text.lines().find_map(|line| {
        // Anywhere in the line: CLIs may quote or prefix the prompt (`opencode run` quotes it).
        let rest = &line[line.find(STAGE_LINE_PREFIX)? + STAGE_LINE_PREFIX.len()..];
        let (stage, iteration) = rest.trim().split_once('#')?;
        let stage = stage.trim();
        let plain = !stage.is_empty()
            && stage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let digits: String = iteration
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let iteration = digits.parse().ok()?;
        plain.then(|| (stage.to_string(), iteration))
    })
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid scenario file {} at line {line}, column {column}: {source}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        source: serde_json::Error,
    },
    #[error("invalid scenario{}: {message}", path.as_ref().map(|p| format!(" file {}", p.display())).unwrap_or_default())]
    Invalid {
        path: Option<PathBuf>,
        message: String,
    },
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let scenario: Scenario =
            serde_json::from_str(&text).map_err(|source| ScenarioError::Parse {
                path: path.to_path_buf(),
                line: source.line(),
                column: source.column(),
                source,
            })?;
        scenario.validate().map_err(|e| match e {
            ScenarioError::Invalid { message, .. } => ScenarioError::Invalid {
                path: Some(path.to_path_buf()),
                message,
            },
            other => other,
        })?;
        Ok(scenario)
    }

    /// The script of run `iteration` (0-based); past the end, the last run repeats.
    pub fn run(&self, iteration: u32) -> &RunScript {
        static EMPTY: RunScript = RunScript { turns: Vec::new() };
        let index = usize::try_from(iteration).unwrap_or(usize::MAX);
        self.runs.get(index).or(self.runs.last()).unwrap_or(&EMPTY)
    }

    /// Checks what the types cannot: no empty runs or turns, sensible numbers, non-empty targets.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            path: None,
            message,
        };
        if self.runs.is_empty() {
            return Err(invalid("`runs` is empty: give at least one run".into()));
        }
        for (r, run) in self.runs.iter().enumerate() {
            if run.turns.is_empty() {
                return Err(invalid(format!("run {r} has no turns")));
            }
            for (t, turn) in run.turns.iter().enumerate() {
                if turn.is_empty() {
                    return Err(invalid(format!("run {r} turn {t} has no steps")));
                }
                for (s, step) in turn.iter().enumerate() {
                    step.validate()
                        .map_err(|m| invalid(format!("run {r} turn {t} step {s}: {m}")))?;
                }
            }
        }
        Ok(())
    }
}

impl Step {
    fn validate(&self) -> Result<(), String> {
        match self {
            Step::Write { path, .. } | Step::Append { path, .. } if path.is_empty() => {
                Err("`path` is empty".into())
            }
            Step::Run { command } | Step::Spawn { command } if command.trim().is_empty() => {
                Err("`command` is empty".into())
            }
            Step::Check { item } | Step::Uncheck { item } if item.trim().is_empty() => {
                Err("`item` is empty".into())
            }
            Step::DocSection { heading, .. } if heading.trim().is_empty() => {
                Err("`heading` is empty".into())
            }
            Step::HttpError { status, .. } if !(400..=599).contains(status) => Err(format!(
                "`status` must be an HTTP error status (400 to 599), not {status}"
            )),
            Step::HttpError { times: Some(0), .. } => {
                Err("`times` must be at least 1 (leave it out for 1)".into())
            }
            Step::Signal { args } if args.is_empty() => {
                Err("`args` is empty: give the signal kind, e.g. [\"plan-ready\"]".into())
            }
            Step::Burst {
                per_second: Some(rate),
                ..
            } if !(rate.is_finite() && *rate > 0.0) => Err(format!(
                "`per_second` must be a positive number, not {rate}"
            )),
            _ => Ok(()),
        }
    }
}

impl RunScript {
    /// A run with one turn.
    pub fn single(steps: Vec<Step>) -> RunScript {
        RunScript { turns: vec![steps] }
    }

    /// A run with several turns (a resumed session plays the next one).
    pub fn with_turns(turns: Vec<Vec<Step>>) -> RunScript {
        RunScript { turns }
    }

    /// Every turn of this run, in order.
    pub fn turns(&self) -> &[Vec<Step>] {
        &self.turns
    }

    /// The steps of turn `turn`, if the run has that many turns.
    pub fn turn(&self, turn: u32) -> Option<&[Step]> {
        // Like runs, the last turn repeats: a session continued after a stop or a crash replays
        // the turn it was in.
        let index = usize::try_from(turn)
            .ok()?
            .min(self.turns.len().checked_sub(1)?);
        self.turns.get(index).map(Vec::as_slice)
    }
}

/// The `{"turns": …}` form of a run.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnsForm<T> {
    turns: T,
}

impl Serialize for RunScript {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.turns.as_slice() {
            [single] => single.serialize(serializer),
            turns => TurnsForm { turns }.serialize(serializer),
        }
    }
}

/// Accepts both forms by looking at the JSON shape (array or object). A hand-written visitor
/// instead of `#[serde(untagged)]` so errors keep their message and position.
impl<'de> Deserialize<'de> for RunScript {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RunVisitor;
        impl<'de> Visitor<'de> for RunVisitor {
            type Value = RunScript;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of steps or an object {\"turns\": [[steps…], …]}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RunScript, A::Error> {
                let steps = Vec::<Step>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(RunScript::single(steps))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RunScript, A::Error> {
                let form = TurnsForm::<Vec<Vec<Step>>>::deserialize(
                    de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RunScript::with_turns(form.turns))
            }
        }
        deserializer.deserialize_any(RunVisitor)
    }
}

#[cfg(test)]
mod tests;
