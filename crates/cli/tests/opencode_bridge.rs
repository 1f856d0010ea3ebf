//! `atelier opencode-bridge`, the process of a long-lived OpenCode session, against a fake
//! `opencode serve`: a shell script that prints the "listening on" line of a small HTTP server
//! run by the test itself (OpenCode's event stream, session creation, prompts, abort, delete),
//! which logs every request. What these pin down is the warm-up of an idle bridge: a turn, the
//! end of stdin or a stop that comes while OpenCode is still busy with the warm-up prompt (here:
//! forever, the fake never ends it) is taken at once instead of after the warm-up. The real
//! OpenCode is driven by `harnesses.rs` and `recordings.rs`; these run everywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout};

/// Prints the fake server's "listening" line, then idles like a server until killed.
const FAKE_OPENCODE: &str = r#"#!/bin/bash
echo "opencode server listening on http://127.0.0.1:$FAKE_PORT"
exec sleep 600
"#;

/// One request the fake server received: method, path and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: Value,
}

/// The fake `opencode serve`: its script and the requests its server logged. Its folder is the
/// bridge's working directory (the worktree whose OpenCode configuration the bridge watches).
struct Fake {
    dir: tempfile::TempDir,
    script: PathBuf,
    port: u16,
    log: Arc<Mutex<Vec<Request>>>,
    /// Events for every open event stream.
    events: tokio::sync::broadcast::Sender<Value>,
}

impl Fake {
    async fn start() -> Fake {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("opencode");
        std::fs::write(&script, FAKE_OPENCODE).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::clone(&log);
        let (events, _) = tokio::sync::broadcast::channel(16);
        let streams = events.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&served), streams.subscribe()));
            }
        });
        Fake {
            dir,
            script,
            port,
            log,
            events,
        }
    }

    /// Sends `event` on every open event stream, noted in the request log (as `EMIT <type>`) so
    /// that a test can tell what the bridge did before and after it.
    fn emit(&self, event: Value) {
        self.log.lock().unwrap().push(Request {
            method: "EMIT".into(),
            path: event["type"].as_str().unwrap_or_default().into(),
            body: event.clone(),
        });
        self.events.send(event).unwrap();
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (10 s at most) for a request with `method` and `path`; returns it.
    async fn wait_for(&self, method: &str, path: &str) -> Request {
        testkit::wait_until(&format!("{method} {path}"), Duration::from_secs(10), || {
            let found = self
                .requests()
                .into_iter()
                .find(|r| r.method == method && r.path == path);
            async move { found }
        })
        .await
        .unwrap_or_else(|err| panic!("{err}; the fake got {:#?}", self.requests()))
    }

    /// Starts an idle bridge (no turn on stdin: it warms up) on this fake.
    fn bridge(&self) -> Bridge {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_atelier"))
            .args([
                harness::opencode::BRIDGE_COMMAND,
                "--opencode",
                self.script.to_str().unwrap(),
                "--model",
                "atelier/sim-model",
            ])
            .env("FAKE_PORT", self.port.to_string())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
        let written = Arc::clone(&stderr);
        tokio::spawn(async move {
            while let Ok(Some(line)) = errors.next_line().await {
                let mut text = written.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Bridge {
            child,
            lines,
            stderr,
        }
    }
}

/// Serves one connection: one request, one answer. The event stream stays open (its first
/// event says the server is connected; then what the test emits); the warm-up session's prompt
/// is taken and never ends unless the test says so.
async fn serve(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Request>>>,
    mut events: tokio::sync::broadcast::Receiver<Value>,
) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body) = loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        seen.extend_from_slice(&buf[..n]);
        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&seen[..end]).to_string();
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if seen.len() >= end + 4 + length {
            break (head, seen[end + 4..end + 4 + length].to_vec());
        }
    };
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or_default().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    log.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
    });
    if path == "/event" {
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
                  data: {\"type\":\"server.connected\",\"properties\":{}}\n\n",
            )
            .await;
        // Open until the bridge goes.
        loop {
            tokio::select! {
                _ = stream.read(&mut buf) => return,
                event = events.recv() => {
                    let Ok(event) = event else { return };
                    let frame = format!("data: {event}\n\n");
                    if stream.write_all(frame.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    let answer = match (method.as_str(), path.as_str()) {
        ("POST", "/session") if body["title"] == "Atelier warm-up" => json!({"id": "ses_warm"}),
        ("POST", "/session") => json!({"id": "ses_run"}),
        _ => json!(true),
    };
    let text = answer.to_string();
    let _ = stream
        .write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{text}",
                text.len()
            )
            .as_bytes(),
        )
        .await;
}

struct Bridge {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// What it wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl Bridge {
    async fn turn(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(&harness::opencode::bridge::turn_line(text))
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// The bridge's next stdout line, as JSON (10 s at most).
    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("a line from the bridge within 10 s")
            .unwrap()
            .expect("the bridge's output ended");
        serde_json::from_str(&line).unwrap()
    }

    /// Its exit code (10 s at most: far below the warm-up's own limit of 60 s). Its stdin stays
    /// open meanwhile (tokio's `wait` would close it, which the bridge could take for the end of
    /// the session before a stop sent just before).
    async fn exit_code(&mut self) -> Option<i32> {
        let _stdin = self.child.stdin.take();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the bridge exits within 10 s")
            .unwrap()
            .code()
    }
}

/// The bridge announced the run's session and OpenCode is busy with the warm-up prompt.
async fn warming_up(fake: &Fake, bridge: &mut Bridge) {
    let session = bridge.line().await;
    assert_eq!(
        session,
        json!({"type": "bridge.session", "sessionID": "ses_run"})
    );
    let warm_up = fake
        .wait_for("POST", "/session/ses_warm/prompt_async")
        .await;
    assert_eq!(warm_up.body["model"]["providerID"], "atelier-warmup");
}

#[tokio::test]
async fn a_turn_that_comes_during_the_warm_up_is_sent_at_once() {
    let fake = Fake::start().await;
    let mut bridge = fake.bridge();
    warming_up(&fake, &mut bridge).await;
    bridge.turn("Do it.").await;
    let prompt = fake.wait_for("POST", "/session/ses_run/prompt_async").await;
    assert_eq!(
        prompt.body,
        json!({"model": {"providerID": "atelier", "modelID": "sim-model"},
            "parts": [{"type": "text", "text": "Do it."}]})
    );
    // The end of stdin ends the session at once too, the warm-up's session deleted.
    drop(bridge.child.stdin.take());
    assert_eq!(bridge.exit_code().await, Some(0));
    fake.wait_for("DELETE", "/session/ses_warm").await;
}

#[tokio::test]
async fn a_stop_during_the_warm_up_ends_the_bridge_at_once() {
    let fake = Fake::start().await;
    let mut bridge = fake.bridge();
    warming_up(&fake, &mut bridge).await;
    let pid = bridge.child.id().unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(bridge.exit_code().await, Some(0));
    fake.wait_for("POST", "/session/ses_run/abort").await;
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.path == "/session/ses_run/prompt_async"),
        "{:#?}",
        fake.requests()
    );
}

