//! One supervising task per run turn. It owns the child process outright and `select!`s over
//! its output lines, its exit, a stop request, the stall window and the stage deadline. Output
//! is decoded, persisted in batches, then broadcast. When the process is gone (and what its run
//! left behind with it: nothing in a sandbox, the agent's process group unconfined), the outcome
//! and the next decision commit in one transaction. Nothing here scans the host's processes.

use crate::error::EngineError;
use crate::guards;
use crate::inner::{Inner, StopCause};
use crate::transition::{Applied, after_commit, apply_in};
use domain::{Event, RunId, RunOutcome, Stage, TaskId, TranscriptEvent};
use harness::Harness;
use harness::process::AgentProcess;
use harness::process::output::AgentOutput;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Events persisted per transaction at most.
const BATCH: usize = 2048;
/// How long to wait for the output pipe to close once the agent and its processes are gone.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

pub(crate) struct Turn {
    pub run: RunId,
    pub task: TaskId,
    pub stage: Stage,
    pub harness: Arc<dyn Harness>,
    pub process: AgentProcess,
    pub stop: tokio::sync::watch::Receiver<Option<StopCause>>,
    pub timeout: Duration,
    /// The same tool call this many times in a row interrupts the run (`Looping`).
    pub repeat_limit: u32,
    /// A long-lived session (one process for every turn, `crate::session`): the run's signal
    /// token, kept for its next turns. `None` for a one-shot process.
    pub token: Option<String>,
}

/// Why the loop ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Abort {
    User,
    Shutdown,
    Stalled(String),
    Failed(String),
    /// The agent repeated one tool call (the detail says which and how often).
    Looping(String),
}

/// Persists and broadcasts a run's events, assigning per-run sequence numbers.
pub(crate) struct Transcript {
    run: RunId,
    task: TaskId,
    stage: Stage,
    next_seq: i64,
    pending: Vec<(i64, TranscriptEvent)>,
    /// (ok, error, retryable) of the turn's end, once the harness reported it.
    turn_end: Option<(bool, Option<String>, bool)>,
    /// Repeated tool calls, watched for the repetition guard.
    repeats: guards::Repeats,
    /// Set once the agent repeated a tool call as often as the limit allows: why.
    looping: Option<String>,
}

impl Transcript {
    pub(crate) fn push(&mut self, event: TranscriptEvent) {
        if let Some(detail) = self.repeats.see(&event)
            && self.looping.is_none()
        {
            self.looping = Some(detail);
        }
        if let TranscriptEvent::TurnEnd {
            ok,
            error,
            retryable,
        } = &event
        {
            self.turn_end = Some((*ok, error.clone(), *retryable));
        }
        self.pending.push((self.next_seq, event));
        self.next_seq += 1;
    }

    /// The process goes on serving another run (a long-lived process handed to its nudge run):
    /// what it writes from now on belongs to `run`.
    pub(crate) fn switch_run(&mut self, inner: &Inner, run: RunId) {
        self.flush(inner);
        self.run = run;
        self.next_seq = inner.store.read(|tx| tx.last_seq(run)).unwrap_or(0) + 1;
        self.turn_end = None;
        self.repeats = guards::Repeats::new(self.repeats.limit());
        self.looping = None;
    }

    pub(crate) fn flush(&mut self, inner: &Inner) {
        // One writer for every run's events (`ingest`): batched across runs, committed before
        // anything the supervisor stores after this call.
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        crate::ingest::persist(inner, self.task, self.run, self.stage, batch);
    }
}

