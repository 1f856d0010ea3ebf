//! Transcript ingest: the events of every run reach the store through one writer, which commits
//! them in one transaction per short window, then fans them out to the log followers.
//!
//! A run's supervisor hands over each burst of events ([`persist`]): serialized once, their
//! NDJSON lines built once into one buffer (only when the task has followers), and queued with
//! [`store::Store::defer`]. The ingest timer ([`run_flusher`]) commits everything queued
//! [`WINDOW`] after the first burst arrived — the bursts of all runs in one transaction — or
//! sooner when [`MAX_WAITING`] bursts wait. Any other read or write of the store commits the
//! queue first, so the run's end (and anything else done after a burst was handed over) is
//! never stored before the run's events, and a backlog read sees every event handed over
//! before it. Followers get a batch only after its commit, in commit order, as one shared
//! buffer (`hub::EventLines`): what a follower saw is stored.

use crate::api::LogEntry;
use crate::hub::{EventLines, Hub, HubItem};
use crate::inner::Inner;
use bytes::Bytes;
use domain::{RunId, Stage, TaskId, TranscriptEvent};
use std::sync::Arc;
use std::time::Duration;

/// How long the first burst waits for others to share its transaction: the most a live
/// follower lags behind an agent. Every commit writes the pages the runs it holds touched (the
/// tail of the events table, a page of the `events_run` index per run, the activity rows and
/// their task index), so fewer, larger commits cost less: at 100 agents × 100 events/s the
/// server used 30–36 % of a core with 5 ms, 26–28 % with 20 ms (`docs/performance.md`).
pub(crate) const WINDOW: Duration = Duration::from_millis(20);
/// Bursts waiting at most; the one that reaches it commits them all at once.
const MAX_WAITING: usize = 1024;

/// One run's burst of events on its way to the store.
struct Burst {
    task: TaskId,
    run: RunId,
    rows: Vec<(i64, String)>,
    /// What the events change on the run row (session id, usage).
    effects: Vec<TranscriptEvent>,
    /// The NDJSON lines, built when the task had followers as the burst was handed over (a
    /// follower that came later reads the store, which holds the burst by then).
    lines: Option<EventLines>,
    hub: Arc<Hub>,
}

impl store::DeferredWrite for Burst {
    fn write(&mut self, tx: &store::Tx<'_>) -> store::Result<()> {
        tx.append_events(self.task, self.run, &self.rows)?;
        for event in &self.effects {
            match event {
                TranscriptEvent::Session { id } => tx.set_run_session(self.run, id)?,
                TranscriptEvent::Usage {
                    input_tokens,
                    output_tokens,
                    cost_usd,
                    cumulative: true,
                } => tx.raise_run_usage(self.run, *input_tokens, *output_tokens, *cost_usd)?,
                TranscriptEvent::Usage {
                    input_tokens,
                    output_tokens,
                    cost_usd,
                    cumulative: false,
                } => tx.add_run_usage(self.run, *input_tokens, *output_tokens, *cost_usd)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn committed(self: Box<Self>) {
        if let Some(lines) = self.lines {
            self.hub
                .publish(self.task, HubItem::Events(Arc::new(lines)));
        }
    }

    fn failed(self: Box<Self>, err: &store::StoreError) {
        tracing::error!(run = %self.run, events = self.rows.len(), error = %err, "cannot persist transcript events");
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
    // Serialized once: the same text is stored and streamed to every follower.
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
    let lines = inner.hub.has_followers(task).then(|| {
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
    let waiting = inner.store.defer(Box::new(Burst {
        task,
        run,
        rows,
        effects,
        lines,
        hub: Arc::clone(&inner.hub),
    }));
    if waiting >= MAX_WAITING {
        inner.store.commit_deferred();
    } else if waiting == 1 {
        inner.ingest.notify_one();
    }
}

/// The ingest timer: commits what waits [`WINDOW`] after the first burst of a window. Runs for
/// the engine's lifetime (a shutdown commits what is left itself, after its runs stopped).
pub(crate) async fn run_flusher(inner: Arc<Inner>) {
    let window = window();
    loop {
        inner.ingest.notified().await;
        tokio::time::sleep(window).await;
        inner.store.commit_deferred();
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
