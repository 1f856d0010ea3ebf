//! Long-lived sessions: one agent process for every turn of a run (a role's `session =
//! "long-lived"`: Claude Code's `--input-format stream-json`, Codex's `codex app-server` behind
//! the `atelier codex-bridge`, OpenCode's `opencode serve` behind the `atelier opencode-bridge`).
//!
//! The run's first process gets the prompt as its first stdin line and keeps stdin open. When a
//! turn ends, the supervisor asks [`between_turns`] what comes next:
//!
//! - the agent asked a question (its run's signal) and the turn went well: the run is recorded
//!   `needs_input` exactly like a one-shot run that ended, but the process stays alive,
//!   *parked*: [`Parked`] waits in [`crate::inner::Inner::parked`] for the answer. The dispatcher
//!   takes it when the answered run starts again (same token, so the agent's `atelier signal`
//!   keeps working) and hands over the answer and the new stop handle; the answer is written to
//!   the same process's stdin and the supervisor goes on with the next turn;
//! - anything else: stdin is closed, the CLI exits and the run ends as always.
//!
//! - the turn went well without a question, but the guards found no progress (an implementer
//!   that committed nothing and checked nothing): the pipeline may nudge it, so the process is
//!   kept while the run's end is recorded. If a nudge run was queued (it continues this run's
//!   session), the process waits for it like for an answer ([`Inner::nudges`]): the dispatcher
//!   hands it the nudge run (which takes over the process's token and mark) and the nudge is
//!   written to the same process's stdin. If the task was blocked instead, the process is ended.
//!   Only this outcome keeps a process past its run's end; every other run ends with its process
//!   gone first;
//!
//! A parked process ends without a new turn when the run is stopped (its parked entry is
//! dropped: the process and everything it started are killed), when the server shuts down, when
//! it waits longer than the role's stage timeout (stdin closed; a later answer starts a new
//! process resuming the session, as after a restart) or when it dies by itself. In the last two
//! cases nothing is recorded: the run stays `needs_input`, and its answer goes to a new process
//! (`--resume`), which is also the fallback whenever no parked process is found.

use crate::inner::{Inner, StopCause};
use crate::supervisor::{Transcript, Turn, finish_durably};
use domain::{RunId, RunOutcome, RunStatus, Signal, Stage, TranscriptEvent};
use std::time::Duration;
use store::RunRow;
use tokio::sync::{oneshot, watch};

/// A long-lived process kept after its run ended, for the nudge run that continues its session.
pub(crate) struct NudgeWait {
    pub stage: Stage,
    pub session: String,
    pub parked: Parked,
}

/// The parked process a starting `run` takes: the one waiting for this run's answer, or the one
/// kept for this nudge run (same task, stage and session, with its input pending).
pub(crate) fn take_parked(inner: &Inner, run: &RunRow) -> Option<Parked> {
    if let Some(parked) = inner.parked().remove(&run.id) {
        return Some(parked);
    }
    let (Some(_), Some(session)) = (&run.pending_input, &run.session) else {
        return None;
    };
    let mut nudges = inner.nudges();
    let fits = nudges
        .get(&run.task_id)
        .is_some_and(|w| w.stage == run.stage && &w.session == session);
    fits.then(|| nudges.remove(&run.task_id))
        .flatten()
        .map(|w| w.parked)
}

/// A run waiting for its answer with its process alive.
pub(crate) struct Parked {
    /// The run's signal token (the process's `ATELIER_RUN_TOKEN`), reused by the next turn.
    pub token: String,
    /// The run's mark (the process's `ATELIER_RUN_MARK`): a nudge run that takes the process
    /// takes its mark too, so recovery after a crash finds the process.
    pub mark: String,
    /// Hands the next turn to the parked supervisor; dropping it ends the process.
    pub resume: oneshot::Sender<Resume>,
}

/// The next turn of a parked run, from the dispatcher.
pub(crate) struct Resume {
    /// The run whose turn it is: the parked run itself (an answer) or a nudge run.
    pub run: RunId,
    /// What to write to the agent's stdin (the harness's encoding of the answer).
    pub input: Vec<u8>,
    /// The stop handle of the new turn (its live entry holds the sender).
    pub stop: watch::Receiver<Option<StopCause>>,
}

