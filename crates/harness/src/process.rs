//! Agent child processes: spawned from an explicit environment in their own process group,
//! and stopped by killing every descendant (the agent CLIs start tools in groups of their own).
//!
//! Stopping a run never scans the host's process table: a sandboxed agent's processes live in
//! its PID namespace and end with bubblewrap; an unconfined agent is its run's child subreaper,
//! so its descendants — found through `/proc/<pid>/task/*/children`, one file per process of the
//! run — are every process of the run while it lives, and what is left in its process group is
//! killed after it ended. Only startup recovery, for the runs of a crashed server, scans every
//! process for a run's mark ([`kill_marked`]).
//!
//! This is the one module of the crate that talks to libc directly (signals, `waitpid`,
//! `setsid`), so it is the one module allowed to use `unsafe`; every block says why it is sound.
//! Process trees are read from `/proc` (Linux only).

#![allow(unsafe_code)]

use crate::Interrupt;
use crate::sandbox::{Mounts, Sandbox};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

/// Everything needed to start an agent process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// The complete environment (the child starts from an empty one).
    pub env: Vec<(String, String)>,
    /// Written to stdin, which is then closed (unless `stdin_open`); `None` gives `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Keep stdin open after `stdin` was written: a long-lived session, whose later turns are
    /// written with [`AgentProcess::write_input`] and which ends at [`AgentProcess::close_input`].
    pub stdin_open: bool,
}

/// How much of the agent's stderr is kept for error reports.
const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// How long `wait` lets the stderr reader drain after the agent exited. A background tool that
/// inherited stderr keeps the pipe open forever, so this cannot wait for EOF unconditionally.
const STDERR_DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Upper bound of freeze/rescan rounds, so a pathological pid churn cannot loop forever.
const MAX_FREEZE_ROUNDS: usize = 64;

/// A running agent: its own process group, explicit environment, stderr tail kept in memory.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    pid: u32,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    stderr_task: Option<JoinHandle<()>>,
    /// Started inside a [`Sandbox`]: the child is bubblewrap, the agent runs in its PID namespace.
    sandboxed: bool,
    /// Unconfined: the agent's descendants (pid, start time) noted before it was asked to stop,
    /// killed after it ended if they outlived it ([`AgentProcess::kill_leftovers`]).
    noted: Vec<(u32, u64)>,
    /// The writer of a long-lived session's stdin (`ProcessSpec::stdin_open`), in order; dropping
    /// it closes stdin once everything sent before was written.
    input: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
}

/// Where an agent runs, for [`AgentProcess::start`].
enum Confinement {
    /// Unconfined: the agent is made the child subreaper of its run.
    None,
    /// Inside a sandbox: bubblewrap is the child (and the namespace's init is its subreaper).
    Sandbox,
}

impl AgentProcess {
    /// Starts `spec` with `env_clear()` then exactly `spec.env`, in `spec.cwd`, as the leader of a
    /// new process group, stdout and stderr piped, stdin fed from `spec.stdin` (then closed) or
    /// `/dev/null`, and killed if dropped. Must be called inside a tokio runtime.
    ///
    /// The agent is made a child subreaper (`PR_SET_CHILD_SUBREAPER`, kept across `exec`): a
    /// process of its run whose parent dies — a double-forked, `setsid` or `env -i` tool — is
    /// re-parented to the agent instead of the host's init, so while the agent lives its
    /// descendants are the whole run, and [`AgentProcess::kill_all`] finds them without scanning
    /// the host. (Such orphans that end are reaped when the agent ends, not before.)
    pub fn spawn(spec: &ProcessSpec) -> io::Result<AgentProcess> {
        AgentProcess::start(spec, Confinement::None)
    }

