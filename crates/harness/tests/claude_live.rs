//! The Claude Code harness against the real CLI and a fake model server (ignored by default:
//! it needs the pinned `claude` binary and a model endpoint).
//!
//! ```text
//! npm install --prefix .tools --no-audit --no-fund @anthropic-ai/claude-code@2.1.330
//! python3 fakemodel.py --port 18391 --log /tmp/requests.jsonl &     # the harness lab's
//! CLAUDE_LIVE_BASE_URL=http://127.0.0.1:18391 \
//!   cargo test -p harness --test claude_live -- --ignored --nocapture
//! ```
//!
//! `CLAUDE_BIN` overrides the binary (default: the one under `.tools`); with
//! `CLAUDE_LIVE_RECORD=DIR` the raw stdout of every turn is written to `DIR/<turn>.jsonl`
//! (that is how `fixtures/claude/atelier-run.jsonl` was recorded). The fake model plays a
//! script chosen by the prompt: "hello.txt" writes the file then cats it, `SCRIPT:ECHO`
//! answers with what it saw of the history, `SCRIPT:SLEEP` runs a 30 s command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::{Stage, TranscriptEvent};
use harness::claude::ClaudeHarness;
use harness::{AgentProcess, Harness, ProcessSpec, TurnRequest, process};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn claude_bin() -> PathBuf {
    std::env::var_os("CLAUDE_BIN").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/node_modules/@anthropic-ai/claude-code-linux-x64/claude")
        },
        PathBuf::from,
    )
}

struct Live {
    harness: ClaudeHarness,
    base_url: String,
    workdir: tempfile::TempDir,
    home: tempfile::TempDir,
    /// Value of [`MARK`] in every process of this test's turns.
    mark: String,
}

/// Marks the agent's processes (and the tools that inherit its environment).
const MARK: &str = "ATELIER_LIVE_TEST_MARK";

impl Live {
    fn new(base_url: String) -> Live {
        let bin = claude_bin();
        assert!(bin.is_file(), "no claude binary at {}", bin.display());
        Live {
            harness: ClaudeHarness::new(bin),
            base_url,
            workdir: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            mark: format!("{}-{}", std::process::id(), rand_suffix()),
        }
    }

    fn request(&self, stage: Stage, prompt: &str, resume: Option<&str>) -> TurnRequest {
        let doc = self.workdir.path().join("TASK.md");
        TurnRequest {
            stage,
            iteration: 0,
            turn: u32::from(resume.is_some()),
            prompt: prompt.into(),
            workdir: self.workdir.path().into(),
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                ("HOME".into(), self.home.path().display().to_string()),
                ("LANG".into(), "C.UTF-8".into()),
                ("ATELIER_TASK_DOC".into(), doc.display().to_string()),
                (MARK.into(), self.mark.clone()),
            ],
            model: Some("claude-sonnet-4-5".into()),
            effort: None,
            resume_session: resume.map(str::to_string),
            settings: json!({
                "harness": "claude-code",
                "max_retries": 1,
                "env": {"ANTHROPIC_BASE_URL": self.base_url, "ANTHROPIC_API_KEY": "sk-ant-fake"}
            }),
        }
    }

    /// Runs one turn to its end; `interrupt_after` sends the harness's interrupt once a `Bash`
    /// call has been decoded and that much time has passed. Returns the events, the exit code
    /// and the stderr tail.
    async fn turn(
        &self,
        name: &str,
        spec: &ProcessSpec,
        interrupt_after: Option<Duration>,
    ) -> (Vec<TranscriptEvent>, Option<i32>, String) {
        let mut child = AgentProcess::spawn(spec).unwrap();
        let mut lines = BufReader::new(child.take_stdout().unwrap()).lines();
        let mut decoder = self.harness.decoder();
        let (mut raw, mut events) = (String::new(), Vec::new());
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                raw.push_str(&line);
                raw.push('\n');
                let decoded = decoder.line(&line);
                let bash_started = decoded
                    .iter()
                    .any(|e| matches!(e, TranscriptEvent::ToolCall { name, .. } if name == "Bash"));
                events.extend(decoded);
                if let (true, Some(delay)) = (bash_started, interrupt_after) {
                    tokio::time::sleep(delay).await;
                    let tool_pids = process::descendants(child.pid());
                    assert!(!tool_pids.is_empty(), "the Bash tool should be running");
                    let marked = process::marked_processes(MARK, &self.mark);
                    assert!(
                        tool_pids.iter().all(|p| marked.contains(p)),
                        "the tool inherits the agent's environment: {tool_pids:?} {marked:?}"
                    );
                    child.interrupt(&self.harness.interrupt()).unwrap();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(90), read)
            .await
            .expect("the turn did not end in 90 s");
        let status = child.wait().await.unwrap();
        let stderr = child.stderr_tail();
        assert_eq!(decoder.unreadable_lines(), 0, "{name}: {raw}");
        if let Some(dir) = std::env::var_os("CLAUDE_LIVE_RECORD") {
            std::fs::write(Path::new(&dir).join(format!("{name}.jsonl")), &raw).unwrap();
        }
        println!("--- {name}: exit {status}");
        for e in &events {
            println!("{}", serde_json::to_string(e).unwrap());
        }
        (events, status.code(), stderr)
    }
}

