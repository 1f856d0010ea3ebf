//! A task's transcript as a stream: the backlog from the store, then live events, without gaps.
//! The follower subscribes before reading the backlog and keeps a `(run, seq)` cursor; live
//! events at or below the cursor are duplicates and dropped; if it lags, it re-reads the store.

use crate::api::{FollowItem, LogEntry};
use crate::error::{EngineError, Result};
use crate::hub::HubItem;
use crate::inner::Inner;
use domain::{RunId, RunStatus, TaskId};
use futures::stream::BoxStream;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

const PAGE: u32 = 2000;

pub(crate) fn logs(
    inner: Arc<Inner>,
    task: TaskId,
    follow: bool,
) -> Result<BoxStream<'static, FollowItem>> {
    inner.store.read(|tx| {
        tx.task(task)?
            .ok_or_else(|| crate::transition::not_found(task))
            .map(|_| ())
    })?;
    let live = inner.hub.subscribe(task);
    let (out, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        if let Err(err) = pump(&inner, task, follow, live, &out).await {
            tracing::debug!(%task, error = %err, "log follower ended");
        }
    });
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}

struct Closed;

impl From<Closed> for EngineError {
    fn from(_: Closed) -> Self {
        EngineError::Internal("the follower went away".into())
    }
}

async fn send(out: &mpsc::Sender<FollowItem>, item: FollowItem) -> Result<(), Closed> {
    out.send(item).await.map_err(|_| Closed)
}

async fn pump(
    inner: &Inner,
    task: TaskId,
    follow: bool,
    mut live: broadcast::Receiver<HubItem>,
    out: &mpsc::Sender<FollowItem>,
) -> Result<()> {
    let mut cursor = (RunId(0), 0i64);
    loop {
        backlog(inner, task, &mut cursor, out).await?;
        let (idle, state) = inner.store.read(|tx| {
            let row = tx
                .task(task)?
                .ok_or_else(|| crate::transition::not_found(task))?;
            let busy = tx
                .runs_of_task(task)?
                .iter()
                .any(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running));
            Ok::<_, EngineError>((!busy, row.state))
        })?;
        if !follow || idle {
            // Events are persisted before a run is recorded as finished: one more read has all.
            backlog(inner, task, &mut cursor, out).await?;
            send(out, FollowItem::End { state }).await?;
            return Ok(());
        }
        loop {
            tokio::select! {
                () = out.closed() => return Ok(()),
                item = live.recv() => match item {
                    Ok(HubItem::Event(entry)) => {
                        if (entry.run, entry.seq) > cursor {
                            cursor = (entry.run, entry.seq);
                            send(out, FollowItem::Event(entry)).await?;
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
    out: &mpsc::Sender<FollowItem>,
) -> Result<()> {
    loop {
        let page = inner
            .store
            .read(|tx| tx.task_events_after(task, *cursor, PAGE))?;
        let full = page.len() == PAGE as usize;
        for stored in page {
            *cursor = (stored.run, stored.seq);
            let entry = LogEntry {
                run: stored.run,
                stage: stored.stage,
                seq: stored.seq,
                event: stored.event,
            };
            send(out, FollowItem::Event(entry)).await?;
        }
        if !full {
            return Ok(());
        }
    }
}
