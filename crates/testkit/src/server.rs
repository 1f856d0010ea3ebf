//! The real `atelier serve` as a child process: started on a free loopback port, its output kept
//! for debugging, stopped gracefully (SIGTERM) or crashed on purpose (SIGKILL), and killed when
//! dropped so a failing test never leaves a server behind.

use crate::{ApiClient, wait_until};
use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

/// What the server prints once it accepts connections, followed by its URL.
const LISTENING: &str = "Atelier listening on ";
/// Longest wait for that line (a debug build on a busy 2-core machine can be slow to start).
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for the process to exit after SIGTERM (the server stops its agents first).
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for the process to exit after SIGKILL.
const KILL_DEADLINE: Duration = Duration::from_secs(10);
/// Longest wait for the output readers to reach the end of the pipes once the process is gone.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// `<data_dir>/server.json`, written by the server at startup.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerInfo {
    pub url: String,
    pub token: String,
    pub pid: u32,
}

/// A running `atelier serve`. Dropping it stops the server gracefully (SIGTERM, so it stops its
/// agents and no agent of a test outlives it), and kills it (SIGKILL) if it is not gone in 10 s.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pid: u32,
    url: String,
    info: ServerInfo,
    data_dir: PathBuf,
    logs: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    client: ApiClient,
}

impl ServerProcess {
    /// Runs `<bin> serve --listen 127.0.0.1:0 <args>` with `ATELIER_DATA_DIR=<data_dir>` plus
    /// `env`, in `data_dir` (created if missing), and returns once it has printed
    /// `Atelier listening on <url>` and written its `server.json`.
    ///
    /// `ATELIER_*` variables of the test's own environment are not passed on, so an outer
    /// Atelier (or a developer's shell) cannot change what the server under test does.
    /// Fails after 30 s, or as soon as the process exits, with everything it printed.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ServerProcess> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ATELIER_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("ATELIER_DATA_DIR", data_dir);
        // Agent homes beside the data dir, so each test server's stay in its temporary folder.
        let mut homes = data_dir.as_os_str().to_owned();
        homes.push("-homes");
        cmd.env("ATELIER_HOMES_DIR", homes);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let command_line = format!(
            "{} serve --listen 127.0.0.1:0 {}",
            bin.display(),
            args.join(" ")
        );
        let mut child = cmd.spawn().with_context(|| {
            format!("starting `{command_line}` (build the binary first: `cargo build --workspace`)")
        })?;
        let pid = child
            .id()
            .context("the server exited before its pid could be read")?;

        let logs = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = oneshot::channel();
        let mut readers = vec![];
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(drain(
                stdout,
                "stdout",
                logs.clone(),
                Some(url_tx),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(drain(stderr, "stderr", logs.clone(), None)));
        }

        let deadline = Instant::now() + STARTUP_DEADLINE;
        let url = match timeout_at(deadline, url_rx).await {
            Ok(Ok(url)) => url,
            Ok(Err(_stdout_closed)) => {
                let status = match timeout(KILL_DEADLINE, child.wait()).await {
                    Ok(Ok(status)) => status.to_string(),
                    _ => "still running with stdout closed".to_string(),
                };
                finish_readers(&mut readers).await;
                anyhow::bail!(
                    "`{command_line}` ended its output ({status}) without printing \
                     `{LISTENING}<url>`\n{}",
                    format_logs(&logs)
                );
            }
            Err(_) => {
                // Best effort: the process is killed on drop anyway.
                let _ = child.start_kill();
                let _ = timeout(KILL_DEADLINE, child.wait()).await;
                finish_readers(&mut readers).await;
                anyhow::bail!(
                    "`{command_line}` did not print `{LISTENING}<url>` within {STARTUP_DEADLINE:?}\n{}",
                    format_logs(&logs)
                );
            }
        };

        // The file may be left over from an earlier server of the same data dir (a restart test):
        // only this process's own file counts.
        let info_path = data_dir.join("server.json");
        let remaining = deadline.saturating_duration_since(Instant::now());
        let what = format!("{} to be written by pid {pid}", info_path.display());
        let info = wait_until(&what, remaining, || async {
            let text = tokio::fs::read_to_string(&info_path).await.ok()?;
            let info: ServerInfo = serde_json::from_str(&text).ok()?;
            (info.pid == pid).then_some(info)
        })
        .await
        .map_err(|err| err.context(format_logs(&logs)))?;

