//! The scripted harness: a fake agent that plays a [`Scenario`](crate::scenario::Scenario) file
//! instead of calling a model, for tests, benchmarks and the demo.
//!
//! The agent ([`run_agent`]) runs as the hidden `atelier scripted-agent` subcommand and already
//! speaks Atelier's transcript events (one JSON object per line), so its decoder only parses
//! them. Everything else — process group, interrupt by SIGINT, resume by session id — works as
//! for a real CLI, which is what makes it a faithful stand-in for the engine's tests.

mod agent;
mod args;
mod doc;
mod shell;
mod step;

pub use agent::{EXIT_FAILED, EXIT_SCENARIO, run_agent};
pub use args::AgentArgs;
pub use shell::shell_quote;
pub use step::{EXIT_BAD_STEP, run_step};

use crate::process::ProcessSpec;
use crate::{Capabilities, Decoder, Harness, HarnessError, Interrupt, TurnRequest};
use domain::TranscriptEvent;
use std::path::PathBuf;

/// The harness that runs `<atelier_bin> scripted-agent --scenario …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedHarness {
    atelier_bin: PathBuf,
}

impl ScriptedHarness {
    /// `atelier_bin` is the `atelier` binary (it hosts the agent and answers its signals).
    pub fn new(atelier_bin: impl Into<PathBuf>) -> ScriptedHarness {
        ScriptedHarness {
            atelier_bin: atelier_bin.into(),
        }
    }
}

impl Harness for ScriptedHarness {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            live_text: true,
            interrupt: true,
            resume: true,
            subagents: false,
        }
    }

    /// Needs `settings.scenario`: the path of an existing scenario file (made absolute, since the
    /// agent runs in the task's worktree).
    fn command(&self, req: &TurnRequest) -> Result<ProcessSpec, HarnessError> {
        let scenario = match req.settings.get("scenario") {
            None | Some(serde_json::Value::Null) => {
                return Err(HarnessError::Config(format!(
                    "the scripted harness needs a `scenario` file for the {} role",
                    req.stage
                )));
            }
            Some(serde_json::Value::String(path)) if !path.is_empty() => path,
            Some(other) => {
                return Err(HarnessError::Config(format!(
                    "the `scenario` setting of the {} role must be a file path, not {other}",
                    req.stage
                )));
            }
        };
        let path = std::path::absolute(scenario)
            .map_err(|e| HarnessError::Config(format!("bad scenario path `{scenario}`: {e}")))?;
        if !path.is_file() {
            return Err(HarnessError::Config(format!(
                "the scenario file {} of the {} role does not exist",
                path.display(),
                req.stage
            )));
        }

        let agent = AgentArgs {
            scenario: path,
            iteration: req.iteration,
            turn: req.turn,
            session: req.resume_session.clone(),
        };
        let mut args = vec!["scripted-agent".into()];
        args.extend(agent.to_args());
        // The role's own `env`, like every harness (names were checked when the project was added).
        let mut env = req.env.clone();
        if let Some(extra) = req.settings.get("env").and_then(|v| v.as_object()) {
            for (name, value) in extra {
                if let Some(value) = value.as_str() {
                    env.retain(|(k, _)| k != name);
                    env.push((name.clone(), value.to_string()));
                }
            }
        }
        Ok(ProcessSpec {
            program: self.atelier_bin.clone(),
            args,
            cwd: req.workdir.clone(),
            env,
            stdin: Some(req.prompt.as_bytes().to_vec()),
            stdin_open: false,
        })
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(ScriptedDecoder::default())
    }

    fn interrupt(&self) -> Interrupt {
        Interrupt::Signal(libc::SIGINT)
    }
}

/// Parses the scripted agent's lines, which are already transcript events.
#[derive(Debug, Default)]
pub struct ScriptedDecoder {
    unreadable: u64,
}