    fn start(spec: &ProcessSpec, confinement: Confinement) -> io::Result<AgentProcess> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        if let Confinement::None = confinement {
            // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
            // which is async-signal-safe; it touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == -1 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
            }
        }
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.cwd)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if spec.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot start {} in {}: {e}",
                    spec.program.display(),
                    spec.cwd.display()
                ),
            )
        })?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the agent process exited before it was observed"))?;

        let mut input = None;
        if let (Some(bytes), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            if spec.stdin_open {
                input = Some(tx);
            } else {
                drop(tx);
            }
            tokio::spawn(async move {
                // The agent may exit without reading its input; a broken pipe is not our error.
                if stdin.write_all(&bytes).await.is_ok() {
                    let _ = stdin.flush().await;
                    while let Some(more) = rx.recv().await {
                        if stdin.write_all(&more).await.is_err() || stdin.flush().await.is_err() {
                            break;
                        }
                    }
                }
                let _ = stdin.shutdown().await;
            });
        }

        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_BYTES)));
        let stderr_task = child.stderr.take().map(|mut stderr| {
            let tail = Arc::clone(&stderr_tail);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                    tail.extend(&buf[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                    tail.drain(..excess);
                }
            })
        });

        Ok(AgentProcess {
            child,
            pid,
            stderr_tail,
            stderr_task,
            sandboxed: matches!(confinement, Confinement::Sandbox),
            noted: Vec::new(),
            input,
        })
    }

    /// [`AgentProcess::spawn`] inside `sandbox`, seeing `mounts` (and the program's own folder)
    /// besides the system. Errors name the agent's program, not bubblewrap.
    pub fn spawn_sandboxed(
        spec: &ProcessSpec,
        sandbox: &Sandbox,
        mounts: &Mounts,
    ) -> io::Result<AgentProcess> {
        AgentProcess::start(&wrap(sandbox, spec, mounts), Confinement::Sandbox).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot start {} in its sandbox: {e}",
                    spec.program.display()
                ),
            )
        })
    }

    /// Whether stdin is still open for more input (a long-lived session not closed yet).
    pub fn is_open_for_input(&self) -> bool {
        self.input.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Writes `bytes` to a long-lived session's stdin, after everything written before. Fails
    /// when the process was not started with `stdin_open`, or its stdin was closed or broke.
    pub fn write_input(&self, bytes: Vec<u8>) -> io::Result<()> {
        let tx = self.input.as_ref().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the agent's stdin is closed")
        })?;
        tx.send(bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the agent's stdin is closed"))
    }

    /// Closes a long-lived session's stdin once what was written before is delivered (the
    /// agent's signal to end). Nothing for a one-shot process.
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// Whether the agent runs inside a sandbox (its own PID namespace).
    pub fn is_sandboxed(&self) -> bool {
        self.sandboxed
    }

    /// The agent's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The agent's stdout (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Waits for the agent to exit, then briefly for its stderr to drain so that `stderr_tail`
    /// is complete. Cancel-safe: calling it again after a cancelled call resumes the wait.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        if let Some(task) = self.stderr_task.as_mut() {
            // Either the reader finished or a descendant holds stderr open: stop waiting for it
            // in both cases (the reader keeps running detached and still updates the tail).
            let _ = tokio::time::timeout(STDERR_DRAIN_GRACE, task).await;
            self.stderr_task = None;
        }
        Ok(status)
    }

    /// The last 8 KiB of the agent's stderr, decoded lossily.
    pub fn stderr_tail(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (a, b) = tail.as_slices();
        let mut bytes = Vec::with_capacity(tail.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Asks the agent to stop its turn: a signal goes to its whole process group (in a sandbox,
    /// the agent's group inside it: bubblewrap itself would die of the signal and take the agent
    /// with it before it could end its turn cleanly). Stdin (protocol) interrupts are not
    /// supported yet.
    pub fn interrupt(&self, how: &Interrupt) -> io::Result<()> {
        match how {
            Interrupt::Signal(sig) => {
                let leader = if self.sandboxed {
                    sandbox_group(self.pid).ok_or_else(|| {
                        io::Error::other("the sandboxed agent has not started or already ended")
                    })?
                } else {
                    self.pid
                };
                let pgid = checked_pid(leader)
                    .ok_or_else(|| io::Error::other(format!("invalid pid {leader}")))?;
                // SAFETY: kill(2) has no memory-safety preconditions; `pgid` is > 1, so `-pgid`
                // names exactly the agent's own process group (never ours, never "all").
                let rc = unsafe { libc::kill(-pgid, *sig) };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            Interrupt::Stdin(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "stdin (protocol) interrupts are not supported by the process supervisor yet",
            )),
        }
    }

    /// Kills the agent and every process it started. In a sandbox, killing bubblewrap (and its
    /// namespace init) is enough: the kernel ends every process of the PID namespace with its
    /// init. Unconfined, the agent's descendants (every process of the run: it is their
    /// subreaper) are frozen and killed, then whatever is left in its process group. Never scans
    /// the host's process table; the unconfined walk reads `/proc` and may wait for the killed
    /// to die, so it runs on tokio's blocking pool. Returns how many were signalled.
    pub async fn kill_all(&self) -> usize {
        if !self.sandboxed {
            let pid = self.pid;
            return tokio::task::spawn_blocking(move || {
                let killed = kill_tree(pid);
                kill_group(pid);
                killed
            })
            .await
            .unwrap_or(0);
        }
        let init = children(self.pid);
        std::iter::once(self.pid)
            .chain(init)
            .filter(|&pid| send(pid, libc::SIGKILL))
            .count()
    }

    /// Unconfined: notes the agent's descendants — its whole run, as its subreaper — before it
    /// is asked to stop. An agent that ends its turn on the interrupt leaves its tools to the
    /// host's init, out of reach of a walk from the agent; [`AgentProcess::kill_leftovers`]
    /// kills those noted here that outlived it. Nothing to note in a sandbox. The walk reads
    /// `/proc` (one file per process of the run) on tokio's blocking pool.
    pub async fn note_descendants(&mut self) {
        if self.sandboxed {
            return;
        }
        let pid = self.pid;
        self.noted = tokio::task::spawn_blocking(move || {
            descendants(pid)
                .into_iter()
                .filter_map(|p| Some((p, read_stat(p)?.start)))
                .collect()
        })
        .await
        .unwrap_or_default();
    }

    /// After the agent ended: kills what its run left behind, without scanning the host. In a
    /// sandbox nothing can be left (the PID namespace ended with the agent). Unconfined, the
    /// agent's orphans went to the host's init when it ended: those still in its process group
    /// (background tools, adopted orphans) are killed with one `kill(-pgid)`, and the
    /// descendants noted before a stop ([`AgentProcess::note_descendants`]) that are still the
    /// same processes (same start time) are killed with their own descendants. A process that
    /// left the group and outlived an agent that ended on its own is not found here (the sandbox
    /// is what guarantees nothing outlives a run). Without noted processes this is one system
    /// call and reads no `/proc`. Returns how many were signalled (the group counts once).
    pub async fn kill_leftovers(&self) -> usize {
        if self.sandboxed {
            return 0;
        }
        let group = usize::from(kill_group(self.pid));
        if self.noted.is_empty() {
            return group;
        }
        let noted = self.noted.clone();
        let trees = tokio::task::spawn_blocking(move || {
            let survivors: Vec<u32> = noted
                .into_iter()
                .filter(|&(pid, start)| {
                    read_stat(pid).is_some_and(|s| s.start == start && !s.is_dead())
                })
                .map(|(pid, _)| pid)
                .collect();
            kill_trees(&survivors)
        })
        .await
        .unwrap_or(0);
        group + trees
    }
}

/// SIGKILLs the process group `pgid` (atomically for its members: none can fork out of it
/// meanwhile); true when it had a member. Called with an agent's pid after the agent was
/// reaped: a group id stays taken while the group has a member, and a freed pid does not come
/// back before the allocator wraps around `pid_max`, so this names the run's group or nobody.
pub fn kill_group(pgid: u32) -> bool {
    let Some(p) = checked_pid(pgid) else {
        return false;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; `p` is > 1, so `-p` names exactly one
    // process group (never ours — we are not its leader —, never "all").
    unsafe { libc::kill(-p, libc::SIGKILL) == 0 }
}

/// The process group of the agent inside a sandbox started by bubblewrap `outer`: outer's child
/// is the namespace's init (bubblewrap again), which `--new-session` made a session and group
/// leader, and the agent is its child in that group. Signals to the group reach the agent and its
/// tools; the init, as a namespace init without a handler, is not affected.
fn sandbox_group(outer: u32) -> Option<u32> {
    children(outer).into_iter().next()
}

/// The direct children of `pid`, from `/proc/<pid>/task/<pid>/children` (no scan of the table).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Makes the child of `cmd` receive SIGKILL when the thread that started it ends
/// (`PR_SET_PDEATHSIG`): a helper a process starts (OpenCode's server under the bridge) cannot
/// outlive it, however it ends. Start it from a thread that lives as long as the starter.
pub fn die_with_parent(cmd: &mut tokio::process::Command) -> &mut tokio::process::Command {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    }
}

/// Sets this process's file mode creation mask to 077, so every file and folder it creates from
/// now on (and every process it starts inherits) is private to its user. Returns the old mask.
pub fn set_private_umask() -> u32 {
    // SAFETY: umask(2) cannot fail and touches no memory; it only changes a process attribute.
    unsafe { libc::umask(0o077) }
}

/// Makes `cmd` start in a new session (`setsid`), detached from the caller's process group and
/// session, the way the agent CLIs start their background tools.
pub fn new_session(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    }
}

/// Makes the child of `cmd` receive `sig` when the thread that started it ends
/// (`PR_SET_PDEATHSIG`), so that a helper's child does not outlive the helper killed without a
/// chance to stop it (the Codex bridge's `codex app-server`). Start such a child from a thread
/// that lives as long as the helper (its main thread).
pub fn signal_on_parent_death(cmd: &mut tokio::process::Command, sig: i32) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // getppid(2) and raise(3), which are async-signal-safe; it touches no memory of the parent
    // (`parent` and `sig` are copied into it).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::c_ulong::try_from(sig).unwrap_or(9),
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody would send the signal.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::raise(sig);
            }
            Ok(())
        });
    }
}

