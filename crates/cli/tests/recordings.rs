//! The real agent CLIs (Claude Code, Codex, OpenCode) driven turn by turn through their harness
//! adapters against Atelier's own model simulator: a fresh turn that writes a file and runs
//! shell commands, the resumption of its session, a graceful interrupt during a running shell
//! tool, and a dead model endpoint. The decoded events are compared whole (session ids, temp paths
//! and token counts normalized).
//!
//! These runs are also where the decoder fixtures
//! `crates/harness/tests/fixtures/<cli>/atelier-*.jsonl` come from: with `UPDATE_RECORDINGS=1`
//! every stdout stream that a decoder snapshot test reads is written there, normalized (temp dir,
//! session and message ids, the simulator's id nonce, timestamps and durations replaced by stable
//! placeholders) so that re-recording only changes what the CLI really changed. Then regenerate
//! and review the decodings' `insta` snapshots with
//! `INSTA_UPDATE=always cargo test -p harness --test claude --test codex --test opencode` and
//! `git diff` (or `cargo insta review`).
//!
//! The CLIs come from `ATELIER_CLAUDE_BIN`, `ATELIER_CODEX_BIN` and `ATELIER_OPENCODE_BIN`
//! (`scripts/test` installs the pinned versions and sets them). Without them these tests are
//! compiled as ignored (shown as skipped) outside CI, and fail under `CI=true` (`build.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use domain::{Stage, TranscriptEvent};
use harness::process::{self, AgentProcess};
use harness::scenario::stage_line;
use harness::{Harness, TurnRequest};
use serde_json::{Value, json};
use simulator::Simulator;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The variable that marks every process of a turn (the agent and the tools it starts).
const MARK: &str = "ATELIER_RUN_MARK";
/// How long one turn may take before the test fails.
const TURN_LIMIT: Duration = Duration::from_secs(60);
/// How long an interrupted agent gets to stop by itself before its tree is killed.
const GRACE: Duration = Duration::from_secs(5);
/// How long killed processes get to disappear.
const GONE_LIMIT: Duration = Duration::from_secs(5);
/// The shell command the interrupt scenario runs (not a bare `sleep`: Claude Code refuses those).
const LONG_COMMAND: &str = "echo waiting; sleep 600";
/// The text of the follow-up turn.
const FOLLOW_UP: &str = "What did you do?";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cli {
    Claude,
    Codex,
    OpenCode,
}

impl Cli {
    fn harness_name(self) -> &'static str {
        match self {
            Cli::Claude => "claude-code",
            Cli::Codex => "codex",
            Cli::OpenCode => "opencode",
        }
    }

    /// The folder of its fixtures under `crates/harness/tests/fixtures`.
    fn fixtures(self) -> &'static str {
        match self {
            Cli::Claude => "claude",
            Cli::Codex => "codex",
            Cli::OpenCode => "opencode",
        }
    }

    /// The recording a decoder snapshot test reads for `case`, if any.
    fn fixture(self, case: Case) -> Option<&'static str> {
        match (self, case) {
            (_, Case::Run) => Some("atelier-run"),
            (_, Case::LongLived) => Some("atelier-long-lived"),
            (Cli::Codex | Cli::OpenCode, Case::Resume) => Some("atelier-resume"),
            (Cli::Claude, Case::Interrupt) => Some("atelier-interrupt"),
            (Cli::Codex, Case::Interrupt) => Some("atelier-abort-sigint"),
            (Cli::OpenCode, Case::Interrupt) => Some("atelier-abort-sigterm"),
            (Cli::Codex, Case::DeadPort) => Some("atelier-dead-port"),
            // No snapshot test reads these (OpenCode's dead port is not re-recorded: it costs
            // ~73 s of OpenCode's own retries).
            (Cli::Claude, Case::Resume | Case::DeadPort) | (Cli::OpenCode, Case::DeadPort) => None,
        }
    }

    fn var(self) -> &'static str {
        match self {
            Cli::Claude => "ATELIER_CLAUDE_BIN",
            Cli::Codex => "ATELIER_CODEX_BIN",
            Cli::OpenCode => "ATELIER_OPENCODE_BIN",
        }
    }

    /// The CLI's path, or `None` (after saying why) when it is not installed outside CI.
    /// The CLI's executable; fails when it is not installed (see `crates/cli/build.rs`).
    fn bin(self) -> PathBuf {
        let (harness, var) = (self.harness_name(), self.var());
        match std::env::var_os(var).map(PathBuf::from) {
            Some(path) if path.is_file() => path,
            other => {
                let why = match other {
                    Some(path) => format!("{var}={} does not exist", path.display()),
                    None => format!("{var} is not set"),
                };
                panic!(
                    "the {harness} CLI is needed: {why}; run the tests with `scripts/test`, which \
                     installs the pinned CLIs into .tools/"
                )
            }
        }
    }

    fn harness(self, bin: PathBuf) -> Box<dyn Harness> {
        match self {
            Cli::Claude => Box::new(harness::claude::ClaudeHarness::new(bin)),
            // Long-lived sessions run through this build's `atelier codex-bridge` and
            // `atelier opencode-bridge`.
            Cli::Codex => Box::new(
                harness::codex::CodexHarness::new(bin).with_bridge(env!("CARGO_BIN_EXE_atelier")),
            ),
            Cli::OpenCode => Box::new(
                harness::opencode::OpenCodeHarness::new(bin)
                    .with_bridge(env!("CARGO_BIN_EXE_atelier")),
            ),
        }
    }

    fn model(self) -> &'static str {
        match self {
            Cli::Claude => "claude-sonnet-4-5",
            Cli::Codex => "gpt-5.5",
            Cli::OpenCode => "sim-model",
        }
    }

    /// The role settings pointing at the model server `url` (as `harnesses.rs` configures them).
    fn settings(self, url: &str) -> Value {
        match self {
            Cli::Claude => json!({
                "harness": "claude-code", "max_retries": 0,
                "env": {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-ant-simulated"}
            }),
            Cli::Codex => json!({
                "harness": "codex", "base_url": format!("{url}/v1"),
                "api_key_env": "SIM_API_KEY", "max_retries": 0, "env": {"SIM_API_KEY": "simulated"}
            }),
            Cli::OpenCode => json!({
                "harness": "opencode", "base_url": format!("{url}/v1"),
                "api_key_env": "SIM_API_KEY", "env": {"SIM_API_KEY": "simulated"}
            }),
        }
    }

    /// Whether the stream announces a tool while it runs (`opencode run` reports a tool only
    /// once it has finished).
    fn announces_running_tools(self) -> bool {
        self != Cli::OpenCode
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Run,
    Resume,
    Interrupt,
    DeadPort,
    /// Two turns of one long-lived process (Claude Code's `--input-format stream-json`, Codex's
    /// `app-server` behind `atelier codex-bridge`, OpenCode's `opencode serve` behind `atelier
    /// opencode-bridge`).
    LongLived,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Run => "run",
            Case::Resume => "resume",
            Case::Interrupt => "interrupt",
            Case::DeadPort => "dead-port",
            Case::LongLived => "long-lived",
        }
    }
}