pub(crate) async fn supervise(inner: Arc<Inner>, mut turn: Turn) {
    let next_seq = inner.store.read(|tx| tx.last_seq(turn.run)).unwrap_or(0) + 1;
    let mut transcript = Transcript {
        run: turn.run,
        task: turn.task,
        stage: turn.stage,
        next_seq,
        pending: Vec::new(),
        turn_end: None,
        repeats: guards::Repeats::new(turn.repeat_limit),
        looping: None,
    };
    transcript.push(TranscriptEvent::Status {
        text: format!("{} agent started ({})", turn.stage, turn.harness.name()),
    });
    let mut decoder = turn.harness.decoder();
    let stdout = turn.process.take_stdout();
    // Read with few wake-ups: a chatty agent's pipe is read every few ms (`AgentOutput`).
    let mut lines = stdout.and_then(|out| {
        AgentOutput::new(out)
            .inspect_err(|err| tracing::error!(run = %turn.run, error = %err, "cannot read the agent's output"))
            .ok()
    });
    let stall_window = inner.config.stall_window;
    let mut last_output = Instant::now();
    // Timers are created once and re-armed lazily: a busy agent costs no timer churn per line.
    let stall = tokio::time::sleep(stall_window);
    let deadline = tokio::time::sleep(turn.timeout);
    let kill = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(stall, deadline, kill);
    let mut killing = false;
    let mut abort: Option<Abort> = None;
    let exit = loop {
        tokio::select! {
            // The timers come before the output: an agent flooding its pipe cannot keep a
            // stop, a stall or the deadline from being acted on.
            biased;
            status = turn.process.wait() => break status,
            changed = turn.stop.changed(), if abort.is_none() => {
                let cause = if changed.is_ok() { *turn.stop.borrow() } else { None };
                let cause = match cause {
                    Some(StopCause::User) => Abort::User,
                    Some(StopCause::Shutdown) | None => Abort::Shutdown,
                };
                kill.as_mut().reset(begin_stop(&inner, &mut turn, cause == Abort::Shutdown).await);
                killing = true;
                abort = Some(cause);
            }
            () = &mut kill, if killing => {
                // Unconfined, the walk of the agent's tree runs on the blocking pool; the agent's
                // exit is observed by the next turn of the loop.
                turn.process.kill_all().await;
                killing = false;
            }
            () = &mut stall, if abort.is_none() => {
                let due = last_output + stall_window;
                if due > Instant::now() {
                    stall.as_mut().reset(due);
                } else {
                    let secs = stall_window.as_secs_f64();
                    abort = Some(Abort::Stalled(format!(
                        "stalled: the agent emitted nothing for {secs:.1} s (the stall window); it was interrupted and stopped"
                    )));
                    kill.as_mut().reset(begin_stop(&inner, &mut turn, false).await);
                    killing = true;
                }
            }
            () = &mut deadline, if abort.is_none() => {
                let secs = turn.timeout.as_secs_f64();
                abort = Some(Abort::Failed(format!(
                    "timed out: the {} stage ran longer than {secs:.0} s", turn.stage
                )));
                kill.as_mut().reset(begin_stop(&inner, &mut turn, false).await);
                killing = true;
            }
            line = next_line(&mut lines) => match line {
                Some(line) => {
                    last_output = Instant::now();
                    for event in decoder.line(&line) {
                        transcript.push(event);
                    }
                    if transcript.pending.len() >= BATCH {
                        transcript.flush(&inner);
                    }
                    if let (Some(detail), None) = (&transcript.looping, &abort) {
                        tracing::info!(run = %turn.run, %detail, "agent is looping: interrupting it");
                        abort = Some(Abort::Looping(detail.clone()));
                        kill.as_mut().reset(begin_stop(&inner, &mut turn, false).await);
                        killing = true;
                    }
                    // A long-lived process ended a turn: it waits for an answer or is let go.
                    if let (Some((ok, _, _)), None, true) =
                        (transcript.turn_end.clone(), &abort, turn.process.is_open_for_input())
                    {
                        match crate::session::between_turns(&inner, &mut turn, ok, &mut transcript).await {
                            crate::session::Next::Continue => {
                                transcript.turn_end = None;
                                last_output = Instant::now();
                                stall.as_mut().reset(last_output + stall_window);
                                deadline.as_mut().reset(Instant::now() + turn.timeout);
                            }
                            crate::session::Next::Close => {}
                            crate::session::Next::Gone => return,
                        }
                    }
                }
                None => lines = None,
            },
            () = std::future::ready(()), if !transcript.pending.is_empty() => transcript.flush(&inner),
        }
    };
    let exited_us = store::now_us();
    // No process of a finished run may survive it. In a sandbox the kernel already ended them
    // with the PID namespace; unconfined, what is left in the agent's process group is killed
    // (one system call). The host's process table is not scanned after a run: that cost grew
    // with the machine, not with the work (the mark scan is for startup recovery only).
    turn.process.kill_leftovers().await;
    drain(&mut lines, decoder.as_mut(), &mut transcript).await;
    if abort == Some(Abort::Shutdown) {
        // Left `running` on purpose: startup recovery restarts it like after a crash.
        transcript.flush(&inner);
        inner.live().remove(&turn.run);
        return;
    }
    let outcome = match abort {
        Some(Abort::User) => RunOutcome::Stopped,
        Some(Abort::Failed(reason)) => RunOutcome::Failed { reason },
        // How many stalls came before is read from the store by `finish`.
        Some(Abort::Stalled(reason)) => RunOutcome::Stalled {
            reason,
            earlier_stalls: 0,
        },
        // How many looping runs came before is read from the store by `finish`.
        Some(Abort::Looping(detail)) => RunOutcome::Looping { detail, earlier: 0 },
        // Repetition found in what was drained after the agent ended on its own.
        None if transcript.looping.is_some() => RunOutcome::Looping {
            detail: transcript.looping.clone().unwrap_or_default(),
            earlier: 0,
        },
        Some(Abort::Shutdown) | None => {
            let exit = exit.map_err(|e| e.to_string());
            judge(
                &transcript.turn_end,
                exit,
                decoder.unreadable_lines(),
                &turn.process.stderr_tail(),
            )
        }
    };
    // The guards judge what the run did before its end is recorded.
    let outcome = guards::judge(&inner, turn.run, outcome).await;
    transcript.push(TranscriptEvent::Status {
        text: describe(&outcome),
    });
    transcript.flush(&inner);
    inner.live().remove(&turn.run);
    finish_durably(&inner, turn.run, outcome, Some(exited_us)).await;
}