/// The worktree's OpenCode configuration changed since the bridge booted (the previous stage
/// edited it), and the turn comes while the warm-up still runs: disposing of OpenCode's
/// instance then would drop the turn's prompt (the real OpenCode ends it at once, unanswered).
/// The bridge waits for the warm-up's end, forwarding the run's events meanwhile, then has
/// OpenCode read its configuration again, and only then sends the prompt.
#[tokio::test]
async fn a_turn_that_needs_the_configuration_read_again_waits_for_the_warm_up_to_end() {
    let fake = Fake::start().await;
    let mut bridge = fake.bridge();
    warming_up(&fake, &mut bridge).await;
    std::fs::write(
        fake.dir.path().join("opencode.json"),
        r#"{"instructions": ["NOTES.md"]}"#,
    )
    .unwrap();
    bridge.turn("Do it.").await;
    // The bridge took the turn and waits (it says so on stderr): nothing was disposed of.
    let waiting = testkit::wait_until(
        "the bridge to wait for the warm-up",
        Duration::from_secs(10),
        || {
            let said = bridge
                .stderr
                .lock()
                .unwrap()
                .contains("once the warm-up has ended");
            async move { said.then_some(()) }
        },
    )
    .await;
    assert!(waiting.is_ok(), "{waiting:?}: {:#?}", fake.requests());
    // An event of the run's session is forwarded meanwhile.
    let retry = json!({"type": "session.status", "properties": {"sessionID": "ses_run",
        "status": {"type": "retry", "attempt": 1, "message": "busy", "next": 1}}});
    fake.emit(retry.clone());
    assert_eq!(bridge.line().await, retry);
    let before = fake.requests();
    assert!(
        !before
            .iter()
            .any(|r| r.path == "/instance/dispose" || r.path == "/session/ses_run/prompt_async"),
        "{before:#?}"
    );
    // The warm-up ends: the configuration is read again, then the turn goes.
    fake.emit(json!({"type": "session.idle", "properties": {"sessionID": "ses_warm"}}));
    fake.wait_for("POST", "/session/ses_run/prompt_async").await;
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    let at = |path: &str| paths.iter().rposition(|p| p == path).unwrap();
    assert!(
        at("session.idle") < at("/instance/dispose")
            && at("/instance/dispose") < at("/event")
            && at("/event") < at("/session/ses_run/prompt_async"),
        "{paths:#?}"
    );
    assert_eq!(
        paths.iter().filter(|p| *p == "/event").count(),
        2,
        "{paths:#?}"
    );
}