/// Sends `sig` to the process `pid` (not a group); true when it was delivered. Refuses pids 0
/// and 1 and this process.
pub fn signal(pid: u32, sig: i32) -> bool {
    send(pid, sig)
}

/// One line of `/proc/<pid>/stat`, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: u32,
    pub state: char,
    pub ppid: u32,
    pub pgrp: i32,
    pub session: i32,
    /// When the process started, in clock ticks after boot: with the pid, it names one process
    /// (a pid can be reused, not together with its start time).
    pub start: u64,
}

impl ProcStat {
    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone (or unreadable).
pub(crate) fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    // Field 22 (starttime); `fields` is at field 7 (tty_nr) now.
    let start = fields.nth(15)?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
        session,
        start,
    })
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|s| !s.is_dead())
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn snapshot() -> Vec<ProcStat> {
    all_pids().into_iter().filter_map(read_stat).collect()
}

/// Every live descendant of `root` in `procs` (excluding root).
fn descendants_in(procs: &[ProcStat], root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<&ProcStat>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        for child in children.get(&pid).into_iter().flatten() {
            if seen.insert(child.pid) {
                queue.push_back(child.pid);
                if !child.is_dead() {
                    out.push(child.pid);
                }
            }
        }
    }
    out
}

/// The direct children of every thread of `pid` (a child is listed under the thread that
/// started it): `/proc/<pid>/task/<tid>/children`.
fn children_of_threads(pid: u32) -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    threads
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .flat_map(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Every descendant of `root` (transitively, through each process's `children` files, so the
/// cost is the size of the tree, not of the host), excluding root. Zombies are excluded. The
/// kernel lists children reliably only while they are stopped: callers that must see every one
/// freeze what they found and look again ([`kill_tree`]).
pub fn descendants(root: u32) -> Vec<u32> {
    if checked_pid(root).is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        for child in children_of_threads(pid) {
            if seen.insert(child) {
                queue.push_back(child);
                if is_alive(child) {
                    out.push(child);
                }
            }
        }
    }
    out
}

/// A pid that is safe to signal: not 0 or 1 (which `kill` treats specially or is init), not us,
/// and representable as `pid_t`.
fn checked_pid(pid: u32) -> Option<libc::pid_t> {
    let p = libc::pid_t::try_from(pid).ok()?;
    (p > 1 && pid != std::process::id()).then_some(p)
}

/// Sends `sig` to one process; true when it was delivered.
fn send(pid: u32, sig: i32) -> bool {
    let Some(p) = checked_pid(pid) else {
        return false;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; `p` is a single positive pid > 1.
    unsafe { libc::kill(p, sig) == 0 }
}

/// Freezes (SIGSTOP) everything `scan` reports that is not frozen yet, rescanning until a scan
/// finds nothing new (a frozen process cannot fork any more). Returns the frozen pids.
fn freeze(seen: &mut HashSet<u32>, mut scan: impl FnMut() -> Vec<u32>) -> Vec<u32> {
    let mut frozen = Vec::new();
    for _ in 0..MAX_FREEZE_ROUNDS {
        let fresh: Vec<u32> = scan().into_iter().filter(|p| seen.insert(*p)).collect();
        if fresh.is_empty() {
            break;
        }
        frozen.extend(fresh.into_iter().filter(|&pid| send(pid, libc::SIGSTOP)));
    }
    frozen
}

/// Freezes (SIGSTOP) then SIGKILLs `root` and all its descendants, rescanning until no new
/// process appears. Returns how many processes were signalled.
///
/// `root` must be a child that has not been reaped yet (its pid cannot have been reused). Killed
/// descendants that became our children (when this process is a child subreaper) are reaped;
/// `root` itself is left to its owner (tokio).
pub fn kill_tree(root: u32) -> usize {
    kill_trees(&[root])
}

/// [`kill_tree`] of several roots at once (frozen together, so none can start a process
/// another has not been frozen for). Roots that are not safe to signal are skipped.
fn kill_trees(roots: &[u32]) -> usize {
    let roots: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|&r| checked_pid(r).is_some())
        .collect();
    if roots.is_empty() {
        return 0;
    }
    let mut seen = HashSet::new();
    let frozen = freeze(&mut seen, || {
        let mut pids = roots.clone();
        for &root in &roots {
            pids.extend(descendants(root));
        }
        pids
    });
    for &pid in &frozen {
        send(pid, libc::SIGKILL);
    }
    reap_our_zombies(
        frozen
            .iter()
            .copied()
            .filter(|p| !roots.contains(p))
            .collect(),
    );
    frozen.len()
}

/// Sends `sig` (e.g. SIGTERM) to `root` and every descendant, without freezing. Returns how many
/// processes it was delivered to.
pub fn signal_tree(root: u32, sig: i32) -> usize {
    if checked_pid(root).is_none() {
        return 0;
    }
    std::iter::once(root)
        .chain(descendants(root))
        .filter(|&pid| send(pid, sig))
        .count()
}

/// Pids (not zombies) whose `/proc/<pid>/environ` contains exactly `NAME=value` as one entry:
/// every process of a run, including orphans re-parented after their parent died. Unreadable
/// entries and this process are skipped.
pub fn marked_processes(name: &str, value: &str) -> Vec<u32> {
    let needle = format!("{name}={value}");
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == needle.as_bytes()))
        })
        .filter(|&pid| is_alive(pid))
        .collect()
}

