//! Transcript ingest: the events of every run reach the store through one writer, which commits
//! them in one transaction per short window, then fans them out to the log followers.
//!
//! A run's supervisor hands over each burst of events ([`persist`]): serialized once, their
//! NDJSON lines built once into one buffer (only when the task has followers). The bursts of one
//! run that wait for the same commit are merged into one [`RunBatch`], queued with
//! [`store::Store::defer`] when the run's first burst of the window arrives: a commit writes one
//! activity row per run, not one per burst (an agent writing its lines one by one makes one
//! burst per line). The ingest timer ([`run_flusher`]) commits everything queued [`WINDOW`]
//! after the first burst arrived — the batches of all runs in one transaction, on a blocking
//! thread — or sooner when [`MAX_WAITING`] events wait. Any other read or write of the store commits the queue first,
//! so the run's end (and anything else done after a burst was handed over) is never stored
//! before the run's events, and a backlog read sees every event handed over before it.
//! Followers get a batch only after its commit, in commit order, as shared buffers
//! (`hub::EventLines`, one per burst): what a follower saw is stored.

use crate::api::LogEntry;
use crate::hub::{EventLines, Hub, HubItem};
use crate::inner::Inner;
use bytes::Bytes;
use domain::{RunId, Stage, TaskId, TranscriptEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// How long the first burst waits for others to share its transaction: the most a live
/// follower lags behind an agent. Every commit writes the pages the runs it holds touched (the
/// tail of the events table, a page of the `events_run` index per run, one activity row per
/// run and its task index), so fewer, larger commits cost less (`docs/performance.md`: at 100
/// agents × 100 events/s, 30–36 % of a core with 5 ms and one row per burst; 10–14 % with 50
/// ms, one row per run and commit, and chatty agents' pipes read paced).
pub(crate) const WINDOW: Duration = Duration::from_millis(50);
/// Events waiting that make the ingest timer commit at once; at four times as many, the
/// supervisor handing over a burst commits itself (the writer fell behind).
const MAX_WAITING: usize = 16_384;

/// The ingest queue's state in the engine: the open batch of each run and the timer's wake-up.
#[derive(Default)]
pub(crate) struct Queue {
    /// Per run, the batch that still takes bursts (not yet written by a commit).
    open: Mutex<HashMap<RunId, Arc<Mutex<RunBatch>>>>,
    /// Events handed over and not yet committed.
    waiting: AtomicUsize,
    /// Wakes the ingest timer: events wait to be committed.
    wake: Notify,
    /// Tells the ingest timer not to wait for the end of the window: [`MAX_WAITING`] events wait.
    full: Notify,
}

impl Queue {
    fn open(&self) -> MutexGuard<'_, HashMap<RunId, Arc<Mutex<RunBatch>>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One run's bursts waiting for the same commit.
struct RunBatch {
    task: TaskId,
    run: RunId,
    /// Set by the commit that writes the batch: later bursts start another one.
    closed: bool,
    rows: Vec<(i64, String)>,
    /// What the events change on the run row (session id, usage).
    effects: Vec<TranscriptEvent>,
    /// The NDJSON lines of each burst that had followers when handed over (a follower that came
    /// later reads the store, which holds the bursts by then), sent as they are: not copied.
    lines: Vec<EventLines>,
}

impl RunBatch {
    /// Adds a later burst of the same run.
    fn absorb(&mut self, burst: Burst) {
        self.rows.extend(burst.rows);
        self.effects.extend(burst.effects);
        self.lines.extend(burst.lines);
    }
}

/// A burst as the supervisor hands it over, serialized.
struct Burst {
    rows: Vec<(i64, String)>,
    effects: Vec<TranscriptEvent>,
    lines: Option<EventLines>,
}

/// A run's batch in the store's queue of deferred writes.
struct Queued {
    batch: Arc<Mutex<RunBatch>>,
    /// What the first `write` took out of the batch (closing it), kept for another `write`
    /// after a rollback: the batch's lock is never held while SQLite writes.
    taken: Option<RunBatch>,
    /// `committed` or `failed` ran (or the write was dropped): the batch left the queue.
    settled: bool,
    queue: Arc<Queue>,
    hub: Arc<Hub>,
}

impl Queued {
    /// Closes the batch to later bursts and takes what it holds.
    fn close(&self) -> RunBatch {
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        batch.closed = true;
        RunBatch {
            task: batch.task,
            run: batch.run,
            closed: true,
            rows: std::mem::take(&mut batch.rows),
            effects: std::mem::take(&mut batch.effects),
            lines: std::mem::take(&mut batch.lines),
        }
    }

    /// The batch left the queue (stored or lost): it no longer takes bursts, its events no
    /// longer count as waiting, and its run's next burst starts a new batch.
    fn settle(&mut self) -> RunBatch {
        let taken = match self.taken.take() {
            Some(taken) => taken,
            None => self.close(),
        };
        if std::mem::replace(&mut self.settled, true) {
            return taken;
        }
        self.queue
            .waiting
            .fetch_sub(taken.rows.len(), Ordering::Relaxed);
        let mut open = self.queue.open();
        if open
            .get(&taken.run)
            .is_some_and(|current| Arc::ptr_eq(current, &self.batch))
        {
            open.remove(&taken.run);
        }
        taken
    }
}

impl Drop for Queued {
    /// Dropped without `committed` or `failed` (a commit that panicked): the batch must not stay
    /// open, or its run's later bursts would join a batch nobody writes.
    fn drop(&mut self) {
        if !self.settled {
            let lost = self.settle();
            if !lost.rows.is_empty() {
                tracing::error!(run = %lost.run, events = lost.rows.len(), "transcript events dropped unstored");
            }
        }
    }
}

impl store::DeferredWrite for Queued {
    fn write(&mut self, tx: &store::Tx<'_>) -> store::Result<()> {
        if self.taken.is_none() {
            self.taken = Some(self.close());
        }
        let Some(batch) = &self.taken else {
            return Ok(());
        };
        tx.append_events(batch.task, batch.run, &batch.rows)?;
        for event in &batch.effects {
            match event {
                TranscriptEvent::Session { id } => tx.set_run_session(batch.run, id)?,
                TranscriptEvent::Usage {
                    input_tokens,
                    output_tokens,
                    cost_usd,
                    cumulative: true,
                } => tx.raise_run_usage(batch.run, *input_tokens, *output_tokens, *cost_usd)?,
                TranscriptEvent::Usage {
                    input_tokens,
                    output_tokens,
                    cost_usd,
                    cumulative: false,
                } => tx.add_run_usage(batch.run, *input_tokens, *output_tokens, *cost_usd)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn committed(mut self: Box<Self>) {
        let batch = self.settle();
        for lines in batch.lines {
            self.hub
                .publish(batch.task, HubItem::Events(Arc::new(lines)));
        }
    }

    fn failed(mut self: Box<Self>, err: &store::StoreError) {
        let batch = self.settle();
        tracing::error!(run = %batch.run, events = batch.rows.len(), error = %err, "cannot persist transcript events");
    }
}

/// Hands a run's events (consecutive `seq`s, in order) to the ingest writer.
pub(crate) fn persist(
    inner: &Inner,
    task: TaskId,
    run: RunId,
    stage: Stage,
    events: Vec<(i64, TranscriptEvent)>,
) {
    let Some(first) = events.first().map(|(seq, _)| *seq) else {
        return;
    };
    let with_lines = inner.hub.has_followers(task);
    let burst = serialize(run, stage, first, events, with_lines);
    inner
        .ingest
        .hand_over(&inner.store, &inner.hub, task, run, burst);
}

impl Queue {
    /// Adds `burst` to its run's open batch, or queues a new batch for the run.
    fn hand_over(
        self: &Arc<Self>,
        store: &store::Store,
        hub: &Arc<Hub>,
        task: TaskId,
        run: RunId,
        burst: Burst,
    ) {
        let count = burst.rows.len();
        let waiting = self.waiting.fetch_add(count, Ordering::Relaxed) + count;
        {
            let mut open = self.open();
            let mut burst = Some(burst);
            if let Some(current) = open.get(&run) {
                let mut batch = current.lock().unwrap_or_else(|p| p.into_inner());
                if !batch.closed
                    && let Some(burst) = burst.take()
                {
                    batch.absorb(burst);
                }
            }
            if let Some(burst) = burst {
                let batch = Arc::new(Mutex::new(RunBatch {
                    task,
                    run,
                    closed: false,
                    rows: burst.rows,
                    effects: burst.effects,
                    lines: burst.lines.into_iter().collect(),
                }));
                open.insert(run, Arc::clone(&batch));
                let queued = store.defer(Box::new(Queued {
                    batch,
                    taken: None,
                    settled: false,
                    queue: Arc::clone(self),
                    hub: Arc::clone(hub),
                }));
                if queued == 1 {
                    self.wake.notify_one();
                }
            }
        }
        if waiting >= MAX_WAITING * 4 {
            // The writer is behind: the agent's supervisor waits for the commit (back-pressure).
            store.commit_deferred();
        } else if waiting >= MAX_WAITING {
            self.full.notify_one();
        }
    }
}

/// Serialized once: the same text is stored and streamed to every follower.
fn serialize(
    run: RunId,
    stage: Stage,
    first: i64,
    events: Vec<(i64, TranscriptEvent)>,
    with_lines: bool,
) -> Burst {
    let mut rows = Vec::with_capacity(events.len());
    let mut effects = Vec::new();
    for (seq, event) in events {
        let json = serde_json::to_string(&event).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","message":"unserializable event: {e}"}}"#)
        });
        rows.push((seq, json));
        if matches!(
            event,
            TranscriptEvent::Session { .. } | TranscriptEvent::Usage { .. }
        ) {
            effects.push(event);
        }
    }
    let lines = with_lines.then(|| {
        let size = rows.iter().map(|(_, json)| json.len() + 64).sum();
        let mut text = String::with_capacity(size);
        let mut ends = Vec::with_capacity(rows.len());
        for (seq, json) in &rows {
            LogEntry::push_line(&mut text, run, stage, *seq, json);
            ends.push(text.len());
        }
        EventLines {
            run,
            first,
            lines: Bytes::from(text),
            ends,
        }
    });
    Burst {
        rows,
        effects,
        lines,
    }
}

/// The ingest timer: commits what waits [`WINDOW`] after the first burst of a window, or as soon
/// as [`MAX_WAITING`] events wait. The commit runs on a blocking thread, so the supervisors go
/// on reading and decoding their agents' output meanwhile. Runs for the engine's lifetime (a
/// shutdown commits what is left itself, after its runs stopped).
pub(crate) async fn run_flusher(inner: Arc<Inner>) {
    let window = window();
    loop {
        inner.ingest.wake.notified().await;
        tokio::select! {
            () = tokio::time::sleep(window) => {}
            () = inner.ingest.full.notified() => {}
        }
        let committing = Arc::clone(&inner);
        let _ = tokio::task::spawn_blocking(move || committing.store.commit_deferred()).await;
    }
}

/// [`WINDOW`], or `ATELIER_INGEST_WINDOW_MS` (1 to 1000) when set: the trade between a live
/// follower's lag (at most the window) and the server's CPU under many agents (each commit
/// rewrites the tail page of every run it holds: fewer commits, fewer pages written).
fn window() -> Duration {
    std::env::var("ATELIER_INGEST_WINDOW_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| (1..=1000).contains(ms))
        .map_or(WINDOW, Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::testing::rows_in;
    use domain::TaskState;
    use store::{ActivityBody, Store};

    fn store_with_two_runs() -> (Store, TaskId, RunId, RunId) {
        let store = Store::open_memory().unwrap();
        let stages = [Stage::Plan, Stage::Plan];
        let (task, runs) = rows_in(&store, "p", "/p", "/w", &TaskState::PlanGate, &stages);
        (store, task, runs[0], runs[1])
    }

    fn burst(run: RunId, seqs: std::ops::Range<i64>, with_lines: bool) -> Burst {
        let events = seqs
            .clone()
            .map(|seq| {
                let text = format!("line {seq}");
                (seq, TranscriptEvent::Message { text })
            })
            .collect();
        serialize(run, Stage::Plan, seqs.start, events, with_lines)
    }

    /// The transcript activity rows as `(run, first seq, last seq)`.
    fn transcript_rows(store: &Store) -> Vec<(RunId, i64, i64)> {
        let rows = store
            .read(|tx| tx.activity_after(None, (0, 0), 10_000))
            .unwrap();
        rows.into_iter()
            .filter_map(|row| match row.body {
                ActivityBody::Events { run, events, .. } => {
                    Some((run, events[0].0, events[events.len() - 1].0))
                }
                ActivityBody::Unloaded { run, from, to } => Some((run, from, to)),
                ActivityBody::Change(_) => None,
            })
            .collect()
    }

    #[test]
    fn the_bursts_of_a_run_that_share_a_commit_make_one_activity_row() {
        let (store, task, a, b) = store_with_two_runs();
        let hub = Arc::new(Hub::default());
        let queue = Arc::new(Queue::default());
        // One event per burst, as an agent writing its lines one by one hands them over.
        for seq in 1..=3 {
            queue.hand_over(&store, &hub, task, a, burst(a, seq..seq + 1, false));
            queue.hand_over(&store, &hub, task, b, burst(b, seq..seq + 1, false));
        }
        assert_eq!(queue.waiting.load(Ordering::Relaxed), 6);
        store.commit_deferred();
        assert_eq!(transcript_rows(&store), vec![(a, 1, 3), (b, 1, 3)]);
        assert_eq!(queue.waiting.load(Ordering::Relaxed), 0);
        assert!(
            queue.open().is_empty(),
            "a committed batch takes no more bursts"
        );
        // After the commit, the next burst starts a new batch (and a new row).
        queue.hand_over(&store, &hub, task, a, burst(a, 4..6, false));
        store.commit_deferred();
        assert_eq!(
            transcript_rows(&store),
            vec![(a, 1, 3), (b, 1, 3), (a, 4, 5)]
        );
        let seqs: Vec<i64> = store
            .read(|tx| tx.task_events_after(task, (RunId(0), 0), 100))
            .unwrap()
            .into_iter()
            .map(|event| event.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5, 1, 2, 3]);
    }

    #[test]
    fn followers_get_the_lines_of_a_runs_bursts_once_committed_and_in_order() {
        let (store, task, a, _) = store_with_two_runs();
        let hub = Arc::new(Hub::default());
        let mut follower = hub.subscribe(task);
        let queue = Arc::new(Queue::default());
        queue.hand_over(&store, &hub, task, a, burst(a, 1..3, true));
        queue.hand_over(&store, &hub, task, a, burst(a, 3..4, true));
        // Handed over while nobody followed: not in the lines (a follower reads the store).
        queue.hand_over(&store, &hub, task, a, burst(a, 4..5, false));
        queue.hand_over(&store, &hub, task, a, burst(a, 5..6, true));
        assert!(
            follower.try_recv().is_err(),
            "nothing is sent before its commit"
        );
        store.commit_deferred();
        let mut got = Vec::new();
        while let Ok(HubItem::Events(lines)) = follower.try_recv() {
            got.push((lines.first, lines.ends.len()));
            let (text, last) = lines.after((a, 0)).unwrap();
            assert_eq!(
                text.iter().filter(|b| **b == b'\n').count(),
                lines.ends.len()
            );
            assert_eq!(last, (a, lines.first + lines.ends.len() as i64 - 1));
        }
        assert_eq!(got, vec![(1, 2), (3, 1), (5, 1)]);
    }

    #[test]
    fn a_batch_dropped_unwritten_leaves_the_queue_closed() {
        let queue = Arc::new(Queue::default());
        let run = RunId(7);
        let burst = burst(run, 1..4, false);
        queue.waiting.fetch_add(3, Ordering::Relaxed);
        let batch = Arc::new(Mutex::new(RunBatch {
            task: TaskId(1),
            run,
            closed: false,
            rows: burst.rows,
            effects: burst.effects,
            lines: Vec::new(),
        }));
        queue.open().insert(run, Arc::clone(&batch));
        drop(Queued {
            batch: Arc::clone(&batch),
            taken: None,
            settled: false,
            queue: Arc::clone(&queue),
            hub: Arc::new(Hub::default()),
        });
        assert!(
            queue.open().is_empty(),
            "the run's next burst starts a new batch"
        );
        assert_eq!(queue.waiting.load(Ordering::Relaxed), 0);
        assert!(batch.lock().unwrap().closed);
    }
}
