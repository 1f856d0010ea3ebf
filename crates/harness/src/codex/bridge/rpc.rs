//! The bridge's JSON-RPC connection to its `codex app-server` child (one JSON object per line on
//! the child's stdin and stdout).
//!
//! [`Connection::start`] starts the child and two tasks: a writer that owns the child's stdin
//! (closed on [`Connection::close`], which is how app-server is told to end), and a reader of
//! its stdout that
//! - hands each response to the request waiting for its id ([`Connection::request`]);
//! - answers each server → client request itself ([`answer`]): approvals are accepted (the
//!   posture of the one-shot mode's `--dangerously-bypass-approvals-and-sandbox`; with
//!   `approvalPolicy: "never"` Codex asks none), questions to a user get no answer, and
//!   anything else is refused;
//! - passes every notification to the bridge's stdout (but those in [`QUIET`]), and any line it
//!   cannot parse as it is (the decoder counts it as unreadable).
//!
//! Codex's stderr is the bridge's own (the engine keeps its tail for error reports).

use super::Out;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};

/// Notifications not worth a line (each is also opted out of at `initialize`): the whole diff
/// of the turn after every change, read markers, rate-limit windows, status flips and the
/// thread's announcement (the bridge writes its own, `atelier/session`, for the session's
/// thread only).
pub const QUIET: [&str; 6] = [
    "thread/started",
    "turn/diff/updated",
    "thread/readState/changed",
    "thread/status/changed",
    "account/rateLimits/updated",
    "remoteControl/status/changed",
];

/// What a request got back: its `result`, or the message of its `error` (also when Codex ended
/// before answering).
pub type Reply = Result<Value, String>;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// What the writer task writes to Codex's stdin.
enum Input {
    Line(String),
    Close,
}

/// The way to talk to the running `codex app-server`.
pub(super) struct Connection {
    input: mpsc::UnboundedSender<Input>,
    pending: Pending,
    next_id: AtomicU64,
    /// The reader task; ends at the child's end of output.
    pub reader: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Starts `codex <args>` in the current directory with the bridge's environment. The child
    /// gets SIGTERM if the bridge dies without ending it (Codex then kills its tools).
    pub fn start(
        codex: &Path,
        args: &[OsString],
        out: Out,
    ) -> std::io::Result<(Connection, Child)> {
        let mut cmd = tokio::process::Command::new(codex);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        crate::process::signal_on_parent_death(&mut cmd, libc::SIGTERM);
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start {} app-server: {e}", codex.display()),
            )
        })?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => (stdin, stdout),
            _ => return Err(std::io::Error::other("codex app-server has no pipes")),
        };
        let (input, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_input(stdin, rx));
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_output(
            stdout,
            Arc::clone(&pending),
            input.clone(),
            out,
        ));
        let connection = Connection {
            input,
            pending,
            next_id: AtomicU64::new(1),
            reader,
        };
        Ok((connection, child))
    }

    /// Sends a request and waits for its response.
    pub async fn request(&self, method: &str, params: Value) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if self.input.send(Input::Line(message.to_string())).is_err() {
            lock(&self.pending).remove(&id);
            return Err("codex app-server's input is closed".into());
        }
        rx.await
            .unwrap_or_else(|_| Err(format!("codex app-server ended before answering {method}")))
    }

    /// Sends a notification (no response).
    pub fn notify(&self, method: &str) {
        let message = json!({"jsonrpc": "2.0", "method": method});
        let _ = self.input.send(Input::Line(message.to_string()));
    }

    /// Closes Codex's stdin (after what was sent before): app-server ends, killing its tools.
    pub fn close(&self) {
        let _ = self.input.send(Input::Close);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn write_input(mut stdin: ChildStdin, mut rx: mpsc::UnboundedReceiver<Input>) {
    while let Some(Input::Line(line)) = rx.recv().await {
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        if written.await.is_err() {
            break;
        }
    }
    let _ = stdin.shutdown().await;
}

async fn read_output(
    stdout: ChildStdout,
    pending: Pending,
    input: mpsc::UnboundedSender<Input>,
    out: Out,
) {
    // Bytes, decoded lossily: a line that is not UTF-8 must not end the relay (app-server would
    // then fill its pipe and the run stall without a word).
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(&line) else {
            out.line(line);
            continue;
        };
        let id = message.get("id").cloned();
        match (id, message.get("method").and_then(Value::as_str)) {
            // A server → client request: answered here.
            (Some(id), Some(method)) => {
                let reply = answer(method, message.get("params").unwrap_or(&Value::Null));
                let mut response = json!({"jsonrpc": "2.0", "id": id});
                match reply {
                    Ok(result) => response["result"] = result,
                    Err(text) => {
                        out.line(super::wire::notification(
                            super::wire::ERROR,
                            json!({"message": format!("Codex asked `{method}`: {text}")}),
                        ));
                        response["error"] = json!({"code": -32601, "message": text});
                    }
                }
                let _ = input.send(Input::Line(response.to_string()));
            }
            // A response to one of the bridge's requests.
            (Some(id), None) => {
                let waiting = id.as_u64().and_then(|id| lock(&pending).remove(&id));
                if let Some(waiting) = waiting {
                    let reply = match message.get("error") {
                        Some(error) => Err(error
                            .get("message")
                            .and_then(Value::as_str)
                            .map_or_else(|| error.to_string(), str::to_owned)),
                        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    let _ = waiting.send(reply);
                }
            }
            (None, Some(method)) if QUIET.contains(&method) => {}
            (None, _) => out.line(line),
        }
    }
    // Whoever still waits gets "ended before answering".
    lock(&pending).clear();
}

/// The bridge's answer to a server → client request: `Ok(result)`, or `Err(why)` for a refusal
/// (sent as a JSON-RPC error).
pub fn answer(method: &str, params: &Value) -> Result<Value, String> {
    match method {
        "item/commandExecution/requestApproval" | "item/fileChange/requestApproval" => {
            Ok(json!({"decision": "accept"}))
        }
        "execCommandApproval" | "applyPatchApproval" => Ok(json!({"decision": "approved"})),
        "item/permissions/requestApproval" => Ok(json!({
            "permissions": params.get("permissions").cloned().unwrap_or_else(|| json!({})),
            "scope": "turn",
        })),
        // Nobody is there to answer: the agent asks with `atelier signal question` instead.
        "item/tool/requestUserInput" => Ok(json!({"answers": {}})),
        "mcpServer/elicitation/request" => Ok(json!({"action": "decline"})),
        _ => Err("Atelier runs Codex unattended and does not serve this request".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_are_accepted_and_the_rest_refused() {
        let accept = json!({"decision": "accept"});
        assert_eq!(
            answer("item/commandExecution/requestApproval", &json!({})),
            Ok(accept.clone())
        );
        assert_eq!(
            answer("item/fileChange/requestApproval", &json!({})),
            Ok(accept)
        );
        assert_eq!(
            answer("execCommandApproval", &json!({})),
            Ok(json!({"decision": "approved"}))
        );
        let asked = json!({"permissions": {"network": {"enabled": true}}});
        assert_eq!(
            answer("item/permissions/requestApproval", &asked),
            Ok(json!({"permissions": {"network": {"enabled": true}}, "scope": "turn"}))
        );
        assert_eq!(
            answer("item/tool/requestUserInput", &json!({})),
            Ok(json!({"answers": {}}))
        );
        assert!(answer("account/chatgptAuthTokens/refresh", &json!({})).is_err());
        assert!(answer("item/tool/call", &json!({})).is_err());
    }
}