/// Pids (not zombies, not this process) whose working directory is `dir` or inside it, read
/// from `/proc/<pid>/cwd`: who could still be writing in a worktree. Processes whose cwd cannot
/// be read (another user's) are skipped. Scans every process: call it only when needed.
pub fn processes_in(dir: &std::path::Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
        })
        .filter(|&pid| is_alive(pid))
        .collect()
}

/// SIGKILLs every marked process and every descendant of one (a tool may clear its environment),
/// freezing them first (SIGSTOP) and rescanning until no new one appears or 20 rounds passed.
/// Returns how many processes were killed. Nothing is reaped here: a marked process may be a
/// tokio child that its owner still waits for.
pub fn kill_marked(name: &str, value: &str) -> usize {
    let mut seen = HashSet::new();
    let mut killed = 0;
    for _ in 0..20 {
        let frozen = freeze(&mut seen, || {
            let procs = snapshot();
            let mut pids = marked_processes(name, value);
            let roots = pids.clone();
            for root in roots {
                pids.extend(descendants_in(&procs, root));
            }
            pids
        });
        if frozen.is_empty() {
            break;
        }
        killed += frozen
            .into_iter()
            .filter(|&pid| send(pid, libc::SIGKILL))
            .count();
    }
    killed
}

/// Reaps the killed `pids` that ended up as zombie children of this process (orphans re-parented
/// to us when we are a child subreaper). Only specific pids are waited for, never `-1`, because
/// tokio owns our other children. Bounded: a process stuck in the kernel is left behind.
fn reap_our_zombies(mut pending: Vec<u32>) {
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_millis(500);
    while !pending.is_empty() {
        pending.retain(|&pid| match read_stat(pid) {
            None => false,
            Some(stat) if stat.is_dead() => {
                if stat.ppid == me
                    && let Some(p) = checked_pid(pid)
                {
                    let mut status = 0;
                    // SAFETY: waitpid(2) on one specific pid with WNOHANG; `status` is a valid,
                    // writable c_int. ECHILD (not our child after all) is ignored.
                    unsafe { libc::waitpid(p, &mut status, libc::WNOHANG) };
                }
                false
            }
            // SIGKILL is delivered but the process has not finished dying yet.
            Some(_) => true,
        });
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `program --version` from exactly `env` (nothing inherited; a bare program name is looked
/// up on `env`'s `PATH`, as for an agent) in `cwd`, in its own process group, and returns the
/// first line it printed. Fails with why it could not start, why its answer is not a version
/// (a failed exit, no output), or that it gave none within `limit` (then it is killed).
pub async fn version_of(
    program: &std::path::Path,
    env: &[(String, String)],
    cwd: &std::path::Path,
    limit: Duration,
) -> Result<String, String> {
    let child = tokio::process::Command::new(program)
        .arg("--version")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    // On a timeout the dropped child is killed.
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Err(_) => {
            return Err(format!(
                "`--version` gave no answer within {} s",
                limit.as_secs()
            ));
        }
        Ok(output) => output.map_err(|e| e.to_string())?,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().map(str::trim).find(|l| !l.is_empty());
    match (output.status.success(), first) {
        (true, Some(line)) => Ok(line.chars().take(200).collect()),
        (true, None) => Err("`--version` printed nothing".into()),
        (false, _) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: String = stderr.trim().chars().take(300).collect();
            Err(format!("`--version` failed ({}): {tail}", output.status))
        }
    }
}

pub mod output;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sandboxed_tests;

/// `spec` started inside `sandbox`: bubblewrap is the program, the original program and its
/// arguments follow the sandbox's own (and the program's folder is mounted read-only).
/// Environment, stdin and working directory stay.
fn wrap(sandbox: &Sandbox, spec: &ProcessSpec, mounts: &Mounts) -> ProcessSpec {
    let mut mounts = mounts.clone();
    mounts.add_program(&spec.program);
    let mut args = sandbox.args(&mounts, &spec.cwd);
    args.push(spec.program.clone().into());
    args.extend(spec.args.iter().cloned());
    ProcessSpec {
        program: sandbox.program().to_path_buf(),
        args,
        cwd: spec.cwd.clone(),
        env: spec.env.clone(),
        stdin: spec.stdin.clone(),
        stdin_open: spec.stdin_open,
    }
}
