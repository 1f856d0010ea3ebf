//! Running a repository-configured shell hook (e.g. a project's setup command): `/bin/sh -c`
//! in a given folder with exactly the given environment, stdin closed, stdout and stderr captured
//! together through one pipe (so they interleave as a terminal would show them), and a deadline.
//! The hook runs in its own process group so that on timeout (or if the caller gives up on it)
//! the whole tree it started is killed, not just the shell.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::GitError;

/// The most output kept; beyond it the oldest bytes are dropped (the tail explains failures).
const MAX_OUTPUT: usize = 1 << 20;

/// How long after the shell exits we keep reading output that processes it left behind still
/// write. After that they are killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What a hook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutput {
    /// The shell exited with status 0 before the deadline.
    pub success: bool,
    /// The deadline passed and the hook's process group was killed.
    pub timed_out: bool,
    /// The shell's exit code (`None` when it was ended by a signal).
    pub exit_code: Option<i32>,
    /// Stdout and stderr, interleaved, decoded lossily as UTF-8; at most the last 1 MiB.
    pub output: String,
}

/// Runs `command` with `/bin/sh -c` in `cwd` with exactly the variables in `env` (nothing is
/// inherited: give `PATH` and `HOME` if the hook needs them), killing its whole process group
/// when `timeout` elapses. A hook that fails or times out is a normal [`HookOutput`]; only
/// failing to start or watch it is an error.
pub async fn run_hook(
    command: &str,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<HookOutput, GitError> {
    run_hook_in(&[], command, cwd, env, timeout).await
}

/// [`run_hook`] started through `wrapper` (a program and its arguments, e.g. a sandbox's command
/// line ending with `--`), which runs `/bin/sh -c command` itself; an empty wrapper runs the
/// shell directly. The wrapper must end when the shell ends and die with its process group.
pub async fn run_hook_in(
    wrapper: &[std::ffi::OsString],
    command: &str,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<HookOutput, GitError> {
    let spawn_error = |source: std::io::Error| GitError::HookSpawn {
        command: command.to_string(),
        cwd: cwd.to_path_buf(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
    let writer_for_stderr = writer.try_clone().map_err(spawn_error)?;

    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args).arg("/bin/sh");
            cmd
        }
        None => tokio::process::Command::new("/bin/sh"),
    };
    cmd.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr)
        .process_group(0)
        .kill_on_drop(true);
    let spawned = cmd.spawn();
    // Drop our copies of the pipe's write end, or we would never see end-of-file.
    drop(cmd);
    let mut child = spawned.map_err(spawn_error)?;
    // With `process_group(0)` the group id is the shell's pid.
    let mut guard = GroupGuard::new(child.id());
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
        .map_err(spawn_error)?;

    let started = Instant::now();
    let deadline = started
        .checked_add(timeout)
        .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
    let mut output = Tail::default();
    let mut chunk = vec![0u8; 8192];
    let mut status: Option<ExitStatus> = None;
    let mut eof = false;
    let mut timed_out = false;
    let mut drain_deadline: Option<Instant> = None;

    while !(eof && status.is_some()) {
        tokio::select! {
            read = pipe.read(&mut chunk), if !eof => match read {
                Ok(0) => eof = true,
                Ok(n) => output.push(&chunk[..n]),
                Err(err) => {
                    output.note(&format!("reading the hook's output failed: {err}"));
                    eof = true;
                }
            },
            waited = child.wait(), if status.is_none() => {
                let exited = waited.map_err(|source| GitError::HookWait {
                    command: command.to_string(),
                    elapsed: started.elapsed(),
                    source,
                })?;
                status = Some(exited);
                drain_deadline = Some(Instant::now() + DRAIN_GRACE);
            },
            _ = tokio::time::sleep_until(deadline), if status.is_none() && !timed_out => {
                timed_out = true;
                output.note(&format!("the hook ran longer than {timeout:?} and was killed"));
                guard.kill().await;
                // Best effort: the group kill above already covers the shell.
                let _ = child.start_kill();
            },
            _ = tokio::time::sleep_until(drain_deadline.unwrap_or(deadline)), if drain_deadline.is_some() => {
                output.note("processes the hook started kept running after it exited and were killed");
                guard.kill().await;
                break;
            },
            else => break,
        }
    }
    guard.disarm();

    let exit_code = status.and_then(|s| s.code());
    let success = !timed_out && status.is_some_and(|s| s.success());
    Ok(HookOutput {
        success,
        timed_out,
        exit_code,
        output: output.into_string(),
    })
}

/// Kills a process group (a hook's, or a network git command's) if the run is abandoned (the
/// future dropped) before it ends.
pub(crate) struct GroupGuard {
    pgid: Option<u32>,
}

impl GroupGuard {
    /// Guards the group `pgid` (the pid of a child started with `process_group(0)`).
    pub(crate) fn new(pgid: Option<u32>) -> GroupGuard {
        GroupGuard { pgid }
    }

    /// SIGKILL to every process in the group.
    pub(crate) async fn kill(&self) {
        let Some(pgid) = self.pgid else { return };
        let group = format!("-{pgid}");
        let killed = tokio::process::Command::new("kill")
            .args(["-KILL", "--", group.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if killed.is_err() {
            // No `kill` program: the shell's builtin does the same.
            let _ = tokio::process::Command::new("/bin/sh")
                .args(["-c", &format!("kill -9 {group}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    }

    /// Forgets the group: it ended (its id may be reused).
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The last [`MAX_OUTPUT`] bytes of a stream, plus Atelier's own notes.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > MAX_OUTPUT {
            let excess = self.bytes.len() - MAX_OUTPUT;
            self.bytes.drain(..excess);
            self.dropped += excess;
        }
    }

    fn note(&mut self, note: &str) {
        if !self.bytes.is_empty() && !self.bytes.ends_with(b"\n") {
            self.push(b"\n");
        }
        self.push(format!("[atelier: {note}]\n").as_bytes());
    }

    fn into_string(self) -> String {
        let text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            format!(
                "[atelier: {} earlier bytes of output dropped]\n{text}",
                self.dropped
            )
        } else {
            text
        }
    }
}
