//! A task's transcript as a stream: the backlog from the store, then live events, without gaps.
//! The follower subscribes before reading the backlog and keeps a `(run, seq)` cursor; live
//! events at or below the cursor are duplicates and dropped; if it lags, it re-reads the store.
//!
//! Events travel as ready-made NDJSON lines (the JSON text stored for the event, wrapped by
//! [`LogEntry::line`]): a follower never decodes and re-encodes what it forwards.

use crate::api::{FollowItem, LogEntry};
use crate::error::{EngineError, Result};
use crate::hub::HubItem;
use crate::inner::Inner;
use crate::shown::Shown;
use bytes::Bytes;
use domain::{RunId, TaskId};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

const PAGE: u32 = 5000;

/// NDJSON lines of `FollowItem`s; each item of the stream holds one or more whole lines.
pub(crate) fn ndjson(
    inner: Arc<Inner>,
    task: TaskId,
    follow: bool,
    hide_server_details: bool,
) -> Result<BoxStream<'static, Bytes>> {
    inner.store.read(|tx| {
        tx.task(task)?
            .ok_or_else(|| crate::transition::not_found(task))
            .map(|_| ())
    })?;
    let live = inner.hub.subscribe(task);
    let (out, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        if let Err(err) = pump(&inner, task, follow, hide_server_details, live, &out).await {
            tracing::debug!(%task, error = %err, "log follower ended");
        }
    });
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}

/// The same stream decoded into typed items (for in-process consumers such as the demo).
pub(crate) fn typed(
    inner: Arc<Inner>,
    task: TaskId,
    follow: bool,
    hide_server_details: bool,
) -> Result<BoxStream<'static, FollowItem>> {
    let lines = ndjson(inner, task, follow, hide_server_details)?;
    Ok(lines
        .flat_map(|chunk| {
            let items: Vec<FollowItem> = chunk
                .split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .filter_map(|line| serde_json::from_slice(line).ok())
                .collect();
            futures::stream::iter(items)
        })
        .boxed())
}

struct Closed;

impl From<Closed> for EngineError {
    fn from(_: Closed) -> Self {
        EngineError::Internal("the follower went away".into())
    }
}

async fn send(out: &mpsc::Sender<Bytes>, chunk: Bytes) -> Result<(), Closed> {
    out.send(chunk).await.map_err(|_| Closed)
}

async fn pump(
    inner: &Inner,
    task: TaskId,
    follow: bool,
    hide_server_details: bool,
    mut live: broadcast::Receiver<HubItem>,
    out: &mpsc::Sender<Bytes>,
) -> Result<()> {
    let mut cursor = (RunId(0), 0i64);
    loop {
        backlog(inner, task, &mut cursor, out).await?;
        let (idle, state) = inner.store.read(|tx| {
            let row = tx
                .task(task)?
                .ok_or_else(|| crate::transition::not_found(task))?;
            let moving = crate::views::in_motion(&tx.runs_of_task(task)?, &row.state);
            Ok::<_, EngineError>((!moving, row.state))
        })?;
        if !follow || idle {
            // Events are persisted before a run is recorded as finished: one more read has all.
            backlog(inner, task, &mut cursor, out).await?;
            let mut end = FollowItem::End { state };
            if hide_server_details {
                end.hide_server_details();
            }
            let mut end =
                serde_json::to_vec(&end).map_err(|e| EngineError::Internal(e.to_string()))?;
            end.push(b'\n');
            send(out, Bytes::from(end)).await?;
            return Ok(());
        }
        loop {
            tokio::select! {
                () = out.closed() => return Ok(()),
                item = live.recv() => match item {
                    Ok(HubItem::Events(batch)) => {
                        if let Some((lines, last)) = batch.after(cursor) {
                            cursor = last;
                            send(out, lines).await?;
                        }
                    }
                    Ok(HubItem::Changed) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
}

async fn backlog(
    inner: &Inner,
    task: TaskId,
    cursor: &mut (RunId, i64),
    out: &mpsc::Sender<Bytes>,
) -> Result<()> {
    loop {
        let page = inner
            .store
            .read(|tx| tx.task_events_after(task, *cursor, PAGE))?;
        let full = page.len() == PAGE as usize;
        let mut chunk = String::with_capacity(page.len() * 160);
        for stored in page {
            *cursor = (stored.run, stored.seq);
            LogEntry::push_line(
                &mut chunk,
                stored.run,
                stored.stage,
                stored.seq,
                &stored.json,
            );
        }
        if !chunk.is_empty() {
            send(out, Bytes::from(chunk)).await?;
        }
        if !full {
            return Ok(());
        }
    }
}