/// What the supervisor does after a long-lived turn ended.
pub(crate) enum Next {
    /// The answer was written: decode the next turn of the same process.
    Continue,
    /// The run ends: stdin was closed, wait for the process to exit as usual.
    Close,
    /// The process is gone and the run already recorded (parked, then stopped or let go).
    Gone,
}

/// Decides, after a turn of a long-lived process ended (`ok`), whether the process waits for an
/// answer or a nudge (and then waits), or is let go.
pub(crate) async fn between_turns(
    inner: &Inner,
    turn: &mut Turn,
    ok: bool,
    transcript: &mut Transcript,
) -> Next {
    let row = inner.store.read(|tx| tx.run(turn.run)).ok().flatten();
    let (Some(token), Some(row), true) = (turn.token.clone(), row, ok) else {
        turn.process.close_input();
        return Next::Close;
    };
    if matches!(row.signal, Some(Signal::Question { .. })) {
        return wait_for_answer(inner, turn, transcript, token, row.mark).await;
    }
    // The guards look at what the turn did; only an implement run without progress is nudged.
    if turn.stage != Stage::Implement {
        turn.process.close_input();
        return Next::Close;
    }
    let judged = crate::guards::judge(inner, turn.run, RunOutcome::Ended { signal: None }).await;
    match (&judged, row.session) {
        (RunOutcome::NoProgress { .. }, Some(session)) => {
            wait_for_nudge(inner, turn, transcript, judged, session, token, row.mark).await
        }
        _ => {
            turn.process.close_input();
            Next::Close
        }
    }
}

async fn wait_for_answer(
    inner: &Inner,
    turn: &mut Turn,
    transcript: &mut Transcript,
    token: String,
    mark: String,
) -> Next {
    let (resume_tx, resume_rx) = oneshot::channel();
    // Registered before the run is recorded `needs_input`: an answer can only come after that.
    inner.parked().insert(
        turn.run,
        Parked {
            token,
            mark,
            resume: resume_tx,
        },
    );
    transcript.push(TranscriptEvent::Status {
        text: "run waits for an answer; the agent's process stays alive (long-lived session)"
            .into(),
    });
    transcript.flush(inner);
    inner.live().remove(&turn.run);
    finish_durably(inner, turn.run, RunOutcome::Ended { signal: None }, None).await;
    let parked_run = turn.run;
    let gone = move |inner: &Inner| inner.parked().remove(&parked_run).is_some();
    wait(inner, turn, transcript, resume_rx, None, gone).await
}

/// Records the end of a run without progress with its process alive; if the pipeline queued a
/// nudge continuing its session, the process waits for it.
async fn wait_for_nudge(
    inner: &Inner,
    turn: &mut Turn,
    transcript: &mut Transcript,
    judged: RunOutcome,
    session: String,
    token: String,
    mark: String,
) -> Next {
    let (resume_tx, mut resume_rx) = oneshot::channel();
    // Registered before the run's end is recorded: the nudge run can start at once after that.
    inner.nudges().insert(
        turn.task,
        NudgeWait {
            stage: turn.stage,
            session: session.clone(),
            parked: Parked {
                token,
                mark: mark.clone(),
                resume: resume_tx,
            },
        },
    );
    transcript.push(TranscriptEvent::Status {
        text: crate::supervisor::describe(&judged),
    });
    transcript.flush(inner);
    inner.live().remove(&turn.run);
    let ended = turn.run;
    finish_durably(inner, ended, judged, Some(store::now_us())).await;
    let nudge = inner
        .store
        .read(|tx| tx.runs_of_task(turn.task))
        .ok()
        .and_then(|runs| runs.into_iter().last())
        .filter(|r| {
            r.id > ended && r.stage == turn.stage && r.session.as_deref() == Some(&session)
        });
    let task = turn.task;
    let gone = move |inner: &Inner| inner.nudges().remove(&task).is_some();
    let Some(nudge) = nudge else {
        // No nudge (the task was blocked): nothing of the run may outlive it — unless the
        // dispatcher took the process for the nudge run meanwhile (the read above failed).
        let _ = gone(inner);
        resume_rx.close();
        if let Ok(resume) = resume_rx.try_recv() {
            return take_turn(inner, turn, transcript, resume, true);
        }
        end(turn).await;
        return Next::Gone;
    };
    // The queued nudge run holds the process's mark: recovery after a crash finds the process
    // by it (unconfined; a sandbox ends with the server anyway).
    if nudge.mark != mark {
        let _ = inner.store.write(|tx| tx.set_run_mark(nudge.id, &mark));
    }
    tracing::debug!(run = %ended, nudge = %nudge.id, "a long-lived agent waits for its nudge");
    wait(inner, turn, transcript, resume_rx, Some(nudge.id), gone).await
}