async fn next_line(lines: &mut Option<AgentOutput>) -> Option<String> {
    match lines {
        Some(lines) => lines.next_line().await,
        None => std::future::pending().await,
    }
}

/// Reads what is left in the pipe after the agent exited.
async fn drain(
    lines: &mut Option<AgentOutput>,
    decoder: &mut dyn harness::Decoder,
    transcript: &mut Transcript,
) {
    let Some(reader) = lines.as_mut() else { return };
    // The agent is gone: what is left is read as it comes, not at the next paced tick.
    reader.read_at_once();
    let limit = Instant::now() + DRAIN_LIMIT;
    // The limit is checked before each line too: a line always ready would win the timeout.
    while Instant::now() < limit
        && let Ok(Some(line)) = tokio::time::timeout_at(limit, reader.next_line()).await
    {
        for event in decoder.line(&line) {
            transcript.push(event);
        }
    }
}

/// Interrupts the agent gracefully; returns when to kill its whole tree.
/// Unconfined, the agent's tree is noted first: an agent that ends its turn on the interrupt
/// leaves its tools to the host's init, and only what was noted can be found after it.
async fn begin_stop(inner: &Inner, turn: &mut Turn, immediately: bool) -> Instant {
    turn.process.note_descendants().await;
    if let Err(err) = turn.process.interrupt(&turn.harness.interrupt()) {
        tracing::debug!(run = %turn.run, error = %err, "graceful interrupt unavailable");
    }
    let grace = if immediately {
        Duration::ZERO
    } else {
        inner.config.stop_grace
    };
    Instant::now() + grace
}

/// How a turn that ran to its end went.
fn judge(
    turn_end: &Option<(bool, Option<String>, bool)>,
    exit: Result<std::process::ExitStatus, String>,
    unreadable: u64,
    stderr: &str,
) -> RunOutcome {
    let garbage = if unreadable > 0 {
        format!("; {unreadable} output line(s) were unreadable (see the transcript)")
    } else {
        String::new()
    };
    let stderr_tail = {
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr: {tail}")
        }
    };
    match (turn_end, exit) {
        (Some((true, _, _)), _) => RunOutcome::Ended { signal: None },
        // Retry time and attempt are set by `finish`, from the store.
        (Some((false, error, true)), _) => RunOutcome::InfraFailed {
            reason: error
                .clone()
                .unwrap_or_else(|| "infrastructure failure".into()),
            retry_at: 0,
            attempt: 0,
        },
        (Some((false, error, false)), _) => RunOutcome::Failed {
            reason: format!(
                "the agent ended its turn with an error: {}{garbage}",
                error.as_deref().unwrap_or("no detail given")
            ),
        },
        (None, Err(err)) => RunOutcome::Failed {
            reason: format!("lost the agent process: {err}"),
        },
        (None, Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            if let Some((line, transient)) = sandbox_failure(stderr) {
                let reason = format!("the sandbox could not start the agent: {line}");
                return if transient {
                    RunOutcome::InfraFailed {
                        reason,
                        retry_at: 0,
                        attempt: 0,
                    }
                } else {
                    RunOutcome::Failed { reason }
                };
            }
            let how = match (status.code(), status.signal()) {
                (Some(0), _) => "exited without ending its turn".to_string(),
                (Some(code), _) => format!("crashed (exit code {code}) before ending its turn"),
                (None, Some(sig)) => format!("was killed by signal {sig} before ending its turn"),
                (None, None) => "ended abnormally".to_string(),
            };
            let reason = format!("the agent {how}{garbage}{stderr_tail}");
            // The CLI's own state store was busy (another process of the task's agents — e.g. a
            // warm standby OpenCode booting beside a running one — held its SQLite lock): a
            // transient failure, retried like an unreachable endpoint.
            if stderr.contains("database is locked") {
                return RunOutcome::InfraFailed {
                    reason,
                    retry_at: 0,
                    attempt: 0,
                };
            }
            RunOutcome::Failed { reason }
        }
    }
}