impl Decoder for ScriptedDecoder {
    fn line(&mut self, line: &str) -> Vec<TranscriptEvent> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Vec::new();
        }
        match serde_json::from_str(line) {
            Ok(event) => vec![event],
            Err(_) => {
                self.unreadable += 1;
                let start: String = line.chars().take(200).collect();
                vec![TranscriptEvent::Error {
                    message: format!("unreadable agent output: {start}"),
                }]
            }
        }
    }

    fn unreadable_lines(&self) -> u64 {
        self.unreadable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Stage;
    use serde_json::json;

    fn request(settings: serde_json::Value) -> TurnRequest {
        TurnRequest {
            stage: Stage::Review,
            iteration: 2,
            turn: 1,
            prompt: "the prompt".into(),
            workdir: "/work/tree".into(),
            env: vec![("HOME".into(), "/home/x".into())],
            model: None,
            effort: None,
            resume_session: Some("scripted-abc".into()),
            settings,
        }
    }

    #[test]
    fn describes_itself() {
        let h = ScriptedHarness::new("/bin/atelier");
        assert_eq!(h.name(), "scripted");
        assert_eq!(
            h.capabilities(),
            Capabilities {
                live_text: true,
                interrupt: true,
                resume: true,
                subagents: false
            }
        );
        assert_eq!(h.interrupt(), Interrupt::Signal(libc::SIGINT));
    }

    #[test]
    fn builds_the_agent_command() {
        let dir = tempfile::tempdir().unwrap();
        let scenario = dir.path().join("review.json");
        std::fs::write(&scenario, r#"{"runs": [[{"do": "hang"}]]}"#).unwrap();
        let h = ScriptedHarness::new("/bin/atelier");
        let req = request(json!({"scenario": scenario}));
        assert_eq!(
            h.command(&req).unwrap(),
            ProcessSpec {
                program: "/bin/atelier".into(),
                args: [
                    "scripted-agent",
                    "--scenario",
                    scenario.to_str().unwrap(),
                    "--iteration",
                    "2",
                    "--turn",
                    "1",
                    "--session",
                    "scripted-abc"
                ]
                .map(Into::into)
                .to_vec(),
                cwd: "/work/tree".into(),
                env: vec![("HOME".into(), "/home/x".into())],
                stdin: Some(b"the prompt".to_vec()),
                stdin_open: false,
            }
        );

        let fresh = TurnRequest {
            resume_session: None,
            ..req
        };
        let args = h.command(&fresh).unwrap().args;
        assert_eq!(args.len(), 7);
        assert_eq!(args.last(), Some(&"1".into()));
    }

    #[test]
    fn needs_an_existing_scenario() {
        let h = ScriptedHarness::new("/bin/atelier");
        let msg = |settings| h.command(&request(settings)).unwrap_err().to_string();
        assert_eq!(
            msg(json!({})),
            "harness configuration: the scripted harness needs a `scenario` file for the review role"
        );
        assert_eq!(
            msg(json!(null)),
            "harness configuration: the scripted harness needs a `scenario` file for the review role"
        );
        assert_eq!(
            msg(json!({"scenario": 3})),
            "harness configuration: the `scenario` setting of the review role must be a file path, not 3"
        );
        assert_eq!(
            msg(json!({"scenario": "/nonexistent/review.json"})),
            "harness configuration: the scenario file /nonexistent/review.json of the review role does not exist"
        );
    }

    #[test]
    fn decodes_events_and_counts_unreadable_lines() {
        let mut d = ScriptedHarness::new("/bin/atelier").decoder();
        let long = "x".repeat(300);
        let lines = [
            r#"{"type":"session","id":"scripted-1"}"#,
            "",
            "   ",
            r#"{"type":"message","text":"hi"}"#,
            "not json",
            r#"{"type":"tool_call","name":"shell","input":{"command":"ls"}}"#,
            r#"{"type":"teleport"}"#,
            long.as_str(),
            "{\"type\":\"turn_end\",\"ok\":true}\r",
        ];
        let events: Vec<TranscriptEvent> = lines.iter().flat_map(|l| d.line(l)).collect();
        assert_eq!(
            events,
            vec![
                TranscriptEvent::Session {
                    id: "scripted-1".into()
                },
                TranscriptEvent::Message { text: "hi".into() },
                TranscriptEvent::Error {
                    message: "unreadable agent output: not json".into()
                },
                TranscriptEvent::ToolCall {
                    id: None,
                    name: "shell".into(),
                    input: json!({"command": "ls"})
                },
                TranscriptEvent::Error {
                    message: r#"unreadable agent output: {"type":"teleport"}"#.into()
                },
                TranscriptEvent::Error {
                    message: format!("unreadable agent output: {}", "x".repeat(200))
                },
                TranscriptEvent::TurnEnd {
                    ok: true,
                    error: None,
                    retryable: false,
                },
            ]
        );
        assert_eq!(d.unreadable_lines(), 3);
    }
}
