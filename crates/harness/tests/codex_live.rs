//! Drives the real Codex CLI through `CodexHarness`'s process specs against the harness lab's
//! fake model server, and decodes the live streams. Ignored by default: it needs the pinned
//! Codex install and python3.
//!
//! ```text
//! mkdir -p .tools && npm install --prefix .tools --no-audit --no-fund @openai/codex@0.169.0
//! cargo test -p harness --test codex_live -- --ignored --nocapture
//! ```
//!
//! `ATELIER_CODEX_BIN` overrides the binary (default: the native one under `.tools`),
//! `ATELIER_FAKE_MODEL` the fake server script (default: the shared harness lab's
//! `fakemodel.py`). With `UPDATE_SNAPSHOTS=1` the raw streams are recorded as
//! `tests/fixtures/codex/atelier-*.jsonl` (then regenerate their decodings with the `codex` test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::TranscriptEvent;
use harness::codex::CodexHarness;
use harness::process::{AgentProcess, ProcessSpec};
use harness::{Harness, TurnRequest};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn codex_bin() -> PathBuf {
    std::env::var_os("ATELIER_CODEX_BIN").map_or_else(
        || {
            manifest_dir().join(
                "../../.tools/node_modules/@openai/codex-linux-x64/vendor/\
                 x86_64-unknown-linux-musl/bin/codex",
            )
        },
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
        assert!(
            script.is_file(),
            "fake model server {} missing",
            script.display()
        );
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

    /// The body of the last request it received.
    fn last_body(&self) -> Value {
        let text = std::fs::read_to_string(&self.log).unwrap();
        let last = text.lines().last().unwrap();
        serde_json::from_str::<Value>(last).unwrap()["body"].clone()
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    harness: CodexHarness,
}

impl Lab {
    fn new() -> Lab {
        let bin = codex_bin();
        assert!(
            bin.is_file(),
            "codex binary {} missing (see the module doc)",
            bin.display()
        );
        // A fixed place, so that recorded paths are stable.
        let dir = std::env::temp_dir().join("atelier-codex-live");
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
            harness: CodexHarness::new(bin),
        }
    }

    fn request(&self, prompt: &str, port: u16, resume: Option<&str>) -> TurnRequest {
        TurnRequest {
            stage: domain::Stage::Implement,
            iteration: 0,
            turn: u32::from(resume.is_some()),
            prompt: prompt.into(),
            workdir: self.dir.join("repo"),
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                ("HOME".into(), self.dir.join("home").display().to_string()),
                ("LANG".into(), "C.UTF-8".into()),
            ],
            model: Some("gpt-5.5".into()),
            effort: Some("high".into()),
            resume_session: resume.map(Into::into),
            settings: json!({
                "harness": "codex",
                "base_url": format!("http://127.0.0.1:{port}/v1"),
                "max_retries": 1,
                "env": {"ATELIER_CODEX_API_KEY": "sk-fake"},
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
}

/// Runs `spec` to the end, decoding live; `stop_when` an event matches, interrupts it the way
/// the engine does and checks that none of its descendants survive.
async fn run(
    harness: &CodexHarness,
    spec: &ProcessSpec,
    stop_when: Option<fn(&TranscriptEvent) -> bool>,
) -> Outcome {
    let mut process = AgentProcess::spawn(spec).unwrap();
    let mut stdout = tokio::io::BufReader::new(process.take_stdout().unwrap()).lines();
    let mut decoder = harness.decoder();
    let (mut lines, mut events, mut tree) = (Vec::new(), Vec::new(), Vec::new());
    let read = async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let decoded = decoder.line(&line);
            lines.push(line);
            let stop = stop_when.is_some_and(|f| decoded.iter().any(f));
            events.extend(decoded);
            if stop {
                tree = harness::process::descendants(process.pid());
                assert!(!tree.is_empty(), "the tool should be running");
                process.interrupt(&harness.interrupt()).unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("codex did not finish in time");
    let status = tokio::time::timeout(Duration::from_secs(10), process.wait())
        .await
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let survivors: Vec<u32> = tree.into_iter().filter(|&p| alive(p)).collect();
    assert!(survivors.is_empty(), "survivors {survivors:?}");
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
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn is_tool_call(event: &TranscriptEvent) -> bool {
    matches!(event, TranscriptEvent::ToolCall { .. })
}

fn record(name: &str, lines: &[String]) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let path = manifest_dir().join(format!("tests/fixtures/codex/{name}.jsonl"));
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

#[tokio::test]
#[ignore = "needs the pinned Codex CLI under .tools and python3"]
async fn real_codex_runs_resumes_aborts_and_fails() {
    let lab = Lab::new();
    let fake = FakeModel::start(&lab.dir);
    let h = &lab.harness;

    // A fresh turn: write a file with apply_patch, run a shell command, answer.
    let req = lab.request(
        "Create hello.txt containing hi, then cat it.",
        fake.port,
        None,
    );
    let out = run(h, &lab.spec(&req), None).await;
    record("atelier-run", &out.lines);
    assert_eq!(out.code, Some(0));
    let hello = lab.dir.join("repo/hello.txt");
    assert_eq!(std::fs::read_to_string(&hello).unwrap().trim(), "hi");
    let Some(TranscriptEvent::Session { id: thread }) = out.events.first().cloned() else {
        panic!("no session first: {:?}", out.events)
    };
    assert!(out.events.contains(&TranscriptEvent::FileChange {
        path: hello.display().to_string(),
        kind: "add".into()
    }));
    assert!(out.events.iter().any(|e| matches!(e,
        TranscriptEvent::CommandOutput { output, exit_code: Some(0), .. } if output == "hi\n")));
    assert_eq!(messages(&out.events), ["done"]);
    assert_eq!(turn_end(&out.events), Some((true, None, false)));
    assert_eq!(fake.last_body()["reasoning"]["effort"], "high");

    // Resume the thread: the history is kept.
    let req = lab.request("SCRIPT:ECHO what did you do?", fake.port, Some(&thread));
    let out = run(h, &lab.spec(&req), None).await;
    record("atelier-resume", &out.lines);
    assert_eq!(
        out.events.first(),
        Some(&TranscriptEvent::Session { id: thread.clone() })
    );
    assert!(
        messages(&out.events)[0].contains("saw_hello=True"),
        "{:?}",
        out.events
    );
    assert_eq!(turn_end(&out.events), Some((true, None, false)));

    // TOML quoting survives Codex's parser, and a prompt starting with `-` stays a prompt.
    let effort = "we\"ird\\ é\ttab\nline \u{1}";
    let mut req = lab.request("-SCRIPT:ECHO dash", fake.port, None);
    req.effort = Some(effort.into());
    let out = run(h, &lab.spec(&req), None).await;
    assert_eq!(turn_end(&out.events), Some((true, None, false)));
    let body = fake.last_body();
    assert_eq!(body["reasoning"]["effort"], effort);
    let sent = body["input"].to_string();
    assert!(sent.contains("-SCRIPT:ECHO dash"), "{sent}");

    // A prompt too long for one argument goes through stdin.
    let long = format!("SCRIPT:ECHO {}", "x".repeat(200 * 1024));
    let spec = lab.spec(&lab.request(&long, fake.port, None));
    assert!(spec.stdin.is_some());
    let out = run(h, &spec, None).await;
    assert!(
        messages(&out.events)[0].starts_with("resumed ok"),
        "{:?}",
        out.events
    );
    assert!(
        fake.last_body()["input"]
            .to_string()
            .contains(&"x".repeat(200 * 1024))
    );

    // SIGINT during a tool: Codex kills the tool and exits 1 without a final event.
    let req = lab.request("SCRIPT:SLEEP run a long command", fake.port, None);
    let out = run(h, &lab.spec(&req), Some(is_tool_call)).await;
    record("atelier-abort-sigint", &out.lines);
    assert_eq!(out.code, Some(1));
    assert_eq!(turn_end(&out.events), None);

    // A dead endpoint fails quickly (bounded retries) and is retryable.
    let started = Instant::now();
    let out = run(h, &lab.spec(&lab.request("hi", free_port(), None)), None).await;
    record("atelier-dead-port", &out.lines);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.code, Some(1));
    let (ok, error, retryable) = turn_end(&out.events).unwrap();
    assert!(!ok && retryable, "{error:?}");

    // HTTP failures: 429 and 5xx are retryable, 401 is not.
    for (status, retryable) in [(429, true), (500, true), (503, true), (401, false)] {
        let port = error_server(status);
        let out = run(h, &lab.spec(&lab.request("hi", port, None)), None).await;
        record(&format!("atelier-http-{status}"), &out.lines);
        let (ok, error, got) = turn_end(&out.events).unwrap();
        assert!(!ok);
        assert_eq!(got, retryable, "{status}: {error:?}");
    }
}
