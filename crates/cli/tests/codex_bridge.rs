//! `atelier codex-bridge`, the process of a long-lived Codex session, against a fake `codex
//! app-server` (a shell script that speaks just enough JSON-RPC and logs what it is sent): the
//! handshake at boot, a warm process's thread started at boot and kept only while nothing Codex
//! reads at a thread's start changed, one `turn/start` per stdin turn line, Codex's requests
//! answered, quiet notifications dropped, a refused turn reported as a failed turn, and every way
//! the session ends (stdin closed, a stop signal, the bridge killed). The real Codex is driven
//! by `harnesses.rs` and `recordings.rs`; these run everywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use harness::codex::bridge::{BridgeConfig, wire};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// Signal numbers (Linux).
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Answers `initialize`, `thread/start` (the primer `ephemeral`, else threads `t-1`, `t-2`, …) and
/// `turn/start` (refused when the text holds `refuse`; busy in a tool, not reading its input,
/// when it holds `hang`; otherwise it asks an approval first and reports its answer, streams a
/// delta and a quiet diff, and completes the turn). Logs every line it reads, and `term` on
/// SIGTERM (ending its tool), to `$FAKE_LOG`; exits 3 at the end of its input.
const FAKE_CODEX: &str = r#"#!/bin/bash
trap 'echo term >> "$FAKE_LOG"; [ -n "$tool" ] && kill $tool; exit 0' TERM
threads=0
echo "pid $$" >> "$FAKE_LOG"
while IFS= read -r line; do
  echo "$line" >> "$FAKE_LOG"
  id=$(printf '%s\n' "$line" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
  case "$line" in
    *'"method":"initialize"'*)
      echo "{\"id\":$id,\"result\":{\"userAgent\":\"fake\"}}" ;;
    *'"method":"thread/start"'*'"ephemeral":true'*)
      echo "{\"id\":$id,\"result\":{\"thread\":{\"id\":\"primer\"}}}" ;;
    *'"method":"thread/start"'*)
      threads=$((threads + 1))
      echo "{\"method\":\"thread/started\",\"params\":{\"thread\":{\"id\":\"t-$threads\"}}}"
      echo "{\"id\":$id,\"result\":{\"thread\":{\"id\":\"t-$threads\"}}}" ;;
    *'"method":"turn/start"'*hang*)
      sleep 600 &
      tool=$!
      echo "tool $tool" >> "$FAKE_LOG"
      wait $tool ;;
    *'"method":"turn/start"'*refuse*)
      echo "{\"id\":$id,\"error\":{\"code\":-32600,\"message\":\"thread not loaded\"}}" ;;
    *'"method":"turn/start"'*)
      echo '{"id":"srv-1","method":"item/commandExecution/requestApproval","params":{"itemId":"c"}}'
      IFS= read -r answer
      echo "$answer" >> "$FAKE_LOG"
      echo "{\"method\":\"fake/answered\",\"params\":$answer}"
      echo "{\"id\":$id,\"result\":{\"turn\":{\"id\":\"u-$id\",\"items\":[],\"status\":\"inProgress\"}}}"
      echo '{"method":"item/agentMessage/delta","params":{"threadId":"t-1","turnId":"u","itemId":"m","delta":"hi"}}'
      echo '{"method":"turn/diff/updated","params":{"threadId":"t-1","turnId":"u","diff":"x"}}'
      echo '{"method":"turn/completed","params":{"threadId":"t-1","turn":{"id":"u","items":[],"status":"completed"}}}' ;;
  esac
done
exit 3
"#;

struct Fake {
    _dir: tempfile::TempDir,
    script: PathBuf,
    log: PathBuf,
    /// The bridge's working directory: `repo/sub` of a repository `repo`.
    work: PathBuf,
    /// Its `HOME`.
    home: PathBuf,
}

impl Fake {
    fn new() -> Fake {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("codex");
        std::fs::write(&script, FAKE_CODEX).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("log");
        let work = dir.path().join("repo/sub");
        let home = dir.path().join("home");
        for folder in [&dir.path().join("repo/.git"), &work, &home] {
            std::fs::create_dir_all(folder).unwrap();
        }
        Fake {
            _dir: dir,
            script,
            log,
            work,
            home,
        }
    }