/// Bubblewrap's own error when the sandbox could not be set up (the agent never ran: its whole
/// stderr is that one `bwrap: …` line), and whether it is transient: the kernel refusing a new
/// namespace or process for want of resources (`user.max_user_namespaces` reached, a full PID
/// table, memory) passes, so the run is retried; anything else (a mount source gone, a
/// permission) stays until someone changes it, so the run fails, saying so.
fn sandbox_failure(stderr: &str) -> Option<(&str, bool)> {
    let line = stderr.trim();
    if !line.starts_with("bwrap: ") || line.contains('\n') {
        return None;
    }
    const TRANSIENT: [&str; 3] = [
        "No space left on device",
        "Resource temporarily unavailable",
        "Cannot allocate memory",
    ];
    Some((line, TRANSIENT.iter().any(|t| line.contains(t))))
}

pub(crate) fn describe(outcome: &RunOutcome) -> String {
    match outcome {
        RunOutcome::Ended { .. } => "run ended".into(),
        RunOutcome::Failed { reason } => format!("run failed: {reason}"),
        RunOutcome::InfraFailed { reason, .. } => {
            format!("run failed on infrastructure: {reason}; it will be retried")
        }
        RunOutcome::Stalled { reason, .. } => format!("run stalled: {reason}"),
        RunOutcome::Stopped => "run stopped by a user".into(),
        RunOutcome::Interrupted => "run interrupted".into(),
        RunOutcome::NoProgress { detail, .. } => format!("run ended without progress: {detail}"),
        RunOutcome::Looping { detail, .. } => format!("run interrupted for looping: {detail}"),
        RunOutcome::Unreviewed { detail, .. } => {
            format!("run ended with unreviewed commits: {detail}; the task goes back to review")
        }
    }
}

