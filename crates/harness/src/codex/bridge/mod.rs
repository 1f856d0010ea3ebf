//! The bridge behind Codex's long-lived sessions: the hidden `atelier codex-bridge <config>`
//! program, which runs `codex app-server` (JSON-RPC over stdio) as its child and speaks the
//! engine's long-lived contract on its own stdio (see [`wire`]): each stdin line is a turn,
//! every turn ends with a line the decoder turns into `TurnEnd`, and closing stdin ends the
//! session.
//!
//! Why a bridge: app-server needs a handshake, request ids and the thread id from
//! `thread/start`'s response before a `turn/start`; the engine only writes turns and reads lines.
//!
//! What it does:
//! 1. At boot, without waiting for a turn: starts `codex app-server` with the role's `-c`
//!    overrides, `initialize` (opting out of the [`rpc::QUIET`] notifications) and
//!    `initialized`. When no turn is waiting on stdin by then (a warm standby process) and no
//!    thread is to be resumed, it also starts the session's thread right away (`thread/start`,
//!    as below), after taking the [`stamp`] of what Codex reads when a thread starts: the
//!    `AGENTS.md` / `AGENTS.override.md` files from the repository root down to the working
//!    directory, the project's `.codex/` and `.agents/skills/`, Codex's home configuration and
//!    instructions, and the shell's start-up files. Starting a thread costs ~15–45 ms (the first
//!    of a process the most); a warm process pays it while it waits instead of at the hand-off.
//!    When no stamp can be taken (a symbolic link or special file where Codex looks, a file
//!    over the caps, a configuration naming other files), that thread is only a primer
//!    (`ephemeral`, never used: the next thread then starts faster).
//! 2. At the first turn: the thread started at boot is the session's if the stamp taken now is
//!    equal to the one taken before it started — Codex reads those files once, at
//!    `thread/start`, so a thread started before the previous run changed one of them would
//!    keep the old text. Otherwise (a change, or a cold process) `thread/start` (or
//!    `thread/resume` of the role's session), with `approvalPolicy: "never"` and `sandbox:
//!    "danger-full-access"` (the one-shot mode's bypass: Atelier sandboxes the agent itself).
//!    Then it writes [`wire::SESSION`] with the thread id.
//! 3. Each turn: `turn/start {threadId, input: [{type: "text", text}]}`; Codex's notifications
//!    go to stdout as they come ([`rpc`]), `turn/completed` ending the turn; a turn that
//!    cannot start writes [`wire::TURN_FAILED`].
//! 4. Stdin closed: closes Codex's stdin (app-server ends, killing its tools), waits for it and
//!    exits with its status. SIGINT, SIGTERM or SIGHUP (the engine's interrupt goes to the whole
//!    process group, Codex included): passed on to Codex, which exits at once, killing its
//!    tools; the bridge waits for it (at most [`STOP_GRACE`], then kills it) and exits
//!    `128 + signal`. Killed outright, the bridge takes Codex with it (`PR_SET_PDEATHSIG`).

mod rpc;
mod stamp;
pub mod wire;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// The name of the hidden `atelier` subcommand that runs the bridge.
pub const SUBCOMMAND: &str = "codex-bridge";

/// How long Codex gets to end after a stop signal or the end of stdin before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the bridge is started with (one JSON argument of the subcommand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// The native `codex` binary.
    pub codex: PathBuf,
    /// Its arguments: `app-server` and the role's overrides.
    pub args: Vec<String>,
    /// The thread to continue (`thread/resume`) instead of a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

impl BridgeConfig {
    /// The subcommand's argument.
    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The bridge's stdout: one writer task, lines in the order they are given, each flushed.
#[derive(Clone)]
struct Out(mpsc::UnboundedSender<Option<String>>);

impl Out {
    fn line(&self, line: String) {
        let _ = self.0.send(Some(line));
    }

    /// Writes what was given before, then stops (later lines are dropped).
    fn end(&self) {
        let _ = self.0.send(None);
    }

    fn start() -> (Out, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<String>>();
        let task = tokio::spawn(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(Some(mut line)) = rx.recv().await {
                line.push('\n');
                if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err()
                {
                    break;
                }
            }
        });
        (Out(tx), task)
    }
}

/// Runs the bridge given the subcommand's argument; returns the process's exit code. Builds its
/// own single-threaded runtime: Codex is started from the main thread, whose end is what
/// `PR_SET_PDEATHSIG` watches.
pub fn main(arg: &str) -> i32 {
    let config: BridgeConfig = match serde_json::from_str(arg) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("codex-bridge: invalid configuration: {err}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("codex-bridge: cannot start the async runtime: {err}");
            return 1;
        }
    };
    let code = runtime.block_on(run(config));
    // The stdin reader may be blocked in a read that never ends (nobody closed stdin).
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// What ended the session.
enum End {
    /// Stdin closed: Codex is asked to end.
    Input,
    /// The handshake failed: Codex is asked to end, the bridge fails.
    Failed,
    /// A stop signal (its number).
    Signal(i32),
    /// Codex ended by itself.
    Codex(std::process::ExitStatus),
}

