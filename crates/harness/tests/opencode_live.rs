//! Drives the real OpenCode CLI through `OpenCodeHarness`'s process specs against the harness
//! lab's fake model server, and decodes the live streams. Ignored by default: it needs the
//! pinned OpenCode install and python3, and takes a few minutes (a dead endpoint alone costs
//! OpenCode about 70 s of retries).
//!
//! ```text
//! mkdir -p .tools && npm install --prefix .tools --no-audit --no-fund opencode-ai@1.18.33
//! cargo test -p harness --test opencode_live -- --ignored --nocapture
//! ```
//!
//! `ATELIER_OPENCODE_BIN` overrides the binary (default: the native one under `.tools`),
//! `ATELIER_FAKE_MODEL` the fake server script (default: the shared harness lab's
//! `fakemodel.py`). With `UPDATE_SNAPSHOTS=1` the raw streams are recorded as
//! `tests/fixtures/opencode/atelier-*.jsonl` (then regenerate their decodings with the
//! `opencode` test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::{Stage, TranscriptEvent};
use harness::opencode::OpenCodeHarness;
use harness::process::{AgentProcess, ProcessSpec};
use harness::{Harness, TurnRequest};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// The variable that marks every process of a live run, so leftovers can be found and killed.
const MARK: &str = "ATELIER_OPENCODE_LIVE";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn opencode_bin() -> PathBuf {
    std::env::var_os("ATELIER_OPENCODE_BIN").map_or_else(
        || manifest_dir().join("../../.tools/node_modules/opencode-linux-x64/bin/opencode"),
        PathBuf::from,
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The lab's fake model server (a child of this test, killed on drop).
struct FakeModel {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl FakeModel {
    fn start(dir: &Path) -> FakeModel {
        let script = std::env::var_os("ATELIER_FAKE_MODEL").map_or_else(
            || "/work/shared/harness-lab/fakemodel.py".into(),
            PathBuf::from,
        );
        assert!(script.is_file(), "fake model {} missing", script.display());
        let port = free_port();
        let log = dir.join("requests.jsonl");
        let child = std::process::Command::new("python3")
            .arg(&script)
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .stderr(std::fs::File::create(dir.join("fake.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "fake model did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        FakeModel { child, port, log }
    }

    /// Every request received so far (method, path, headers, body).
    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The last request that offered tools (the agent's own turn, not title generation).
    fn last_agent_request(&self) -> Value {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r["body"]["tools"].as_array().is_some_and(|t| !t.is_empty()))
            .expect("no agent request")
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool_names(request: &Value) -> Vec<String> {
    request["body"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// The text of the last user message of a Chat Completions request.
fn last_user_text(request: &Value) -> String {
    let messages = request["body"]["messages"].as_array().unwrap();
    let user = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    match &user["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        other => other.to_string(),
    }
}

/// A server answering every request with `status` and a JSON error body.
fn error_server(status: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || answer(stream, status));
        }
    });
    port
}

fn answer(mut stream: TcpStream, status: u16) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0usize;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    let _ = reader.take(length as u64).read_to_end(&mut Vec::new());
    let body = format!(r#"{{"error":{{"message":"fake failure {status}","type":"test"}}}}"#);
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nretry-after: 0\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

struct Lab {
    dir: PathBuf,
    harness: OpenCodeHarness,
}

impl Lab {
    fn new() -> Lab {
        let bin = opencode_bin();
        assert!(
            bin.is_file(),
            "opencode binary {} missing (see the module doc)",
            bin.display()
        );
        // A fixed place, so that recorded paths are stable.
        let dir = std::env::temp_dir().join("atelier-opencode-live");
        let _ = std::fs::remove_dir_all(&dir);
        let repo = dir.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        git(&[
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=lab",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ]);
        Lab {
            dir,
            harness: OpenCodeHarness::new(bin),
        }
    }

    fn request(&self, stage: Stage, prompt: &str, port: u16, resume: Option<&str>) -> TurnRequest {
        TurnRequest {
            stage,
            iteration: 0,
            turn: u32::from(resume.is_some()),
            prompt: prompt.into(),
            workdir: self.dir.join("repo"),
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                ("HOME".into(), self.dir.join("home").display().to_string()),
                ("LANG".into(), "C.UTF-8".into()),
                (MARK.into(), "1".into()),
            ],
            model: Some("fake-model".into()),
            effort: None,
            resume_session: resume.map(Into::into),
            settings: json!({
                "harness": "opencode",
                "base_url": format!("http://127.0.0.1:{port}/v1"),
                "api_key_env": "FAKE_KEY",
                "env": {"FAKE_KEY": "sk-fake"},
            }),
        }
    }

    fn spec(&self, req: &TurnRequest) -> ProcessSpec {
        self.harness
            .check_role(req.model.as_deref(), &req.settings)
            .unwrap();
        self.harness.command(req).unwrap()
    }
}

/// What one process printed and how it ended.
struct Outcome {
    lines: Vec<String>,
    events: Vec<TranscriptEvent>,
    code: Option<i32>,
    stderr: String,
    took: Duration,
    /// Marked processes still alive after the agent exited (then killed).
    leftovers: usize,
}

/// Runs `spec` to the end (at most `limit`), decoding live. With `stop_on_tool`, interrupts it
/// the way the engine does once a descendant runs the script's `time.sleep(30)` (`run` reports a tool only when it
/// has finished), then kills every marked leftover.
async fn run(
    harness: &OpenCodeHarness,
    spec: &ProcessSpec,
    limit: Duration,
    stop_on_tool: bool,
) -> Outcome {
    let started = Instant::now();
    let mut process = AgentProcess::spawn(spec).unwrap();
    let pid = process.pid();
    let mut stdout = tokio::io::BufReader::new(process.take_stdout().unwrap()).lines();
    let mut decoder = harness.decoder();
    let (mut lines, mut events) = (Vec::new(), Vec::new());
    let read = async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            events.extend(decoder.line(&line));
            lines.push(line);
        }
    };
    // Never completes: the output's end decides.
    let stop = async {
        if !stop_on_tool {
            std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let sleeping = harness::process::descendants(pid).into_iter().any(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("time.sleep(30)"))
            });
            if sleeping {
                break;
            }
        }
        process.interrupt(&harness.interrupt()).unwrap();
        std::future::pending::<()>().await;
    };
    tokio::time::timeout(limit, async {
        tokio::select! {
            () = read => {}
            () = stop => {}
        }
    })
    .await
    .unwrap_or_else(|_| panic!("opencode did not finish within {limit:?}"));
    let status = tokio::time::timeout(Duration::from_secs(20), process.wait())
        .await
        .expect("opencode did not exit")
        .unwrap();
    // Whatever the agent left (OpenCode leaves its tools running after SIGTERM).
    let left = harness::process::marked_processes(MARK, "1");
    harness::process::kill_marked(MARK, "1");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        harness::process::marked_processes(MARK, "1").is_empty(),
        "survivors of {left:?}"
    );
    assert_eq!(
        decoder.unreadable_lines(),
        0,
        "stderr: {}",
        process.stderr_tail()
    );
    Outcome {
        lines,
        events,
        code: status.code(),
        stderr: process.stderr_tail(),
        took: started.elapsed(),
        leftovers: left.len(),
    }
}

fn record(name: &str, lines: &[String]) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let path = manifest_dir().join(format!("tests/fixtures/opencode/{name}.jsonl"));
        std::fs::write(
            path,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
    }
}

fn turn_end(events: &[TranscriptEvent]) -> Option<(bool, Option<String>, bool)> {
    events.iter().find_map(|e| match e {
        TranscriptEvent::TurnEnd {
            ok,
            error,
            retryable,
        } => Some((*ok, error.clone(), *retryable)),
        _ => None,
    })
}

fn messages(events: &[TranscriptEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            TranscriptEvent::Message { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn report(name: &str, out: &Outcome) {
    eprintln!(
        "{name}: exit {:?} in {:.1}s, {} lines, {} leftover processes, stderr {:?}",
        out.code,
        out.took.as_secs_f64(),
        out.lines.len(),
        out.leftovers,
        out.stderr.chars().take(300).collect::<String>()
    );
}

#[tokio::test]
#[ignore = "needs the pinned OpenCode CLI under .tools and python3"]
async fn real_opencode_runs_resumes_and_stops() {
    let lab = Lab::new();
    let fake = FakeModel::start(&lab.dir);
    let h = &lab.harness;
    let minute = Duration::from_secs(60);

    // A fresh implement turn: write a file, run a shell command, answer. The prompt arrives
    // byte for byte (quotes, a leading dash on the second line).
    let prompt = "Create hello.txt containing \"hi\", then cat it.\n- keep it short";
    let req = lab.request(Stage::Implement, prompt, fake.port, None);
    let out = run(h, &lab.spec(&req), 2 * minute, false).await;
    report("run", &out);
    record("atelier-run", &out.lines);
    assert_eq!(out.code, Some(0));
    let hello = lab.dir.join("repo/hello.txt");
    assert_eq!(std::fs::read_to_string(&hello).unwrap(), "hi");
    let Some(TranscriptEvent::Session { id: session }) = out.events.first().cloned() else {
        panic!("no session first: {:?}", out.events)
    };
    assert!(session.starts_with("ses_"), "{session}");
    assert!(out.events.contains(&TranscriptEvent::FileChange {
        path: hello.display().to_string(),
        kind: "add".into()
    }));
    assert!(out.events.contains(&TranscriptEvent::CommandOutput {
        command: "cat hello.txt".into(),
        output: "hi".into(),
        exit_code: Some(0)
    }));
    assert_eq!(messages(&out.events), ["done"]);
    assert_eq!(turn_end(&out.events), Some((true, None, false)));
    assert_eq!(
        out.events.last(),
        Some(&TranscriptEvent::TurnEnd {
            ok: true,
            error: None,
            retryable: false
        })
    );
    let request = fake.last_agent_request();
    assert_eq!(last_user_text(&request), prompt);
    assert_eq!(request["headers"]["Authorization"], "Bearer sk-fake");
    assert_eq!(request["body"]["model"], "fake-model");
    let tools = tool_names(&request);
    assert!(tools.contains(&"bash".to_string()), "{tools:?}");
    assert!(
        !tools.contains(&"task".to_string()),
        "implement denies task: {tools:?}"
    );

    // Resume the session in the review stage: the history is kept, sub-agents are offered.
    let req = lab.request(
        Stage::Review,
        "SCRIPT:ECHO what did you do?",
        fake.port,
        Some(&session),
    );
    let out = run(h, &lab.spec(&req), 2 * minute, false).await;
    report("resume", &out);
    record("atelier-resume", &out.lines);
    assert_eq!(out.code, Some(0));
    assert_eq!(
        out.events.first(),
        Some(&TranscriptEvent::Session {
            id: session.clone()
        })
    );
    assert!(
        messages(&out.events)[0].contains("saw_hello=True"),
        "{:?}",
        out.events
    );
    assert_eq!(turn_end(&out.events), Some((true, None, false)));
    assert!(tool_names(&fake.last_agent_request()).contains(&"task".to_string()));

    // A prompt far beyond the 128 KiB limit of one argument arrives whole (stdin).
    let long = format!("SCRIPT:ECHO {}", "x".repeat(200 * 1024));
    let req = lab.request(Stage::Plan, &long, fake.port, None);
    let out = run(h, &lab.spec(&req), 2 * minute, false).await;
    report("long prompt", &out);
    assert!(
        messages(&out.events)[0].starts_with("resumed ok"),
        "{:?}",
        out.events
    );
    assert_eq!(last_user_text(&fake.last_agent_request()), long);

    // Stopping during a tool: SIGTERM ends `run` without a final event; the tool it leaves
    // behind is killed by its mark.
    let req = lab.request(
        Stage::Implement,
        "SCRIPT:SLEEP run a long command",
        fake.port,
        None,
    );
    let out = run(h, &lab.spec(&req), 2 * minute, true).await;
    report("sigterm", &out);
    record("atelier-abort-sigterm", &out.lines);
    assert!(out.took < minute);
    assert_eq!(turn_end(&out.events), None, "{:?}", out.events);
}

#[tokio::test]
#[ignore = "needs the pinned OpenCode CLI under .tools and python3"]
async fn real_opencode_reports_endpoint_failures() {
    let lab = Lab::new();
    let h = &lab.harness;

    // A dead endpoint: OpenCode retries for about a minute, then reports a retryable error.
    let spec = lab.spec(&lab.request(Stage::Plan, "hi", free_port(), None));
    let out = run(h, &spec, Duration::from_secs(240), false).await;
    report("dead-port", &out);
    record("atelier-dead-port", &out.lines);
    assert_eq!(out.code, Some(1));
    let (ok, error, retryable) = turn_end(&out.events).unwrap();
    assert!(!ok && retryable, "{error:?}");

    // HTTP failures: 429 is retryable, 401 is not.
    for (status, retryable) in [(429, true), (401, false)] {
        let spec = lab.spec(&lab.request(Stage::Plan, "hi", error_server(status), None));
        let out = run(h, &spec, Duration::from_secs(240), false).await;
        report(&format!("http-{status}"), &out);
        record(&format!("atelier-http-{status}"), &out.lines);
        assert_eq!(out.code, Some(1));
        let (ok, error, got) = turn_end(&out.events).unwrap();
        assert!(!ok);
        assert_eq!(got, retryable, "{status}: {error:?}");
    }
}
