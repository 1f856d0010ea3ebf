//! Long-lived sessions: one agent process for every turn of a run (a role's `session =
//! "long-lived"`: Claude Code's `--input-format stream-json`, OpenCode's `opencode serve` behind
//! the `atelier opencode-bridge`).
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
//! A parked process ends without a new turn when the run is stopped (its parked entry is
//! dropped: the process and everything it started are killed), when the server shuts down, when
//! it waits longer than the role's stage timeout (stdin closed; a later answer starts a new
//! process resuming the session, as after a restart) or when it dies by itself. In the last two
//! cases nothing is recorded: the run stays `needs_input`, and its answer goes to a new process
//! (`--resume`), which is also the fallback whenever no parked process is found.

use crate::inner::{Inner, StopCause};
use crate::supervisor::{Transcript, Turn, finish_durably};
use domain::{RunOutcome, Signal, TranscriptEvent};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// A run waiting for its answer with its process alive.
pub(crate) struct Parked {
    /// The run's signal token (the process's `ATELIER_RUN_TOKEN`), reused by the next turn.
    pub token: String,
    /// Hands the next turn to the parked supervisor; dropping it ends the process.
    pub resume: oneshot::Sender<Resume>,
}

/// The next turn of a parked run, from the dispatcher.
pub(crate) struct Resume {
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
/// answer (and then waits), or is let go.
pub(crate) async fn between_turns(
    inner: &Inner,
    turn: &mut Turn,
    ok: bool,
    transcript: &mut Transcript,
) -> Next {
    let asked = ok
        && inner
            .store
            .read(|tx| tx.run(turn.run))
            .ok()
            .flatten()
            .is_some_and(|row| matches!(row.signal, Some(Signal::Question { .. })));
    let Some(token) = turn.token.clone().filter(|_| asked) else {
        turn.process.close_input();
        return Next::Close;
    };
    let (resume_tx, resume_rx) = oneshot::channel();
    // Registered before the run is recorded `needs_input`: an answer can only come after that.
    inner.parked().insert(
        turn.run,
        Parked {
            token,
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

    let limit = tokio::time::sleep(turn.timeout);
    tokio::pin!(limit);
    tokio::select! {
        biased;
        resumed = resume_rx => match resumed {
            Ok(resume) => {
                turn.stop = resume.stop;
                // A process that closed its stdin cannot take the turn: the supervisor then sees
                // it exit without ending its turn.
                let text = match turn.process.write_input(resume.input) {
                    Ok(()) => "answer written to the waiting agent (long-lived session)".into(),
                    Err(err) => format!("cannot write the answer to the waiting agent: {err}"),
                };
                transcript.push(TranscriptEvent::Status { text });
                Next::Continue
            }
            // Stopped (or the run left `needs_input` another way): nothing may survive it.
            Err(_) => {
                end(turn).await;
                Next::Gone
            }
        },
        _ = turn.process.wait() => {
            inner.parked().remove(&turn.run);
            end(turn).await;
            Next::Gone
        }
        () = inner.shutdown.cancelled() => {
            inner.parked().remove(&turn.run);
            end(turn).await;
            Next::Gone
        }
        () = &mut limit => {
            inner.parked().remove(&turn.run);
            tracing::info!(run = %turn.run, "a long-lived agent waited too long for its answer: letting it go");
            turn.process.close_input();
            let _ = tokio::time::timeout(Duration::from_secs(10), turn.process.wait()).await;
            end(turn).await;
            Next::Gone
        }
    }
}

/// Kills what is left of a parked run: the agent and every descendant (its PID namespace in a
/// sandbox; unconfined, its tree and then its process group — no scan of the host).
async fn end(turn: &mut Turn) {
    turn.process.close_input();
    turn.process.kill_all().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), turn.process.wait()).await;
    turn.process.kill_leftovers().await;
}