async fn run(config: BridgeConfig) -> i32 {
    let (out, writer) = Out::start();
    let code = session(config, out.clone()).await;
    // Every line written before the end reaches the engine.
    out.end();
    let _ = writer.await;
    code
}

async fn session(config: BridgeConfig, out: Out) -> i32 {
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("codex-bridge: cannot handle signals: {err}");
            return 1;
        }
    };
    let turns = read_turns(out.clone());
    let args: Vec<OsString> = config.args.iter().map(OsString::from).collect();
    let (codex, mut child) = match rpc::Connection::start(&config.codex, &args, out.clone()) {
        Ok(started) => started,
        Err(err) => {
            eprintln!("codex-bridge: {err}");
            return 1;
        }
    };
    let mut bridge = Bridge {
        out,
        turns,
        thread: None,
        resume: config.resume,
        standby: None,
    };
    let end = tokio::select! {
        // A stop signal first: it may also have interrupted the read of stdin.
        biased;
        sig = signals.next() => End::Signal(sig),
        end = bridge.serve(&codex) => end,
        status = child.wait() => match status {
            Ok(status) => End::Codex(status),
            Err(err) => {
                eprintln!("codex-bridge: lost codex app-server: {err}");
                End::Failed
            }
        },
    };
    finish(codex, &mut child, end, &mut signals).await
}

/// Ends the session the way `end` asks; returns the exit code.
async fn finish(
    codex: rpc::Connection,
    child: &mut tokio::process::Child,
    end: End,
    signals: &mut Signals,
) -> i32 {
    let (code, status) = match end {
        End::Codex(status) => (exit_code(status), Some(status)),
        End::Input | End::Failed | End::Signal(_) => {
            let code = match end {
                End::Signal(sig) => {
                    if let Some(pid) = child.id() {
                        crate::process::signal(pid, sig);
                    }
                    128 + sig
                }
                End::Failed => 1,
                _ => {
                    codex.close();
                    0
                }
            };
            let status = tokio::select! {
                status = child.wait() => status.ok(),
                () = tokio::time::sleep(STOP_GRACE) => None,
                // A second signal: no more waiting.
                _ = signals.next() => None,
            };
            if status.is_none() {
                let _ = child.kill().await;
            }
            (code, status)
        }
    };
    // Codex's last lines (its turn's end) are passed on before the bridge exits.
    let _ = tokio::time::timeout(STOP_GRACE, codex.reader).await;
    match (code, status) {
        // Stdin closed: Codex's own status, or a failure if it had to be killed.
        (0, Some(status)) => exit_code(status),
        (0, None) => 1,
        (code, _) => code,
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|sig| 128 + sig))
        .unwrap_or(1)
}

/// Reads stdin's turn lines into a channel (closed at the end of stdin). A line that is not a
/// turn is reported and skipped.
fn read_turns(out: Out) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                // A signal interrupted the read: it is not the end of stdin.
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(None) | Err(_) => break,
            };
            if line.trim().is_empty() {
                continue;
            }
            match wire::parse_turn(&line) {
                Some(text) => {
                    if tx.send(text).is_err() {
                        break;
                    }
                }
                None => {
                    let start: String = line.chars().take(200).collect();
                    out.line(wire::notification(
                        wire::ERROR,
                        json!({"message": format!("not a turn, ignored: {start}")}),
                    ));
                }
            }
        }
    });
    rx
}

/// The session's state on the bridge's side.
struct Bridge {
    out: Out,
    turns: mpsc::UnboundedReceiver<String>,
    /// The thread, once started (or resumed).
    thread: Option<String>,
    resume: Option<String>,
    /// The thread a warm process started at boot, for its first turn.
    standby: Option<Standby>,
}

/// A thread started at boot, and the stamp of what Codex read for it (taken just before).
struct Standby {
    id: String,
    stamp: stamp::Stamp,
}

impl Bridge {
    /// Handshake, then one `turn/start` per stdin turn until stdin ends (or the handshake fails:
    /// then Codex is asked to end too).
    async fn serve(&mut self, codex: &rpc::Connection) -> End {
        let init = codex
            .request(
                "initialize",
                json!({
                    "clientInfo": {"name": "atelier", "version": env!("CARGO_PKG_VERSION")},
                    "capabilities": {"optOutNotificationMethods": rpc::QUIET},
                }),
            )
            .await;
        if let Err(err) = init {
            eprintln!("codex-bridge: codex app-server refused to initialize: {err}");
            return End::Failed;
        }
        codex.notify("initialized");
        // Nothing to do yet (a warm standby): start the thread meanwhile.
        let mut first = self.turns.try_recv().ok();
        if first.is_none() && self.resume.is_none() {
            self.standby = start_standby(codex).await;
        }
        loop {
            let text = match first.take() {
                Some(text) => text,
                None => match self.turns.recv().await {
                    Some(text) => text,
                    None => return End::Input,
                },
            };
            self.turn(codex, text).await;
        }
    }