        let client = ApiClient::new(&url, &info.token)?;
        Ok(ServerProcess {
            child,
            pid,
            url,
            info,
            data_dir: data_dir.to_path_buf(),
            logs,
            readers,
            client,
        })
    }

    /// The URL from the `Atelier listening on <url>` line.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's API token (from `server.json`).
    pub fn token(&self) -> &str {
        &self.info.token
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The whole `server.json` the server wrote.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything the server printed so far, one line per output line, each tagged `[stdout]` or
    /// `[stderr]`. Print it when a test fails.
    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A JSON client for this server with its API token.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// `GET path` with the API token; fails unless the answer is 2xx. See [`ApiClient::get`].
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.client.get(path).await
    }

    /// `POST path` with the API token; returns status and body. See [`ApiClient::post`].
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.client.post(path, body).await
    }

    /// Crashes the server: `kill -9 <pid>`, then waits for the process to be gone. Its agents
    /// are not told anything, exactly as after a power cut of the server process.
    pub async fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.send_signal("-KILL").await? {
            return Ok(status);
        }
        self.wait_exit(KILL_DEADLINE, "SIGKILL").await
    }

    /// Stops the server gracefully: `kill -TERM <pid>`, then waits up to 30 s for it to exit
    /// (killing it and failing if it does not).
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.send_signal("-TERM").await? {
            return Ok(status);
        }
        self.wait_exit(STOP_DEADLINE, "SIGTERM").await
    }

    /// Sends `signal` with the `kill` command, unless the process has already exited (then its
    /// status is returned and no signal is sent, so a recycled pid is never hit).
    async fn send_signal(&mut self, signal: &str) -> anyhow::Result<Option<ExitStatus>> {
        if let Some(status) = self
            .child
            .try_wait()
            .context("checking the server process")?
        {
            finish_readers(&mut self.readers).await;
            return Ok(Some(status));
        }
        let status = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .await
            .with_context(|| format!("running `kill {signal} {}`", self.pid))?;
        anyhow::ensure!(
            status.success(),
            "`kill {signal} {}` failed ({status})",
            self.pid
        );
        Ok(None)
    }

    async fn wait_exit(&mut self, deadline: Duration, signal: &str) -> anyhow::Result<ExitStatus> {
        match timeout(deadline, self.child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the server to exit")?;
                finish_readers(&mut self.readers).await;
                Ok(status)
            }
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = timeout(KILL_DEADLINE, self.child.wait()).await;
                finish_readers(&mut self.readers).await;
                anyhow::bail!(
                    "the server (pid {}) did not exit within {deadline:?} of {signal}; killed it\n{}",
                    self.pid,
                    format_logs(&self.logs)
                )
            }
        }
    }
}

/// Copies one output stream into `logs` line by line until it ends; on stdout, hands the URL of
/// the first `Atelier listening on <url>` line to `listening`.
async fn drain<R: AsyncRead + Unpin>(
    stream: R,
    name: &'static str,
    logs: Arc<Mutex<String>>,
    mut listening: Option<oneshot::Sender<String>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        {
            let mut logs = logs.lock().unwrap_or_else(PoisonError::into_inner);
            logs.push_str(&format!("[{name}] {line}\n"));
        }
        let url = line
            .split_once(LISTENING)
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if let Some(url) = url
            && let Some(tx) = listening.take()
        {
            let _ = tx.send(url.to_string());
        }
    }
}

/// Waits (briefly) for the readers to copy the last lines, so `logs()` is complete.
async fn finish_readers(readers: &mut Vec<JoinHandle<()>>) {
    for reader in readers.drain(..) {
        let _ = timeout(DRAIN_DEADLINE, reader).await;
    }
}

fn format_logs(logs: &Mutex<String>) -> String {
    let logs = logs.lock().unwrap_or_else(PoisonError::into_inner);
    if logs.is_empty() {
        "--- the server printed nothing ---".to_string()
    } else {
        format!(
            "--- server output ---\n{}--- end of server output ---",
            *logs
        )
    }
}

#[cfg(test)]
mod tests;

/// Longest wait for a dropped server to stop its agents and exit.
const DROP_DEADLINE: Duration = Duration::from_secs(10);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let term = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if !term.is_ok_and(|status| status.success()) {
            return;
        }
        // Drop cannot await: wait for the exit with a deadline (kill_on_drop covers the rest).
        let deadline = std::time::Instant::now() + DROP_DEADLINE;
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