    /// The repository's root (the working directory's parent).
    fn repo(&self) -> PathBuf {
        self.work.parent().unwrap().to_path_buf()
    }

    /// The lines the fake was sent (and its own notes).
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The fake's pid, once it logged it.
    fn pid(&self) -> u32 {
        self.log()
            .iter()
            .find_map(|l| l.strip_prefix("pid ")?.parse().ok())
            .unwrap()
    }

    /// Starts the bridge on this fake, `first` (if any) written as the first turn line.
    async fn bridge(&self, resume: Option<&str>, first: Option<&str>) -> Bridge {
        let config = BridgeConfig {
            codex: self.script.clone(),
            args: vec!["app-server".into(), "--disable".into(), "plugins".into()],
            resume: resume.map(Into::into),
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_atelier"))
            .args([harness::codex::bridge::SUBCOMMAND, &config.to_arg()])
            .env("FAKE_LOG", &self.log)
            .env("HOME", &self.home)
            .env_remove("CODEX_HOME")
            .current_dir(&self.work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut bridge = Bridge { child, lines };
        if let Some(text) = first {
            bridge.turn(text).await;
        }
        bridge
    }
}

struct Bridge {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Bridge {
    async fn turn(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(&wire::turn_line(text)).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The bridge's stdout lines up to the one whose method is `until` (included).
    async fn read_until(&mut self, until: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{until}` within 10 s; saw {seen:#?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("the bridge's output ended before `{until}`: {seen:#?}"));
            let value: Value = serde_json::from_str(&line).unwrap();
            let done = value["method"] == until;
            seen.push(value);
            if done {
                return seen;
            }
        }
    }

    async fn exit_code(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the bridge exits")
            .unwrap();
        status.code().or(status.signal().map(|s| -s))
    }
}

fn methods(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["method"].as_str().unwrap())
        .collect()
}

/// The requests the fake was sent, by method, with their params.
fn requests(log: &[String], method: &str) -> Vec<Value> {
    log.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["method"] == method)
        .map(|v| v["params"].clone())
        .collect()
}

async fn gone(pid: u32) {
    testkit::wait_until("the fake codex to end", Duration::from_secs(10), || {
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        async move { (!alive).then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn serves_turns_from_stdin_and_ends_with_it() {
    let fake = Fake::new();
    let mut bridge = fake.bridge(None, Some("Do it.")).await;
    let turn = bridge.read_until("turn/completed").await;
    // The session's thread, then the turn's notifications; the approval was accepted by the
    // bridge and the quiet diff (and Codex's own thread announcement) dropped.
    assert_eq!(
        methods(&turn),
        [
            wire::SESSION,
            "fake/answered",
            "item/agentMessage/delta",
            "turn/completed"
        ]
    );
    assert_eq!(
        turn[0]["params"],
        json!({"threadId": "t-1", "resumed": false})
    );
    assert_eq!(
        turn[1]["params"],
        json!({"id": "srv-1", "jsonrpc": "2.0", "result": {"decision": "accept"}})
    );
    // A second turn goes to the same thread; a refused one is a failed turn.
    bridge.turn("What did you do?").await;
    let second = bridge.read_until("turn/completed").await;
    assert!(!methods(&second).contains(&wire::SESSION), "{second:#?}");
    bridge.turn("please refuse this").await;
    let refused = bridge.read_until(wire::TURN_FAILED).await;
    let message = refused.last().unwrap()["params"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("thread not loaded"), "{message}");

    // Stdin closed: Codex's stdin is closed, and its exit status is the bridge's.
    drop(bridge.child.stdin.take());
    assert_eq!(bridge.exit_code().await, Some(3));
    let log = fake.log();
    let init = &requests(&log, "initialize")[0];
    assert_eq!(init["clientInfo"]["name"], "atelier");
    assert!(
        init["capabilities"]["optOutNotificationMethods"]
            .as_array()
            .unwrap()
            .contains(&json!("turn/diff/updated"))
    );
    assert_eq!(requests(&log, "initialized").len(), 1);
    // A cold start (the turn was waiting): no primer, one thread, without approvals or sandbox.
    let threads = requests(&log, "thread/start");
    assert_eq!(threads.len(), 1, "{log:#?}");
    assert_eq!(threads[0]["approvalPolicy"], "never");
    assert_eq!(threads[0]["sandbox"], "danger-full-access");
    assert_eq!(threads[0]["cwd"], fake.work.display().to_string());
    let turns = requests(&log, "turn/start");
    assert_eq!(turns.len(), 3);
    assert_eq!(
        turns[0],
        json!({"threadId": "t-1", "input": [{"type": "text", "text": "Do it."}]})
    );
}

/// Waits until the fake was asked `n` `thread/start`s, and returns them.
async fn thread_starts(fake: &Fake, n: usize) -> Vec<Value> {
    testkit::wait_until("the thread/start", Duration::from_secs(10), || {
        let threads = requests(&fake.log(), "thread/start");
        async move { (threads.len() >= n).then_some(threads) }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_warm_process_starts_its_thread_at_boot_and_keeps_it_when_nothing_changed() {
    let fake = Fake::new();
    std::fs::write(fake.repo().join("AGENTS.md"), "Be brief.\n").unwrap();
    let mut bridge = fake.bridge(None, None).await;
    let booted = thread_starts(&fake, 1).await;
    // The session's own thread, not a primer.
    assert_eq!(booted[0].get("ephemeral"), None);
    assert_eq!(booted[0]["cwd"], fake.work.display().to_string());
    // What Codex does not read when a thread starts may change meanwhile.
    std::fs::write(fake.work.join("hello.txt"), "hi\n").unwrap();
    bridge.turn("Review it.").await;
    let turn = bridge.read_until("turn/completed").await;
    assert_eq!(turn[0]["method"], wire::SESSION);
    assert_eq!(turn[0]["params"]["threadId"], "t-1");
    // One thread in all: the turn went to the one started at boot.
    assert_eq!(requests(&fake.log(), "thread/start").len(), 1);
    assert_eq!(requests(&fake.log(), "turn/start")[0]["threadId"], "t-1");
    bridge.turn("And then?").await;
    bridge.read_until("turn/completed").await;
    assert_eq!(requests(&fake.log(), "thread/start").len(), 1);
}

#[tokio::test]
async fn a_change_to_what_codex_reads_while_a_warm_process_waits_gets_a_new_thread() {
    // Each of these is read by Codex when a thread starts: a thread started before the change
    // would keep the old text.
    type Change = (&'static str, fn(&Fake) -> PathBuf, &'static str);
    let changes: [Change; 5] = [
        (
            "AGENTS.md at the root",
            |f| f.repo().join("AGENTS.md"),
            "Greet in Latin.\n",
        ),
        (
            "AGENTS.override.md here",
            |f| f.work.join("AGENTS.override.md"),
            "x",
        ),
        (
            "the project's configuration",
            |f| f.repo().join(".codex/config.toml"),
            "model = \"m\"\n",
        ),
        (
            "Codex's home instructions",
            |f| f.home.join(".codex/AGENTS.md"),
            "x",
        ),
        (
            "the shell's start-up file",
            |f| f.home.join(".profile"),
            "export A=1\n",
        ),
    ];
    for (what, path, text) in changes {
        let fake = Fake::new();
        std::fs::write(fake.repo().join("AGENTS.md"), "Be brief.\n").unwrap();
        let mut bridge = fake.bridge(None, None).await;
        thread_starts(&fake, 1).await;
        let path = path(&fake);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        bridge.turn("Review it.").await;
        let turn = bridge.read_until("turn/completed").await;
        assert_eq!(turn[0]["params"]["threadId"], "t-2", "{what}: {turn:#?}");
        let threads = requests(&fake.log(), "thread/start");
        assert_eq!(threads.len(), 2, "{what}");
        assert_eq!(threads[1].get("ephemeral"), None, "{what}");
        assert_eq!(requests(&fake.log(), "turn/start")[0]["threadId"], "t-2");
    }
}

#[tokio::test]
async fn what_cannot_be_compared_safely_gets_a_new_thread() {
    let fake = Fake::new();
    // A FIFO where Codex looks: never opened by the bridge (a read would wait forever), so the
    // thread started at boot is a primer only.
    let made = std::process::Command::new("mkfifo")
        .arg(fake.repo().join("AGENTS.md"))
        .status()
        .unwrap();
    assert!(made.success());
    let mut bridge = fake.bridge(None, None).await;
    let booted = thread_starts(&fake, 1).await;
    assert_eq!(booted[0]["ephemeral"], true);
    bridge.turn("Review it.").await;
    let turn = bridge.read_until("turn/completed").await;
    assert_eq!(turn[0]["params"]["threadId"], "t-1");
    assert_eq!(requests(&fake.log(), "thread/start").len(), 2);

    // A symbolic link to a file outside, put there while the process waits: not followed.
    let fake = Fake::new();
    let mut bridge = fake.bridge(None, None).await;
    thread_starts(&fake, 1).await;
    let outside = fake.home.join("outside.md");
    std::fs::write(&outside, "x").unwrap();
    std::os::unix::fs::symlink(&outside, fake.work.join("AGENTS.md")).unwrap();
    bridge.turn("Review it.").await;
    let turn = bridge.read_until("turn/completed").await;
    assert_eq!(turn[0]["params"]["threadId"], "t-2");
    let mut stderr = String::new();
    drop(bridge.child.stdin.take());
    bridge.exit_code().await;
    tokio::io::AsyncReadExt::read_to_string(bridge.child.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("starting a new thread"), "{stderr}");
}

#[tokio::test]
async fn a_resumed_session_resumes_its_thread() {
    let fake = Fake::new();
    // The fake knows no thread/resume (it never answers): what it was asked is what counts.
    let _bridge = fake.bridge(Some("t-9"), Some("Continue.")).await;
    testkit::wait_until("the thread/resume", Duration::from_secs(10), || {
        let asked = !requests(&fake.log(), "thread/resume").is_empty();
        async move { asked.then_some(()) }
    })
    .await
    .unwrap();
    let resumed = requests(&fake.log(), "thread/resume");
    assert_eq!(resumed.len(), 1, "{:#?}", fake.log());
    assert_eq!(resumed[0]["threadId"], "t-9");
    assert_eq!(resumed[0]["excludeTurns"], true);
    assert_eq!(requests(&fake.log(), "thread/start"), Vec::<Value>::new());
}

#[tokio::test]
async fn a_stop_signal_is_passed_on_and_ends_the_bridge() {
    let fake = Fake::new();
    let mut bridge = fake.bridge(None, Some("Do it.")).await;
    bridge.read_until("turn/completed").await;
    let pid = fake.pid();
    harness::process::signal(bridge.child.id().unwrap(), SIGTERM);
    let code = bridge.exit_code().await;
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(bridge.child.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert_eq!(code, Some(128 + SIGTERM), "{stderr}");
    assert!(
        fake.log().contains(&"term".to_string()),
        "{:#?}",
        fake.log()
    );
    gone(pid).await;
}

#[tokio::test]
async fn a_killed_bridge_takes_codex_with_it() {
    let fake = Fake::new();
    // Codex busy in a tool: it does not read its input, whose end would tell it the bridge died.
    let mut bridge = fake.bridge(None, Some("hang on")).await;
    let tool = testkit::wait_until("the fake's tool", Duration::from_secs(10), || {
        let tool = fake
            .log()
            .iter()
            .find_map(|l| l.strip_prefix("tool ")?.parse::<u32>().ok());
        async move { tool }
    })
    .await
    .unwrap();
    let pid = fake.pid();
    bridge.child.start_kill().unwrap();
    assert_eq!(bridge.exit_code().await, Some(-SIGKILL));
    // PR_SET_PDEATHSIG: the fake got SIGTERM when the bridge died (and ended its tool).
    testkit::wait_until(
        "the fake to note its SIGTERM",
        Duration::from_secs(10),
        || {
            let noted = fake.log().contains(&"term".to_string());
            async move { noted.then_some(()) }
        },
    )
    .await
    .unwrap();
    gone(pid).await;
    gone(tool).await;
}

#[tokio::test]
async fn a_missing_codex_fails_the_bridge_with_the_reason() {
    let config = BridgeConfig {
        codex: "/nonexistent/codex".into(),
        args: vec!["app-server".into()],
        resume: None,
    };
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_atelier"))
        .args([harness::codex::bridge::SUBCOMMAND, &config.to_arg()])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot start /nonexistent/codex app-server"),
        "{stderr}"
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_atelier"))
        .args([harness::codex::bridge::SUBCOMMAND, "{not json"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