    async fn turn(&mut self, codex: &rpc::Connection, text: String) {
        let thread = match &self.thread {
            Some(thread) => thread.clone(),
            None => match self.open_thread(codex).await {
                Ok(thread) => thread,
                Err(message) => return self.failed(message),
            },
        };
        let started = codex
            .request(
                "turn/start",
                json!({"threadId": thread, "input": [{"type": "text", "text": text}]}),
            )
            .await;
        if let Err(err) = started {
            self.failed(format!("Codex did not start the turn: {err}"));
        }
    }

    /// Starts the session's thread (or resumes the role's, or takes the one started at boot
    /// when what Codex read for it is unchanged) and announces it.
    async fn open_thread(&mut self, codex: &rpc::Connection) -> Result<String, String> {
        if let Some(standby) = self.standby.take() {
            match stamp::take(&stamp::Places::here()) {
                Ok(now) if now == standby.stamp => return Ok(self.announce(standby.id)),
                Ok(_) => eprintln!(
                    "codex-bridge: what Codex reads when a thread starts changed while the \
                     process waited; starting a new thread"
                ),
                Err(why) => eprintln!(
                    "codex-bridge: cannot compare what Codex reads when a thread starts \
                     ({why}); starting a new thread"
                ),
            }
        }
        let (method, params) = match &self.resume {
            Some(id) => {
                let mut params = thread_params(false);
                params["threadId"] = json!(id);
                // The history stays Codex's: the bridge needs only the thread.
                params["excludeTurns"] = json!(true);
                ("thread/resume", params)
            }
            None => ("thread/start", thread_params(false)),
        };
        let result = codex
            .request(method, params)
            .await
            .map_err(|err| format!("Codex could not open the thread ({method}): {err}"))?;
        let id = thread_id(&result)
            .ok_or_else(|| format!("Codex's {method} answered no thread id: {result}"))?;
        Ok(self.announce(id))
    }

    /// Makes `id` the session's thread and tells the engine.
    fn announce(&mut self, id: String) -> String {
        self.out.line(wire::notification(
            wire::SESSION,
            json!({"threadId": id, "resumed": self.resume.is_some()}),
        ));
        self.thread = Some(id.clone());
        id
    }

    fn failed(&self, message: String) {
        self.out.line(wire::notification(
            wire::TURN_FAILED,
            json!({"message": message}),
        ));
    }
}

/// A warm process's thread, started at boot: the stamp of what Codex reads at a thread's start
/// is taken first (a change while Codex reads then shows as a difference at the first turn).
/// Without a usable stamp the thread is only a primer (`ephemeral`, never used): Codex's first
/// thread of a process pays one-time costs, and the real one then starts faster at the turn.
async fn start_standby(codex: &rpc::Connection) -> Option<Standby> {
    let stamp = stamp::take(&stamp::Places::here());
    let result = codex
        .request("thread/start", thread_params(stamp.is_err()))
        .await
        .ok()?;
    Some(Standby {
        id: thread_id(&result)?,
        stamp: stamp.ok()?,
    })
}

/// The thread id in a `thread/start` or `thread/resume` result.
fn thread_id(result: &Value) -> Option<String> {
    result
        .pointer("/thread/id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// `thread/start` (and `thread/resume`) parameters: the working directory, no approvals and no
/// Codex sandbox (the agent runs in Atelier's).
fn thread_params(ephemeral: bool) -> Value {
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut params = json!({
        "cwd": cwd,
        "approvalPolicy": "never",
        "sandbox": "danger-full-access",
    });
    if ephemeral {
        params["ephemeral"] = json!(true);
    }
    params
}

/// The stop signals the bridge handles.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next stop signal's number.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_round_trips_through_its_argument() {
        let config = BridgeConfig {
            codex: "/opt/codex".into(),
            args: vec!["app-server".into(), "-c".into(), "model=\"gpt-5.5\"".into()],
            resume: Some("t-1".into()),
        };
        let parsed: Result<BridgeConfig, _> = serde_json::from_str(&config.to_arg());
        assert_eq!(parsed.ok(), Some(config));
        assert!(serde_json::from_str::<BridgeConfig>(r#"{"codex":"c","args":[],"x":1}"#).is_err());
    }
}