/// The scenarios: `implement` writes a file, runs two shell commands (one of them the
/// `atelier scripted-step` of a doc step) and answers, then answers the follow-up; `plan` runs
/// a long shell command.
fn scenarios() -> [(&'static str, Value); 2] {
    [
        (
            "implement",
            json!({"runs": [{"turns": [
                [
                    {"do": "write", "path": "hello.txt", "content": "hello\n"},
                    {"do": "run", "command": "cat hello.txt"},
                    {"do": "check", "item": "Add hello.txt"},
                    {"do": "message", "text": "Added hello.txt."}
                ],
                [{"do": "message", "text": "I wrote hello.txt and printed it."}]
            ]}]}),
        ),
        (
            "plan",
            json!({"runs": [[{"do": "run", "command": LONG_COMMAND}]]}),
        ),
    ]
}

fn prompt(stage: &str, text: &str) -> String {
    format!("{text}\n\n{}\n", stage_line(stage, 0))
}

/// One test's world: a working directory, a home, a task doc, the simulator, and the mark of
/// every process it starts. The directory has a fixed name (held under a lock) so that paths
/// inside the CLIs' streamed tool input, which the simulator cuts at arbitrary points, stay the
/// same from one recording to the next.
struct Lab {
    cli: Cli,
    harness: Box<dyn Harness>,
    dir: PathBuf,
    _lock: std::fs::File,
    sim: Simulator,
    mark: String,
    norm: Normalizer,
}

/// One turn: the decoded events (normalized), and how the agent ended.
struct Turn {
    events: Vec<TranscriptEvent>,
    code: Option<i32>,
    stderr: String,
    /// Whether the agent had to be killed after an interrupt (it did not stop by itself).
    killed: bool,
}

impl Lab {
    async fn start(cli: Cli, test: &str) -> Lab {
        let bin = cli.bin();
        let name = format!("atelier-recording-{}-{test}", cli.fixtures());
        let dir = std::env::temp_dir().join(&name);
        let lock =
            std::fs::File::create(std::env::temp_dir().join(format!("{name}.lock"))).unwrap();
        lock.lock().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["work", "home", "scenarios"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for (stage, scenario) in scenarios() {
            std::fs::write(
                dir.join(format!("scenarios/{stage}.json")),
                scenario.to_string(),
            )
            .unwrap();
        }
        std::fs::write(
            dir.join("TASK.md"),
            "# Say hello\n\n## To-Do List\n\n- [ ] Add hello.txt\n",
        )
        .unwrap();
        // A repository like the engine's worktrees, with a reproducible first commit.
        let work = dir.join("work");
        for args in [
            &["init", "-q", "-b", "main"][..],
            &[
                "-c",
                "user.name=Atelier",
                "-c",
                "user.email=atelier@example.invalid",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "Start",
            ],
        ] {
            let status = std::process::Command::new("git")
                .args(args)
                .current_dir(&work)
                .env("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z")
                .env("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z")
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(listener, dir.join("scenarios")).await;
        let norm = Normalizer::new(&dir, &format!("/tmp/{name}"));
        Lab {
            cli,
            harness: cli.harness(bin),
            dir,
            _lock: lock,
            sim,
            mark: format!("{:016x}", rand::random::<u64>()),
            norm,
        }
    }

    /// A turn of `stage` against the model server at `url`, resuming `resume` if given.
    fn request(&self, stage: Stage, prompt: &str, resume: Option<&str>, url: &str) -> TurnRequest {
        let atelier = Path::new(env!("CARGO_BIN_EXE_atelier")).parent().unwrap();
        TurnRequest {
            stage,
            iteration: 0,
            turn: u32::from(resume.is_some()),
            prompt: prompt.into(),
            workdir: self.dir.join("work"),
            env: vec![
                (
                    "PATH".into(),
                    format!("{}:/usr/local/bin:/usr/bin:/bin", atelier.display()),
                ),
                ("HOME".into(), self.dir.join("home").display().to_string()),
                ("LANG".into(), "C.UTF-8".into()),
                (
                    "ATELIER_TASK_DOC".into(),
                    self.dir.join("TASK.md").display().to_string(),
                ),
                (MARK.into(), self.mark.clone()),
            ],
            model: Some(self.cli.model().into()),
            effort: None,
            resume_session: resume.map(Into::into),
            settings: self.cli.settings(url),
        }
    }

    /// Runs one turn to its end, decoding its output live. For [`Case::Interrupt`] the harness's
    /// interrupt is sent once the long command runs (and the stream has shown the tool, for the
    /// CLIs that show running tools); an agent still alive after [`GRACE`] is killed with its
    /// tree, and whatever it left behind is killed by its mark. Afterwards no marked process may
    /// be left.
    async fn turn(&mut self, case: Case, req: &TurnRequest) -> Turn {
        let cli = self.cli.harness_name();
        let stop = case == Case::Interrupt;
        self.harness
            .check_role(req.model.as_deref(), &req.settings)
            .unwrap();
        let spec = self.harness.command(req).unwrap();
        self.harness.prepare(req).unwrap();
        let started = Instant::now();
        let mut child = AgentProcess::spawn(&spec).unwrap();
        let pid = child.pid();
        let mut stdout = BufReader::new(child.take_stdout().unwrap()).lines();
        let mut decoder = self.harness.decoder();
        let (mut raw, mut events) = (Vec::new(), Vec::new());
        let mut tool_shown = !self.cli.announces_running_tools();
        let mut interrupted: Option<Instant> = None;
        let mut killed = false;
        loop {
            tokio::select! {
                line = stdout.next_line() => {
                    let Some(line) = line.unwrap() else { break };
                    let decoded = decoder.line(&line);
                    tool_shown |= decoded
                        .iter()
                        .any(|e| matches!(e, TranscriptEvent::ToolCall { .. }));
                    events.extend(decoded);
                    raw.push(line);
                }
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if stop && interrupted.is_none() && tool_shown && self.long_command_runs() {
                child.interrupt(&self.harness.interrupt()).unwrap();
                interrupted = Some(Instant::now());
            }
            if !killed && interrupted.is_some_and(|at| at.elapsed() > GRACE) {
                process::kill_tree(pid);
                process::kill_marked(MARK, &self.mark);
                killed = true;
            }
            assert!(
                started.elapsed() < TURN_LIMIT,
                "{cli} {}: no end of output within {TURN_LIMIT:?}; stderr: {}",
                case.name(),
                child.stderr_tail()
            );
        }
        assert!(!stop || interrupted.is_some(), "{cli}: never interrupted");
        let exit_limit = match interrupted {
            Some(at) if !killed => GRACE.saturating_sub(at.elapsed()),
            _ => Duration::from_secs(10),
        };
        let status = match tokio::time::timeout(exit_limit, child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                assert!(stop, "{cli} {}: output closed, no exit", case.name());
                process::kill_tree(pid);
                killed = true;
                child.wait().await.unwrap()
            }
        };
        if stop {
            let left = process::marked_processes(MARK, &self.mark);
            eprintln!(
                "{cli}: {} process(es) left after the interrupt, killed",
                left.len()
            );
            process::kill_marked(MARK, &self.mark);
        }
        let survivors = self.survivors().await;
        assert_eq!(
            survivors,
            Vec::<u32>::new(),
            "{cli} {}: survivors",
            case.name()
        );
        assert_eq!(
            decoder.unreadable_lines(),
            0,
            "{cli} {}: {raw:#?}",
            case.name()
        );

        let lines: Vec<String> = raw.iter().map(|l| self.norm.line(l)).collect();
        let events = self.norm.events(&events);
        // The recording decodes to the same (normalized) events.
        let mut fresh = self.harness.decoder();
        let again: Vec<TranscriptEvent> = lines.iter().flat_map(|l| fresh.line(l)).collect();
        assert_eq!(
            again,
            events,
            "{cli} {}: the normalized recording",
            case.name()
        );
        if let Some(name) = self.cli.fixture(case)
            && std::env::var_os("UPDATE_RECORDINGS").is_some()
        {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../harness/tests/fixtures")
                .join(self.cli.fixtures())
                .join(format!("{name}.jsonl"));
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&path, text).unwrap();
        }
        Turn {
            events,
            code: status.code(),
            stderr: child.stderr_tail(),
            killed,
        }
    }

    /// A lab for `cli` that ran an implement prompt and [`FOLLOW_UP`] as two turns of one
    /// long-lived process ([`Lab::long_lived`]), and the decoded events.
    async fn two_long_lived_turns(cli: Cli) -> (Lab, Vec<TranscriptEvent>) {
        let mut lab = Lab::start(cli, "long-lived").await;
        let url = lab.sim.url();
        let mut req = lab.request(
            Stage::Implement,
            &prompt(
                "implement",
                "Add hello.txt, show it, and tick it off the to-do list.",
            ),
            None,
            &url,
        );
        req.settings["session"] = json!("long-lived");
        let events = lab.long_lived(&req, FOLLOW_UP).await;
        (lab, events)
    }

    /// Runs a long-lived session (`req` asks for one): the prompt's turn, then `follow_up`
    /// written to the same process once that turn ended, then stdin closed once the second
    /// ended. Returns the decoded (normalized) events of both turns; the process must exit 0.
    async fn long_lived(&mut self, req: &TurnRequest, follow_up: &str) -> Vec<TranscriptEvent> {
        let spec = self.harness.command(req).unwrap();
        assert!(spec.stdin_open, "{spec:?}");
        let started = Instant::now();
        let mut child = AgentProcess::spawn(&spec).unwrap();
        let mut stdout = BufReader::new(child.take_stdout().unwrap()).lines();
        let mut decoder = self.harness.decoder();
        let (mut raw, mut events, mut ends) = (Vec::new(), Vec::new(), 0);
        // The pids seen of each executable the session runs: the spec's program, and for Codex
        // the `codex app-server` behind the bridge.
        let cli_bin = self.cli.bin();
        let mut pids: std::collections::BTreeMap<PathBuf, std::collections::BTreeSet<u32>> =
            std::collections::BTreeMap::from([(
                spec.program.clone(),
                std::collections::BTreeSet::from([child.pid()]),
            )]);
        loop {
            let line = tokio::time::timeout(
                TURN_LIMIT.saturating_sub(started.elapsed()),
                stdout.next_line(),
            )
            .await
            .unwrap_or_else(|_| panic!("no end of output; stderr: {}", child.stderr_tail()))
            .unwrap();
            let Some(line) = line else { break };
            let decoded = decoder.line(&line);
            for event in &decoded {
                if matches!(event, TranscriptEvent::TurnEnd { .. }) {
                    ends += 1;
                    match ends {
                        1 => child
                            .write_input(self.harness.next_turn(follow_up).unwrap())
                            .unwrap(),
                        _ => child.close_input(),
                    }
                }
            }
            // The process that answers is the one that started (no new CLI process): the
            // spec's program running the spec's first argument (not, for an `atelier` bridge, an
            // `atelier scripted-step` tool). Codex also runs short-lived helpers of its own
            // executable (e.g. to apply a patch): only its `app-server` counts.
            for p in process::marked_processes(MARK, &self.mark) {
                let Ok(exe) = std::fs::read_link(format!("/proc/{p}/exe")) else {
                    continue;
                };
                // A child the CLI forked and has not replaced with another program yet (a
                // tool's shell, a git call) looks like the CLI itself for a moment: it is not
                // another CLI process.
                let forked = parent(p)
                    .and_then(|pp| std::fs::read_link(format!("/proc/{pp}/exe")).ok())
                    .is_some_and(|parent_exe| parent_exe == exe);
                if forked {
                    continue;
                }
                let app_server = || {
                    std::fs::read(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"app-server"))
                };
                if runs(p, &spec.program, &spec.args[0]) || (exe == cli_bin && app_server()) {
                    pids.entry(exe).or_default().insert(p);
                }
            }
            events.extend(decoded);
            raw.push(line);
        }
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(0), "stderr: {}", child.stderr_tail());
        assert_eq!(ends, 2, "{raw:#?}");
        assert!(
            pids.values().all(|p| p.len() == 1),
            "one process of each for both turns: {pids:?}"
        );
        if self.cli == Cli::Codex {
            assert_eq!(pids.len(), 2, "the bridge and codex app-server: {pids:?}");
        }
        assert_eq!(self.survivors().await, Vec::<u32>::new());
        assert_eq!(decoder.unreadable_lines(), 0, "{raw:#?}");
        let lines: Vec<String> = raw.iter().map(|l| self.norm.line(l)).collect();
        let events = self.norm.events(&events);
        let mut fresh = self.harness.decoder();
        let again: Vec<TranscriptEvent> = lines.iter().flat_map(|l| fresh.line(l)).collect();
        assert_eq!(again, events, "the normalized recording");
        if let Some(name) = self.cli.fixture(Case::LongLived)
            && std::env::var_os("UPDATE_RECORDINGS").is_some()
        {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../harness/tests/fixtures")
                .join(self.cli.fixtures())
                .join(format!("{name}.jsonl"));
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&path, text).unwrap();
        }
        events
    }

    /// Whether a process of this lab is `program` started with `first` as its first argument.
    fn runs_program(&self, program: &Path, first: &str) -> usize {
        process::marked_processes(MARK, &self.mark)
            .into_iter()
            .filter(|p| runs(*p, program, std::ffi::OsStr::new(first)))
            .count()
    }

    /// Whether a process of this lab runs the long command's `sleep`.
    fn long_command_runs(&self) -> bool {
        process::marked_processes(MARK, &self.mark)
            .into_iter()
            .any(|p| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x00600\x00")
            })
    }

    /// The marked processes still alive once [`GONE_LIMIT`] has passed (none as soon as none).
    async fn survivors(&self) -> Vec<u32> {
        let deadline = Instant::now() + GONE_LIMIT;
        loop {
            let alive = process::marked_processes(MARK, &self.mark);
            if alive.is_empty() || Instant::now() > deadline {
                return alive;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A URL nothing listens on.
    fn dead_url() -> String {
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = reserved.local_addr().unwrap().port();
        drop(reserved);
        format!("http://127.0.0.1:{port}")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A failed assertion must not leave agents or tools running.
        process::kill_marked(MARK, &self.mark);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The parent of process `pid` (from `/proc/<pid>/stat`: the field after the state, which
/// follows the command name in parentheses).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// Whether process `pid` runs `program` with `first` as its first argument.
fn runs(pid: u32, program: &Path, first: &std::ffi::OsStr) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == program);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv1 = cmdline.split(|b| *b == 0).nth(1).unwrap_or_default();
    exe && argv1 == first.as_encoded_bytes()
}

/// Replaces what differs from one run to the next with stable placeholders: the lab's directory,
/// UUIDs (Claude Code's session and message ids, Codex's thread ids), OpenCode's `ses_`/`msg_`/
/// `prt_` ids, Claude Code's background task ids and pid-named socket, the simulator's id nonce
/// (each distinct value keeps its own placeholder, in order of first appearance), and timestamps
/// and durations.
struct Normalizer {
    /// Learned replacements, applied in order: (value, placeholder).
    known: Vec<(String, String)>,
    counts: HashMap<String, usize>,
}

/// Keys whose numbers are times or durations (Codex app-server's are camelCase).
const TIME_KEYS: [&str; 19] = [
    "timestamp",
    "emittedAtMs",
    "startedAtMs",
    "completedAtMs",
    "startedAt",
    "completedAt",
    "durationMs",
    "createdAt",
    "updatedAt",
    "recencyAt",
    "start",
    "end",
    "created",
    "duration_ms",
    "duration_api_ms",
    "ttft_ms",
    "ttft_stream_ms",
    "time_to_request_ms",
    "first_content_frame_ms",
];

/// Keys whose string values are random ids.
const ID_KEYS: [&str; 2] = ["task_id", "run_id"];

impl Normalizer {
    fn new(dir: &Path, placeholder: &str) -> Normalizer {
        Normalizer {
            known: vec![(dir.display().to_string(), placeholder.to_string())],
            counts: HashMap::new(),
        }
    }

    fn learn(&mut self, value: &str, kind: &str, placeholder: impl Fn(usize) -> String) {
        if self.known.iter().any(|(v, _)| v == value) {
            return;
        }
        let n = self.counts.entry(kind.to_string()).or_default();
        *n += 1;
        self.known.push((value.to_string(), placeholder(*n)));
    }

    /// The value `placeholder` stands for.
    fn original(&self, placeholder: &str) -> String {
        let found = self.known.iter().find(|(_, p)| p == placeholder);
        found.expect("a placeholder of this lab").0.clone()
    }

    fn apply(&self, text: &str) -> String {
        self.known
            .iter()
            .fold(text.to_string(), |text, (value, placeholder)| {
                text.replace(value, placeholder)
            })
    }

    /// One stdout line, learning its ids.
    fn line(&mut self, line: &str) -> String {
        for uuid in uuids(line) {
            self.learn(&uuid, "uuid", |n| {
                format!("00000000-0000-4000-8000-{n:012}")
            });
        }
        for (prefix, id) in opencode_ids(line) {
            self.learn(&id, prefix, |n| format!("{prefix}{n:026}"));
        }
        for nonce in simulator_nonces(line) {
            self.learn(&nonce, "nonce", |_| "sim00000000".into());
        }
        for key in ID_KEYS {
            for value in string_values(line, key) {
                self.learn(&value, key, |n| format!("{}{n}", key.replace('_', "-")));
            }
        }
        // Claude Code's socket is named after its pid.
        for value in string_values(line, "messaging_socket_path") {
            let zeroed = value.replace(|c: char| c.is_ascii_digit(), "0");
            self.learn(&value, "socket", |_| zeroed.clone());
        }
        let mut out = self.apply(line);
        for key in TIME_KEYS {
            out = zero_times(&out, key);
        }
        // Codex app-server names the pid of each command's process.
        zero_digit_strings(&out, "processId")
    }

    /// Decoded events, with the ids learned from their lines.
    fn events(&self, events: &[TranscriptEvent]) -> Vec<TranscriptEvent> {
        events
            .iter()
            .map(|e| {
                let text = self.apply(&serde_json::to_string(e).unwrap());
                serde_json::from_str(&text).unwrap()
            })
            .collect()
    }
}

/// Every lowercase UUID (8-4-4-4-12 hex digits) in `text`.
fn uuids(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= b.len() {
        let mut at = i;
        let ok = shape.iter().enumerate().all(|(k, &n)| {
            let group = b[at..at + n]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
            at += n;
            let dash = k == 4 || b[at] == b'-';
            at += 1;
            group && dash
        });
        let bounded = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 36).is_none_or(|c| !c.is_ascii_alphanumeric());
        if ok && bounded {
            out.push(text[i..i + 36].to_string());
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

/// OpenCode's ids: `ses_`, `msg_` or `prt_` and 26 letters or digits.
fn opencode_ids(text: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for prefix in ["ses_", "msg_", "prt_"] {
        for (at, _) in text.match_indices(prefix) {
            let rest = &text.as_bytes()[at + prefix.len()..];
            let len = rest
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            if len == 26 {
                out.push((prefix, text[at..at + prefix.len() + 26].to_string()));
            }
        }
    }
    out
}

/// The simulator's per-server nonce in its ids (`toolu_sim<8 hex><6 digits>` …).
fn simulator_nonces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("sim") {
        let b = text.as_bytes();
        let after_separator = at > 0 && matches!(b[at - 1], b'_' | b'-');
        let rest = &b[at + 3..];
        let shaped = rest.len() >= 14
            && rest[..8].iter().all(u8::is_ascii_hexdigit)
            && rest[8..14].iter().all(u8::is_ascii_digit);
        if after_separator && shaped {
            out.push(text[at..at + 11].to_string());
        }
    }
    out
}

/// The string values of `"key":"…"` in compact JSON text.
fn string_values(text: &str, key: &str) -> Vec<String> {
    let pattern = format!("\"{key}\":\"");
    text.match_indices(&pattern)
        .filter_map(|(at, _)| {
            let start = at + pattern.len();
            let len = text[start..].find('"')?;
            Some(text[start..start + len].to_string())
        })
        .collect()
}

/// `"key":"<digits>"` becomes `"key":"0"`.
fn zero_digit_strings(text: &str, key: &str) -> String {
    let pattern = format!("\"{key}\":\"");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&pattern) {
        let (head, tail) = rest.split_at(at + pattern.len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        rest = if digits > 0 && tail[digits..].starts_with('"') {
            out.push('0');
            &tail[digits..]
        } else {
            tail
        };
    }
    out.push_str(rest);
    out
}

/// `"key":<number>` becomes `"key":0`, `"key":"<ISO time>"` the epoch.
fn zero_times(text: &str, key: &str) -> String {
    let pattern = format!("\"{key}\":");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&pattern) {
        let (head, tail) = rest.split_at(at + pattern.len());
        out.push_str(head);
        let number = tail
            .bytes()
            .take_while(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'e' | b'E' | b'+'))
            .count();
        let time = tail
            .strip_prefix('"')
            .and_then(|t| t.find('"'))
            .filter(|&len| {
                let value = &tail[1..=len];
                value.len() >= 20 && value.as_bytes()[4] == b'-' && value.as_bytes()[10] == b'T'
            });
        rest = if number > 0 {
            out.push('0');
            &tail[number..]
        } else if let Some(len) = time {
            out.push_str("\"1970-01-01T00:00:00.000Z\"");
            &tail[len + 2..]
        } else {
            tail
        };
    }
    out.push_str(rest);
    out
}

/// The events as JSON values, usage counts zeroed after checking that a model answered (they
/// depend on the CLI's prompt size).
fn comparable(events: &[TranscriptEvent], answered: bool) -> Vec<Value> {
    folded(events)
        .iter()
        .map(|e| match e {
            TranscriptEvent::Usage {
                input_tokens,
                output_tokens,
                ..
            } => {
                if answered {
                    assert!(*input_tokens > 0 && *output_tokens > 0, "{e:?}");
                }
                json!({"type": "usage", "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
            }
            e => serde_json::to_value(e).unwrap(),
        })
        .collect()
}

/// The events without their `Partial` pieces, after checking that the pieces right before each
/// message are exactly its text (what a follower folds into it).
fn folded(events: &[TranscriptEvent]) -> Vec<TranscriptEvent> {
    let mut typed = String::new();
    let mut out = Vec::new();
    for event in events {
        match event {
            TranscriptEvent::Partial { text } => typed.push_str(text),
            TranscriptEvent::Message { text } => {
                assert!(
                    typed.is_empty() || typed == *text,
                    "typed {typed:?}, said {text:?}"
                );
                typed.clear();
                out.push(event.clone());
            }
            other => {
                assert!(typed.is_empty(), "typed {typed:?} without a message");
                out.push(other.clone());
            }
        }
    }
    out
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

/// Whether `value` holds a tool call (Anthropic `tool_use`, Responses `function_call`, Chat
/// `tool_calls[].function`) mentioning `needle`.
fn has_tool_call(value: &Value, needle: &str) -> bool {
    match value {
        Value::Object(map) => {
            let call = matches!(
                map.get("type").and_then(Value::as_str),
                Some("tool_use" | "function_call")
            ) || map.get("function").is_some_and(Value::is_object);
            (call && value.to_string().contains(needle))
                || map.values().any(|v| has_tool_call(v, needle))
        }
        Value::Array(items) => items.iter().any(|v| has_tool_call(v, needle)),
        _ => false,
    }
}

/// Case 1 and 2: a fresh implement turn, then its session resumed with a follow-up.
async fn runs_and_resumes(cli: Cli, run: Value, resume: Value) {
    let mut lab = Lab::start(cli, "run").await;
    let url = lab.sim.url();
    let req = lab.request(
        Stage::Implement,
        &prompt(
            "implement",
            "Add hello.txt, show it, and tick it off the to-do list.",
        ),
        None,
        &url,
    );
    let turn = lab.turn(Case::Run, &req).await;
    assert_eq!(turn.code, Some(0), "stderr: {}", turn.stderr);
    assert_eq!(
        comparable(&turn.events, true),
        run.as_array().unwrap().clone()
    );
    assert_eq!(
        std::fs::read_to_string(lab.dir.join("work/hello.txt")).unwrap(),
        "hello\n"
    );
    let doc = std::fs::read_to_string(lab.dir.join("TASK.md")).unwrap();
    assert!(doc.contains("- [x] Add hello.txt"), "{doc}");

    // The events are normalized: resume the real session.
    let session = lab.norm.original(&session_of(&turn.events));
    let req = lab.request(Stage::Implement, FOLLOW_UP, Some(&session), &url);
    let turn = lab.turn(Case::Resume, &req).await;
    assert_eq!(turn.code, Some(0), "stderr: {}", turn.stderr);
    assert_eq!(
        comparable(&turn.events, true),
        resume.as_array().unwrap().clone()
    );
    // The simulator answered the follow-up from turn 1, and the request carried turn 0's calls.
    let follow_ups: Vec<_> = lab
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.answer.as_deref() == Some("implement #0 turn 1 step 0: end of turn"))
        .collect();
    assert_eq!(follow_ups.len(), 1, "{follow_ups:#?}");
    let body = &follow_ups[0].body;
    assert!(body.to_string().contains(FOLLOW_UP));
    assert!(
        has_tool_call(body, "cat hello.txt"),
        "turn 0's shell call is not in the history: {body}"
    );
}

/// Case 3: the harness's interrupt during a running shell tool.
async fn interrupts(cli: Cli, expected: Value) -> Turn {
    let mut lab = Lab::start(cli, "interrupt").await;
    let url = lab.sim.url();
    let req = lab.request(Stage::Plan, &prompt("plan", "Wait for it."), None, &url);
    let turn = lab.turn(Case::Interrupt, &req).await;
    assert!(!turn.killed, "the interrupt alone did not stop the agent");
    assert_eq!(
        comparable(&turn.events, false),
        expected.as_array().unwrap().clone()
    );
    turn
}

/// Case 4: a model endpoint nobody listens on.
async fn dead_endpoint(cli: Cli, expected: Value) -> Turn {
    let mut lab = Lab::start(cli, "dead-port").await;
    let req = lab.request(
        Stage::Plan,
        &prompt("plan", "Plan it."),
        None,
        &Lab::dead_url(),
    );
    let started = Instant::now();
    let turn = lab.turn(Case::DeadPort, &req).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(turn.code, Some(1), "stderr: {}", turn.stderr);
    assert!(
        matches!(
            turn.events.last(),
            Some(TranscriptEvent::TurnEnd {
                ok: false,
                retryable: true,
                ..
            })
        ),
        "{:?}",
        turn.events
    );
    assert_eq!(
        comparable(&turn.events, false),
        expected.as_array().unwrap().clone()
    );
    turn
}

/// The shell command of the scenario's `check` step.
const CHECK_COMMAND: &str = r#"atelier scripted-step '{"do":"check","item":"Add hello.txt"}'"#;

/// A `Usage` event as [`comparable`] leaves it.
fn usage() -> Value {
    json!({"type": "usage", "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
}

fn turn_ended() -> Value {
    json!({"type": "turn_end", "ok": true})
}

/// The follow-up's answer, the same on every CLI.
fn resumed(session: &str) -> Value {
    json!([
        {"type": "session", "id": session},
        {"type": "message", "text": "I wrote hello.txt and printed it."},
        usage(),
        turn_ended()
    ])
}

/// The events of Claude Code's implement turn (recorded in `dir`), as [`comparable`] leaves them.
fn claude_run(dir: &str, session: &str) -> Value {
    json!([
        {"type": "session", "id": session},
        {"type": "tool_call", "id": "toolu_sim00000000000003", "name": "Write",
         "input": {"content": "hello\n", "file_path": format!("{dir}/work/hello.txt")}},
        {"type": "tool_result", "id": "toolu_sim00000000000003", "is_error": false,
         "output": format!("File created successfully at: {dir}/work/hello.txt (file state is current in your context — no need to Read it back)")},
        {"type": "file_change", "path": "hello.txt", "kind": "add"},
        {"type": "tool_call", "id": "toolu_sim00000000000006", "name": "Bash",
         "input": {"command": "cat hello.txt", "description": "Run cat hello.txt"}},
        {"type": "command_output", "command": "cat hello.txt", "output": "hello", "exit_code": 0},
        {"type": "tool_call", "id": "toolu_sim00000000000009", "name": "Bash",
         "input": {"command": CHECK_COMMAND, "description": "Run atelier scripted-step '{\"do\":\"check\",\"item\":\"Add hello.txt\"}…"}},
        {"type": "command_output", "command": CHECK_COMMAND,
         "output": format!("modify {dir}/TASK.md"), "exit_code": 0},
        {"type": "message", "text": "Added hello.txt."},
        usage(),
        turn_ended()
    ])
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_code_runs_a_turn_and_resumes_its_session() {
    let dir = "/tmp/atelier-recording-claude-run";
    let session = "00000000-0000-4000-8000-000000000001";
    let run = claude_run(dir, session);
    runs_and_resumes(Cli::Claude, run, resumed(session)).await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_code_serves_two_turns_from_one_long_lived_process() {
    let (lab, events) = Lab::two_long_lived_turns(Cli::Claude).await;
    let events = comparable(&events, true);
    let dir = "/tmp/atelier-recording-claude-long-lived";
    let session = "00000000-0000-4000-8000-000000000001";
    // Turn 0 as in the one-shot recording, then turn 1 with no second session announcement.
    let mut expected = claude_run(dir, session).as_array().unwrap().clone();
    expected.extend([
        json!({"type": "message", "text": "I wrote hello.txt and printed it."}),
        usage(),
        turn_ended(),
    ]);
    assert_eq!(events, expected);
    // The follow-up's request carried turn 0's calls: the conversation went on.
    let follow_ups: Vec<_> = lab
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.answer.as_deref() == Some("implement #0 turn 1 step 0: end of turn"))
        .collect();
    assert_eq!(follow_ups.len(), 1, "{follow_ups:#?}");
    assert!(has_tool_call(&follow_ups[0].body, "cat hello.txt"));
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_code_stops_a_running_shell_tool_on_sigint() {
    let expected = json!([
        {"type": "session", "id": "00000000-0000-4000-8000-000000000001"},
        {"type": "tool_call", "id": "toolu_sim00000000000003", "name": "Bash",
         "input": {"command": LONG_COMMAND, "description": format!("Run {LONG_COMMAND}")}},
        {"type": "command_output", "command": LONG_COMMAND,
         "output": "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you how to proceed."},
        usage(),
        {"type": "turn_end", "ok": false, "error": "the turn was interrupted (aborted_tools)"}
    ]);
    let turn = interrupts(Cli::Claude, expected).await;
    assert_eq!(turn.code, Some(0), "stderr: {}", turn.stderr);
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_code_reports_a_dead_endpoint_as_retryable() {
    let refused =
        "API Error: Connection refused — a firewall or proxy may be blocking it (ECONNREFUSED)";
    let expected = json!([
        {"type": "session", "id": "00000000-0000-4000-8000-000000000001"},
        {"type": "error", "message": refused},
        usage(),
        {"type": "turn_end", "ok": false, "error": format!("{refused} (api_error)"), "retryable": true}
    ]);
    dead_endpoint(Cli::Claude, expected).await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_runs_a_turn_and_resumes_its_session() {
    let dir = "/tmp/atelier-recording-codex-run";
    let session = "00000000-0000-4000-8000-000000000001";
    let check =
        r#"/bin/bash -c "atelier scripted-step '{\"do\":\"check\",\"item\":\"Add hello.txt\"}'""#;
    let run = json!([
        {"type": "session", "id": session},
        {"type": "file_change", "path": format!("{dir}/work/hello.txt"), "kind": "add"},
        {"type": "tool_call", "id": "item_1", "name": "shell",
         "input": {"command": "/bin/bash -c 'cat hello.txt'"}},
        {"type": "command_output", "command": "/bin/bash -c 'cat hello.txt'", "output": "hello\n", "exit_code": 0},
        {"type": "tool_call", "id": "item_2", "name": "shell", "input": {"command": check}},
        {"type": "command_output", "command": check,
         "output": format!("modify {dir}/TASK.md\n"), "exit_code": 0},
        {"type": "message", "text": "Added hello.txt."},
        usage(),
        turn_ended()
    ]);
    runs_and_resumes(Cli::Codex, run, resumed(session)).await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_serves_two_turns_from_one_long_lived_process() {
    let (lab, events) = Lab::two_long_lived_turns(Cli::Codex).await;
    // Turn 0's message was typed live (the partial pieces are checked and folded).
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TranscriptEvent::Partial { .. })),
        "{events:?}"
    );
    let events = comparable(&events, true);
    let dir = "/tmp/atelier-recording-codex-long-lived";
    let check =
        r#"/bin/bash -c "atelier scripted-step '{\"do\":\"check\",\"item\":\"Add hello.txt\"}'""#;
    // Turn 0 as in the one-shot recording (app-server names its items by their call ids), then
    // turn 1 with no second session announcement.
    let expected = json!([
        {"type": "session", "id": "00000000-0000-4000-8000-000000000001"},
        {"type": "file_change", "path": format!("{dir}/work/hello.txt"), "kind": "add"},
        {"type": "tool_call", "id": "call_sim00000000000008", "name": "shell",
         "input": {"command": "/bin/bash -c 'cat hello.txt'"}},
        {"type": "command_output", "command": "/bin/bash -c 'cat hello.txt'", "output": "hello\n", "exit_code": 0},
        {"type": "tool_call", "id": "call_sim00000000000012", "name": "shell", "input": {"command": check}},
        {"type": "command_output", "command": check,
         "output": format!("modify {dir}/TASK.md\n"), "exit_code": 0},
        {"type": "message", "text": "Added hello.txt."},
        usage(),
        turn_ended(),
        {"type": "message", "text": "I wrote hello.txt and printed it."},
        usage(),
        turn_ended()
    ]);
    assert_eq!(events, expected.as_array().unwrap().clone());
    // The follow-up's request carried turn 0's calls: the conversation went on.
    let follow_ups: Vec<_> = lab
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.answer.as_deref() == Some("implement #0 turn 1 step 0: end of turn"))
        .collect();
    assert_eq!(follow_ups.len(), 1, "{follow_ups:#?}");
    assert!(has_tool_call(&follow_ups[0].body, "cat hello.txt"));
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_stops_a_running_shell_tool_on_sigint() {
    let expected = json!([
        {"type": "session", "id": "00000000-0000-4000-8000-000000000001"},
        {"type": "tool_call", "id": "item_0", "name": "shell",
         "input": {"command": format!("/bin/bash -c '{LONG_COMMAND}'")}}
    ]);
    let turn = interrupts(Cli::Codex, expected).await;
    // Codex kills its tool and exits 1 without a final event.
    assert_eq!(turn.code, Some(1), "stderr: {}", turn.stderr);
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_reports_a_dead_endpoint_as_retryable() {
    let failed = "Connection failed: error sending request";
    let expected = json!([
        {"type": "session", "id": "00000000-0000-4000-8000-000000000001"},
        {"type": "error", "message": failed},
        {"type": "turn_end", "ok": false, "error": failed, "retryable": true}
    ]);
    dead_endpoint(Cli::Codex, expected).await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_runs_a_turn_and_resumes_its_session() {
    let dir = "/tmp/atelier-recording-opencode-run";
    let session = "ses_00000000000000000000000001";
    runs_and_resumes(
        Cli::OpenCode,
        opencode_run(dir, session, 5),
        resumed(session),
    )
    .await;
}

/// The events of OpenCode's implement turn (recorded in `dir`), as [`comparable`] leaves them;
/// the simulator numbers tool calls across requests, from `first` on (`run` first asks for the
/// session's title; the bridge names its session and asks nothing).
fn opencode_run(dir: &str, session: &str, first: u32) -> Value {
    let call = |n: u32| format!("call_sim{:014}", first + n);
    let hello = format!("{dir}/work/hello.txt");
    let modified = format!("modify {dir}/TASK.md\n");
    json!([
        {"type": "session", "id": session},
        {"type": "tool_call", "id": call(0), "name": "write",
         "input": {"content": "hello\n", "filePath": hello}},
        {"type": "tool_result", "id": call(0), "is_error": false, "output": "Wrote file successfully."},
        {"type": "file_change", "path": hello, "kind": "add"},
        usage(),
        {"type": "tool_call", "id": call(3), "name": "bash",
         "input": {"command": "cat hello.txt", "description": "Run cat hello.txt"}},
        {"type": "tool_result", "id": call(3), "is_error": false, "output": "hello\n"},
        {"type": "command_output", "command": "cat hello.txt", "output": "hello\n", "exit_code": 0},
        usage(),
        {"type": "tool_call", "id": call(6), "name": "bash",
         "input": {"command": CHECK_COMMAND, "description": "Run atelier scripted-step '{\"do\":\"check\",\"item\":\"Add hello.txt\"}…"}},
        {"type": "tool_result", "id": call(6), "is_error": false, "output": modified},
        {"type": "command_output", "command": CHECK_COMMAND, "output": modified, "exit_code": 0},
        usage(),
        {"type": "message", "text": "Added hello.txt."},
        usage(),
        turn_ended()
    ])
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_serves_two_turns_from_one_long_lived_process() {
    let (lab, events) = Lab::two_long_lived_turns(Cli::OpenCode).await;
    let opencode = Cli::OpenCode.bin();
    let events = comparable(&events, true);
    let dir = "/tmp/atelier-recording-opencode-long-lived";
    let session = "ses_00000000000000000000000001";
    // Turn 0 as in the one-shot recording (its text typed live first: `comparable` checks the
    // pieces), then turn 1 with no second session announcement.
    let mut expected = opencode_run(dir, session, 3).as_array().unwrap().clone();
    expected.extend([
        json!({"type": "message", "text": "I wrote hello.txt and printed it."}),
        usage(),
        turn_ended(),
    ]);
    assert_eq!(events, expected);
    // The follow-up's request carried turn 0's calls: the conversation went on.
    let follow_ups: Vec<_> = lab
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.answer.as_deref() == Some("implement #0 turn 1 step 0: end of turn"))
        .collect();
    assert_eq!(follow_ups.len(), 1, "{follow_ups:#?}");
    assert!(has_tool_call(&follow_ups[0].body, "cat hello.txt"));
    // Every model request went to the role's model (the bridge's warm-up never reaches it), and
    // the bridge's `opencode serve` ended with it.
    assert!(
        lab.sim
            .requests()
            .iter()
            .all(|r| r.body["model"] == "sim-model")
    );
    assert_eq!(lab.runs_program(&opencode, "serve"), 0);
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_stops_on_sigterm_and_its_leftover_tool_is_killed() {
    // `run` reports a tool only once it has finished: the stream has nothing but the session.
    let expected = json!([{"type": "session", "id": "ses_00000000000000000000000001"}]);
    let turn = interrupts(Cli::OpenCode, expected).await;
    assert_eq!(
        turn.code, None,
        "ended by the signal; stderr: {}",
        turn.stderr
    );
}