/// [`finish`], retried with backoff while the store refuses (busy, I/O): a run whose end is
/// not recorded would hold its task and its slot until the next restart.
pub(crate) async fn finish_durably(
    inner: &Inner,
    run: RunId,
    outcome: RunOutcome,
    exited_us: Option<i64>,
) {
    let mut wait = Duration::from_millis(100);
    for _ in 0..10 {
        if finish(inner, run, outcome.clone(), exited_us) {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
    tracing::error!(%run, "gave up recording the end of the run; a restart recovers it");
}

/// Records the run's outcome and applies it to the task, in one transaction; then chains.
/// Returns false when nothing could be recorded.
pub(crate) fn finish(
    inner: &Inner,
    run: RunId,
    outcome: RunOutcome,
    exited_us: Option<i64>,
) -> bool {
    let result = inner.store.write(|tx| {
        let row = tx
            .run(run)?
            .ok_or_else(|| EngineError::Internal(format!("run {run} vanished")))?;
        // The signal the agent sent during the run decides where the task goes.
        let outcome = match outcome {
            RunOutcome::Ended { .. } => RunOutcome::Ended {
                signal: row.signal.clone(),
            },
            RunOutcome::Stalled { reason, .. } => {
                let earlier_stalls = tx.consecutive_stalls(row.task_id)?;
                tx.mark_run_stalled(run)?;
                RunOutcome::Stalled {
                    reason,
                    earlier_stalls,
                }
            }
            RunOutcome::InfraFailed { reason, .. } => {
                // Exponential backoff over consecutive infrastructure failures of the task.
                let attempt = tx.consecutive_infra_failures(row.task_id)? + 1;
                let backoff = inner
                    .config
                    .retry_base
                    .saturating_mul(1u32 << (attempt - 1).min(16))
                    .min(inner.config.retry_cap);
                tx.mark_run_infra(run)?;
                RunOutcome::InfraFailed {
                    reason,
                    retry_at: store::now_ms() + backoff.as_millis() as i64,
                    attempt,
                }
            }
            RunOutcome::Looping { detail, .. } => {
                let earlier = tx.consecutive_looping(row.task_id)?;
                tx.mark_run_looping(run)?;
                RunOutcome::Looping { detail, earlier }
            }
            RunOutcome::NoProgress { detail, .. } => {
                let earlier = tx.consecutive_no_progress(row.task_id)?;
                tx.mark_run_no_progress(run)?;
                RunOutcome::NoProgress { detail, earlier }
            }
            other => other,
        };
        let reason = match &outcome {
            RunOutcome::Failed { reason }
            | RunOutcome::InfraFailed { reason, .. }
            | RunOutcome::Stalled { reason, .. }
            | RunOutcome::Looping { detail: reason, .. } => Some(reason.as_str()),
            RunOutcome::Stopped => Some("stopped by a user"),
            RunOutcome::Interrupted => Some("the server stopped while this run was live"),
            RunOutcome::Ended { .. }
            | RunOutcome::NoProgress { .. }
            | RunOutcome::Unreviewed { .. } => None,
        };
        let status = outcome.run_status();
        let reason = reason.map(str::to_string);
        let task = tx
            .task(row.task_id)?
            .ok_or_else(|| EngineError::Internal("task vanished".into()))?;
        // Decide while the run still counts as the task's live run, then record its end.
        let (_, applied) = apply_in(tx, &task, &Event::RunFinished { run, outcome })?;
        tx.finish_run(run, status, reason.as_deref(), exited_us)?;
        Ok::<Applied, EngineError>(applied)
    });
    match result {
        Ok(mut applied) => {
            // A slot was freed even when nothing new was queued.
            applied.merge(Applied {
                queued: true,
                ..Applied::default()
            });
            after_commit(inner, applied);
            true
        }
        Err(err) => {
            tracing::error!(%run, error = %err, "cannot record the end of a run");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::judge;
    use domain::RunOutcome;
    use std::os::unix::process::ExitStatusExt;

    /// An agent that exited with code 1 without ending its turn.
    fn crashed() -> Result<std::process::ExitStatus, String> {
        Ok(std::process::ExitStatus::from_raw(1 << 8))
    }

    /// A crash is a failure, except one on the CLI's own busy state store, which is retried.
    #[test]
    fn a_crash_on_a_locked_database_is_retried_other_crashes_fail() {
        let locked = judge(
            &None,
            crashed(),
            0,
            "Error: Unexpected error\n\ndatabase is locked",
        );
        assert!(
            matches!(&locked, RunOutcome::InfraFailed { reason, .. } if reason.contains("crashed (exit code 1)")),
            "{locked:?}"
        );
        let other = judge(&None, crashed(), 0, "Error: out of memory");
        assert!(matches!(other, RunOutcome::Failed { .. }), "{other:?}");
    }

    /// Bubblewrap failing to set the sandbox up: retried when the kernel was short of
    /// namespaces or processes, a plain failure naming the sandbox otherwise; a line that only
    /// looks like one among the agent's own output is the agent's crash.
    #[test]
    fn a_sandbox_that_could_not_start_is_told_and_retried_when_transient() {
        let full = judge(
            &None,
            crashed(),
            0,
            "bwrap: Creating new namespace failed: No space left on device\n",
        );
        assert!(
            matches!(&full, RunOutcome::InfraFailed { reason, .. }
                if reason == "the sandbox could not start the agent: bwrap: Creating new namespace failed: No space left on device"),
            "{full:?}"
        );
        let again = judge(
            &None,
            crashed(),
            0,
            "bwrap: clone3: Resource temporarily unavailable",
        );
        assert!(matches!(again, RunOutcome::InfraFailed { .. }), "{again:?}");
        let gone = judge(
            &None,
            crashed(),
            0,
            "bwrap: Can't find source path /srv/cache: No such file or directory",
        );
        assert!(
            matches!(&gone, RunOutcome::Failed { reason }
                if reason == "the sandbox could not start the agent: bwrap: Can't find source path /srv/cache: No such file or directory"),
            "{gone:?}"
        );
        let agent = judge(
            &None,
            crashed(),
            0,
            "starting\nbwrap: Creating new namespace failed: No space left on device",
        );
        assert!(
            matches!(&agent, RunOutcome::Failed { reason } if reason.starts_with("the agent crashed")),
            "{agent:?}"
        );
    }
}
