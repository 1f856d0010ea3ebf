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
    /// Print lines that are not JSON.
    Garbage { lines: u64 },
    /// End the turn as failed with `error`.
    Fail { error: String },
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
        let index = usize::try_from(turn).ok()?;
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
mod tests {
    use super::*;
    use serde_json::json;

    fn every_step() -> Vec<Step> {
        vec![
            Step::Message { text: "hi".into() },
            Step::Thinking { text: "hm".into() },
            Step::Tool {
                name: "search".into(),
                input: json!({"q": "x"}),
                output: "found".into(),
            },
            Step::Write {
                path: "a.txt".into(),
                content: "a".into(),
            },
            Step::Append {
                path: "a.txt".into(),
                content: "b".into(),
            },
            Step::Run {
                command: "ls".into(),
            },
            Step::Spawn {
                command: "sleep 9".into(),
            },
            Step::Check { item: "one".into() },
            Step::Uncheck { item: "one".into() },
            Step::DocAppend { text: "t".into() },
            Step::DocSection {
                heading: "Review Findings".into(),
                body: "none".into(),
            },
            Step::Signal {
                args: vec!["plan-ready".into()],
            },
            Step::Question { text: "?".into() },
            Step::EchoInput {},
            Step::Sleep { ms: 5 },
            Step::Hang {},
            Step::Burst {
                count: 3,
                per_second: None,
            },
            Step::Burst {
                count: 3,
                per_second: Some(50.0),
            },
            Step::Crash {
                code: 3,
                stderr: Some("boom".into()),
            },
            Step::Crash {
                code: 4,
                stderr: None,
            },
            Step::Garbage { lines: 2 },
            Step::Fail { error: "no".into() },
        ]
    }

    #[test]
    fn round_trips_every_step_in_both_forms() {
        let scenario = Scenario {
            runs: vec![
                RunScript::single(every_step()),
                RunScript::with_turns(vec![every_step(), vec![Step::EchoInput {}]]),
            ],
        };
        let text = serde_json::to_string_pretty(&scenario).unwrap();
        let back: Scenario = serde_json::from_str(&text).unwrap();
        assert_eq!(back, scenario);
        scenario.validate().unwrap();
    }

    #[test]
    fn parses_the_documented_shapes() {
        let text = r#"{"runs": [
            [{"do": "message", "text": "hi"}, {"do": "tool", "name": "grep"}],
            {"turns": [[{"do": "question", "text": "why?"}], [{"do": "echo_input"}]]}
        ]}"#;
        let scenario: Scenario = serde_json::from_str(text).unwrap();
        assert_eq!(
            scenario,
            Scenario {
                runs: vec![
                    RunScript::single(vec![
                        Step::Message { text: "hi".into() },
                        Step::Tool {
                            name: "grep".into(),
                            input: serde_json::Value::Null,
                            output: String::new(),
                        },
                    ]),
                    RunScript::with_turns(vec![
                        vec![Step::Question {
                            text: "why?".into()
                        }],
                        vec![Step::EchoInput {}],
                    ]),
                ]
            }
        );
        assert_eq!(
            serde_json::to_value(&scenario.runs[0]).unwrap(),
            json!([{"do": "message", "text": "hi"}, {"do": "tool", "name": "grep", "input": null, "output": ""}])
        );
    }

    #[test]
    fn the_last_run_repeats() {
        let a = RunScript::single(vec![Step::Message { text: "a".into() }]);
        let b = RunScript::single(vec![Step::Message { text: "b".into() }]);
        let scenario = Scenario {
            runs: vec![a.clone(), b.clone()],
        };
        assert_eq!(scenario.run(0), &a);
        assert_eq!(scenario.run(1), &b);
        assert_eq!(scenario.run(7), &b);
        assert_eq!(Scenario { runs: vec![] }.run(0), &RunScript::default());
        assert_eq!(b.turn(0), Some(&[Step::Message { text: "b".into() }][..]));
        assert_eq!(b.turn(1), None);
    }

    #[test]
    fn rejects_unknown_steps_and_fields() {
        for bad in [
            r#"{"runs": [[{"do": "teleport"}]]}"#,
            r#"{"runs": [[{"do": "message", "text": "x", "extra": 1}]]}"#,
            r#"{"runs": [[{"do": "echo_input", "extra": 1}]]}"#,
            r#"{"runs": [{"turns": [], "extra": 1}]}"#,
            r#"{"runs": [[{"text": "no tag"}]]}"#,
            r#"{"runs": ["message"]}"#,
            r#"{"runs": [], "name": "x"}"#,
        ] {
            assert!(serde_json::from_str::<Scenario>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_rejects_empty_and_nonsense() {
        let msg = |s: Scenario| s.validate().unwrap_err().to_string();
        assert_eq!(
            msg(Scenario { runs: vec![] }),
            "invalid scenario: `runs` is empty: give at least one run"
        );
        assert_eq!(
            msg(Scenario {
                runs: vec![RunScript::with_turns(vec![])]
            }),
            "invalid scenario: run 0 has no turns"
        );
        assert_eq!(
            msg(Scenario {
                runs: vec![
                    RunScript::single(vec![Step::EchoInput {}]),
                    RunScript::single(vec![])
                ]
            }),
            "invalid scenario: run 1 turn 0 has no steps"
        );
        assert_eq!(
            msg(Scenario {
                runs: vec![RunScript::single(vec![Step::Burst {
                    count: 1,
                    per_second: Some(0.0)
                }])]
            }),
            "invalid scenario: run 0 turn 0 step 0: `per_second` must be a positive number, not 0"
        );
        assert_eq!(
            msg(Scenario {
                runs: vec![RunScript::single(vec![Step::Signal { args: vec![] }])]
            }),
            "invalid scenario: run 0 turn 0 step 0: `args` is empty: give the signal kind, e.g. [\"plan-ready\"]"
        );
    }

    #[test]
    fn load_errors_name_the_file_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");

        let err = Scenario::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read scenario file {}", path.display())));

        std::fs::write(
            &path,
            "{\"runs\": [\n  [{\"do\": \"message\", \"txt\": \"x\"}]\n]}",
        )
        .unwrap();
        let err = Scenario::load(&path).unwrap_err();
        let ScenarioError::Parse { line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, 2);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "invalid scenario file {} at line 2, column",
                path.display()
            )),
            "{text}"
        );
        assert!(text.contains("txt"), "{text}");

        std::fs::write(&path, r#"{"runs": []}"#).unwrap();
        assert_eq!(
            Scenario::load(&path).unwrap_err().to_string(),
            format!(
                "invalid scenario file {}: `runs` is empty: give at least one run",
                path.display()
            )
        );

        std::fs::write(&path, r#"{"runs": [[{"do": "hang"}]]}"#).unwrap();
        assert_eq!(
            Scenario::load(&path).unwrap(),
            Scenario {
                runs: vec![RunScript::single(vec![Step::Hang {}])]
            }
        );
    }
}