/// Waits with the process alive for the next turn (`resume`), until the run is stopped, the
/// process dies, the server shuts down, or the stage timeout passes. `nudge`: the queued run
/// the process waits for, watched so that a nudge run stopped before it started lets the process
/// go. `gone` forgets the parked entry (false: the dispatcher took it, the resume is coming).
async fn wait(
    inner: &Inner,
    turn: &mut Turn,
    transcript: &mut Transcript,
    resume_rx: oneshot::Receiver<Resume>,
    nudge: Option<RunId>,
    gone: impl Fn(&Inner) -> bool,
) -> Next {
    let limit = tokio::time::sleep(turn.timeout);
    tokio::pin!(limit);
    let mut resume_rx = resume_rx;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let nudging = nudge.is_some();
    let letting_go = loop {
        tokio::select! {
            biased;
            resumed = &mut resume_rx => return match resumed {
                Ok(resume) => take_turn(inner, turn, transcript, resume, nudging),
                // Stopped (or the run left `needs_input` another way): nothing may survive it.
                Err(_) => {
                    end(turn).await;
                    Next::Gone
                }
            },
            _ = turn.process.wait() => break None,
            () = inner.shutdown.cancelled() => break None,
            () = &mut limit => break Some(turn.run),
            _ = check.tick(), if nudging => {
                let queued = nudge.and_then(|id| inner.store.read(|tx| tx.run(id)).ok().flatten())
                    .is_some_and(|r| r.status == RunStatus::Queued);
                // Not queued any more and not taken by the dispatcher: stopped before it started.
                if !queued && gone(inner) {
                    end(turn).await;
                    return Next::Gone;
                }
            }
        }
    };
    // The process goes: forget it; a dispatcher that took it already gets its turn served (by
    // a dead process, which the supervisor then records against that run), one that comes later
    // finds the channel closed and starts a new process resuming the session.
    let _ = gone(inner);
    resume_rx.close();
    if let Ok(resume) = resume_rx.try_recv() {
        return take_turn(inner, turn, transcript, resume, nudging);
    }
    if let Some(run) = letting_go {
        tracing::info!(%run, "a long-lived agent waited too long for its next turn: letting it go");
        turn.process.close_input();
        let _ = tokio::time::timeout(Duration::from_secs(10), turn.process.wait()).await;
    }
    end(turn).await;
    Next::Gone
}

/// The waiting process takes its next turn: the run it now serves, its stop handle, and the
/// input on its stdin.
fn take_turn(
    inner: &Inner,
    turn: &mut Turn,
    transcript: &mut Transcript,
    resume: Resume,
    nudge: bool,
) -> Next {
    turn.stop = resume.stop;
    if resume.run != turn.run {
        turn.run = resume.run;
        transcript.switch_run(inner, resume.run);
    }
    // A process that closed its stdin cannot take the turn: the supervisor then sees it exit
    // without ending its turn.
    let text = match turn.process.write_input(resume.input) {
        Ok(()) if nudge => "nudge written to the waiting agent (long-lived session)".into(),
        Ok(()) => "answer written to the waiting agent (long-lived session)".into(),
        Err(err) => format!("cannot write to the waiting agent: {err}"),
    };
    transcript.push(TranscriptEvent::Status { text });
    Next::Continue
}

/// Kills what is left of a parked run: the agent and every descendant (its PID namespace in a
/// sandbox; unconfined, its tree and then its process group — no scan of the host).
async fn end(turn: &mut Turn) {
    turn.process.close_input();
    turn.process.kill_all().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), turn.process.wait()).await;
    turn.process.kill_leftovers().await;
}