fn session_of(events: &[TranscriptEvent]) -> String {
    let ids: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            TranscriptEvent::Session { id } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 1, "one session event: {events:?}");
    ids[0].clone()
}

fn last_turn_end(events: &[TranscriptEvent]) -> (bool, Option<String>, bool) {
    match events.last() {
        Some(TranscriptEvent::TurnEnd {
            ok,
            error,
            retryable,
        }) => (*ok, error.clone(), *retryable),
        other => panic!("no turn end at the end: {other:?}"),
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn fake_model_url() -> String {
    std::env::var("CLAUDE_LIVE_BASE_URL")
        .expect("set CLAUDE_LIVE_BASE_URL to a fake model server (see the module doc)")
}

#[tokio::test]
#[ignore = "needs the claude binary and a fake model server (CLAUDE_LIVE_BASE_URL)"]
async fn runs_resumes_and_interrupts_the_real_cli() {
    let live = Live::new(fake_model_url());

    // 1. A fresh implementer turn; the prompt starts with `-` on purpose (it must stay the
    //    prompt, not become a flag).
    let req = live.request(
        Stage::Implement,
        "- Create hello.txt containing hi, then cat it.",
        None,
    );
    let spec = live.harness.command(&req).unwrap();
    let chosen = spec
        .args
        .iter()
        .position(|a| a == "--session-id")
        .map(|i| spec.args[i + 1].to_str().unwrap().to_string());
    let (events, code, stderr) = live.turn("atelier-run", &spec, None).await;
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let session = session_of(&events);
    assert_eq!(
        Some(&session),
        chosen.as_ref(),
        "the session is the id we chose"
    );
    assert_eq!(last_turn_end(&events), (true, None, false));
    assert!(events.contains(&TranscriptEvent::FileChange {
        path: "hello.txt".into(),
        kind: "add".into()
    }));
    assert!(events.contains(&TranscriptEvent::CommandOutput {
        command: "cat hello.txt".into(),
        output: "hi".into(),
        exit_code: Some(0)
    }));
    assert!(events.contains(&TranscriptEvent::Message {
        text: "done".into()
    }));
    assert_eq!(
        std::fs::read_to_string(live.workdir.path().join("hello.txt")).unwrap(),
        "hi"
    );
    // Claude keeps its state in the agent's HOME, not in the server's.
    assert!(live.home.path().join(".claude").is_dir());

    // 2. Resume: same session, history kept.
    let req = live.request(
        Stage::Review,
        "SCRIPT:ECHO what did you do?",
        Some(&session),
    );
    let spec = live.harness.command(&req).unwrap();
    let (events, code, stderr) = live.turn("atelier-resume", &spec, None).await;
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(session_of(&events), session);
    assert_eq!(last_turn_end(&events), (true, None, false));
    assert!(
        events.iter().any(
            |e| matches!(e, TranscriptEvent::Message { text } if text.contains("saw_hello=True"))
        ),
        "{events:?}"
    );

    // 3. Interrupt a long command with the harness's graceful signal.
    let req = live.request(Stage::Plan, "SCRIPT:SLEEP run a long command", None);
    let spec = live.harness.command(&req).unwrap();
    let (events, code, stderr) = live
        .turn("atelier-interrupt", &spec, Some(Duration::from_secs(2)))
        .await;
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let (ok, error, retryable) = last_turn_end(&events);
    assert!(!ok && !retryable);
    assert_eq!(
        error.as_deref(),
        Some("the turn was interrupted (aborted_tools)")
    );
    // SIGINT alone stopped the tool: nothing of the run is left (the engine would still kill
    // every descendant; here there is none to kill).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        process::marked_processes(MARK, &live.mark),
        Vec::<u32>::new()
    );
}

#[tokio::test]
#[ignore = "needs the claude binary"]
async fn a_dead_endpoint_is_a_retryable_failure() {
    // Nothing listens on the discard port.
    let live = Live::new("http://127.0.0.1:9".into());
    let req = live.request(Stage::Plan, "Create hello.txt containing hi.", None);
    let spec = live.harness.command(&req).unwrap();
    let (events, code, _) = live.turn("atelier-dead-port", &spec, None).await;
    assert_eq!(code, Some(1));
    let (ok, _, retryable) = last_turn_end(&events);
    assert!(!ok && retryable, "{events:?}");
}
