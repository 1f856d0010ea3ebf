//! The live stream: everything a user can watch (or one task of it) as Server-Sent Events, the
//! backlog from the store's activity log first, then live items, with no gap and no duplicate.
//!
//! Every message carries an `id:` (a [`StreamCursor`]), an `event:` (`task`, `run`,
//! `pull_request`, `transcript`; `ready` for the position a fresh global stream starts at) and a
//! one-line JSON `data:`; `caught-up` and `projects` carry no id. A stream may leave the
//! `transcript` messages out (a board shows no agent output): they are skipped unencoded, the
//! follower's key moving past them all the same. A follower subscribes to the live channel *before* it reads the
//! backlog and keeps the key of the last message it sent; live items at or below it were in the
//! backlog and are dropped. The store hands committed rows to the channels in commit order (ids
//! only grow), so live items arrive in key order. A live transcript batch whose text was not kept
//! (nobody was following when it was written), or a lag of the channel, sends the follower back
//! to the store from its key. Items are encoded once, by the first follower that needs them, and
//! shared by all.
//!
//! A user's follower checks its access when it starts, whenever projects, memberships,
//! accounts, tokens or sessions change ([`crate::hub::Streams::access_changed`]) and every
//! [`RECHECK`] (see [`crate::stream_access`]): a follower removed from a project stops receiving
//! its tasks' items (a task's own stream ends), the streams of a disabled account or of a
//! revoked or expired token or session end, and when what a follower sees of projects changed
//! its stream of everything sends a `projects` message (no id, nothing stored: a page refreshes
//! what it shows of projects).

use crate::api::StreamCursor;
use crate::error::{EngineError, Result};
use crate::hub::Live;
use crate::inner::Inner;
use crate::stream_access::{AccessChange, Checked, RECHECK, Visible};
use bytes::Bytes;
use domain::TaskId;
use futures::stream::BoxStream;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use store::{Activity, ActivityBody};
use tokio::sync::{broadcast, mpsc};

/// Items read from the store per backlog page.
const PAGE: u32 = 2000;
/// A comment line is sent when nothing else was for this long, so proxies keep the connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The Server-Sent Events text of one activity row, and where each of its messages starts.
#[derive(Debug)]
pub(crate) struct Encoded {
    text: Bytes,
    starts: Vec<((i64, i64), usize)>,
}

impl Encoded {
    /// The messages of `item`, without the server's details when `hide` (for a member).
    fn of(item: &Activity, hide: bool) -> Encoded {
        let mut text = String::new();
        let mut starts = Vec::new();
        encode(item, hide, &mut text, &mut starts);
        Encoded {
            text: Bytes::from(text),
            starts,
        }
    }

    /// The messages with a key after `cursor` (a zero-copy slice).
    fn after(&self, cursor: (i64, i64)) -> Option<Bytes> {
        let (_, start) = self.starts.iter().find(|(key, _)| *key > cursor)?;
        Some(self.text.slice(*start..))
    }
}

/// Appends the messages of `item` to `out`, noting where each starts; a task's or run's
/// change without the server's details when `hide` (see `shown`).
fn encode(item: &Activity, hide: bool, out: &mut String, starts: &mut Vec<((i64, i64), usize)>) {
    let (id, task, at) = (item.id, item.task, item.at_us);
    match &item.body {
        ActivityBody::Change(payload) => {
            starts.push(((id, store::WHOLE), out.len()));
            let shown = hide.then(|| crate::shown::payload(payload)).flatten();
            let payload = shown.as_deref().unwrap_or(payload);
            let rest = payload.strip_prefix('{').unwrap_or("}");
            let sep = if rest.starts_with('}') { "" } else { "," };
            let _ = write!(
                out,
                "id: {id}\nevent: {}\ndata: {{\"task\":{task},\"at_us\":{at}{sep}{rest}\n\n",
                item.kind.as_str()
            );
        }
        ActivityBody::Events { run, stage, events } => {
            for (seq, event) in events {
                starts.push(((id, *seq), out.len()));
                let _ = write!(
                    out,
                    "id: {id}-{seq}\nevent: transcript\ndata: {{\"task\":{task},\"at_us\":{at},\
                     \"run\":{run},\"stage\":\"{stage}\",\"seq\":{seq},\"event\":{event}}}\n\n"
                );
            }
        }
        ActivityBody::Unloaded { .. } => {}
    }
}

/// Whether the follower is a user who is not an administrator (see `shown`).
/// Whether a follower wants `body`: a change always, a transcript batch (kept or not) only with
/// `transcripts`.
fn wanted(transcripts: bool, body: &ActivityBody) -> bool {
    transcripts || matches!(body, ActivityBody::Change(_))
}

fn hides_server_details(visible: &Option<Visible>) -> bool {
    visible.as_ref().is_some_and(|v| !v.is_admin())
}

struct Closed;

impl From<Closed> for EngineError {
    fn from(_: Closed) -> Self {
        EngineError::Internal("the stream's client went away".into())
    }
}

async fn send(out: &mpsc::Sender<Bytes>, chunk: Bytes) -> Result<(), Closed> {
    out.send(chunk).await.map_err(|_| Closed)
}

/// The stream of everything (`task` = `None`) or of one task, strictly after `after`. Without
/// `after`, a task's stream starts at the task's beginning and the global stream at the present,
/// announced by a `ready` message whose id resumes from there. Once the stored backlog is sent, a
/// `caught-up` message (without an id) says that what follows is live. Without `transcripts`,
/// no `transcript` message is sent.
pub(crate) fn sse(
    inner: Arc<Inner>,
    task: Option<TaskId>,
    after: Option<StreamCursor>,
    visible: Option<Visible>,
    transcripts: bool,
) -> Result<BoxStream<'static, Bytes>> {
    if let Some(task) = task {
        inner.store.read(|tx| {
            tx.task(task)?
                .ok_or_else(|| crate::transition::not_found(task))
                .map(|_| ())
        })?;
    }
    let live = inner.streams.subscribe(task);
    let access = inner.streams.subscribe_access();
    let (start, ready) = match (after, task) {
        (Some(after), _) => (after, false),
        (None, Some(_)) => (StreamCursor::START, false),
        (None, None) => {
            let last = inner.store.read(|tx| tx.last_activity_id())?;
            let cursor = StreamCursor {
                activity: last,
                seq: store::WHOLE,
            };
            (cursor, true)
        }
    };
    let (out, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        if ready {
            let hello = format!("id: {start}\nevent: ready\ndata: {{}}\n\n");
            if out.send(Bytes::from(hello)).await.is_err() {
                return;
            }
        }
        let cursor = (start.activity, start.seq);
        let mut visible = visible;
        let follower = Follower {
            task,
            transcripts,
            live,
            access,
        };
        if let Err(err) = pump(&inner, follower, cursor, &out, &mut visible).await {
            tracing::debug!(?task, error = %err, "stream follower ended");
        }
    });
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}

/// What one follower listens to.
struct Follower {
    /// The task followed, or `None` for everything.
    task: Option<TaskId>,
    /// Whether it gets the agents' transcripts.
    transcripts: bool,
    live: broadcast::Receiver<Arc<Live>>,
    access: broadcast::Receiver<AccessChange>,
}

/// Why a follower reads its access again.
#[derive(Debug, Clone, Copy)]
enum Recheck {
    /// When it starts (nothing to announce: it has shown nothing yet).
    Start,
    /// Every [`RECHECK`].
    Routine,
    /// The engine said what changed.
    Told(AccessChange),
    /// Changes were missed (the channel lagged).
    Missed,
}

async fn pump(
    inner: &Inner,
    follower: Follower,
    mut cursor: (i64, i64),
    out: &mpsc::Sender<Bytes>,
    visible: &mut Option<Visible>,
) -> Result<()> {
    let Follower {
        task,
        transcripts,
        mut live,
        mut access,
    } = follower;
    // Access changes committed after the request was authenticated count too.
    if !access_again(inner, task, visible, Recheck::Start, out).await? {
        return Ok(());
    }
    let start = tokio::time::Instant::now() + KEEP_ALIVE;
    let mut keep_alive = tokio::time::interval_at(start, KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Never reset (unlike the keep-alive): a busy stream is checked as often as a quiet one.
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut caught_up = false;
    loop {
        backlog(inner, task, transcripts, &mut cursor, out, visible).await?;
        if !caught_up {
            // Without an id, so resuming is unaffected: what follows is live.
            send(out, Bytes::from_static(b"event: caught-up\ndata: {}\n\n")).await?;
            caught_up = true;
        }
        loop {
            // Access first: no item goes out after a change that hides it was heard.
            tokio::select! {
                biased;
                () = out.closed() => return Ok(()),
                changed = access.recv() => {
                    let why = match changed {
                        Ok(change) => Recheck::Told(change),
                        Err(broadcast::error::RecvError::Lagged(_)) => Recheck::Missed,
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    if !access_again(inner, task, visible, why, out).await? {
                        return Ok(());
                    }
                }
                _ = recheck.tick() => {
                    if !access_again(inner, task, visible, Recheck::Routine, out).await? {
                        return Ok(());
                    }
                }
                _ = keep_alive.tick() => {
                    send(out, Bytes::from_static(b": keep-alive\n\n")).await?;
                }
                item = live.recv() => match item {
                    Ok(live) => {
                        let last = live.item.last_key();
                        if last <= cursor {
                            continue;
                        }
                        if !wanted(transcripts, &live.item.body) {
                            cursor = last;
                            continue;
                        }
                        if matches!(live.item.body, ActivityBody::Unloaded { .. }) {
                            break;
                        }
                        if let Some(visible) = visible.as_mut()
                            && !visible.sees(inner, live.item.task)?
                        {
                            cursor = last;
                            continue;
                        }
                        // A member's copy of a change is encoded for them; the rest is shared.
                        let hide = hides_server_details(visible)
                            && matches!(live.item.body, ActivityBody::Change(_));
                        let own;
                        let encoded = if hide {
                            own = Encoded::of(&live.item, true);
                            &own
                        } else {
                            live.sse.get_or_init(|| Encoded::of(&live.item, false))
                        };
                        if let Some(chunk) = encoded.after(cursor) {
                            send(out, chunk).await?;
                            keep_alive.reset();
                        }
                        cursor = last;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
}

/// Reads a user's access again; false when the stream must end (the account or credential is
/// no longer good, or the followed task is no longer visible). The stream of everything is sent
/// a `projects` message when what it sees of projects changed (or may have).
async fn access_again(
    inner: &Inner,
    task: Option<TaskId>,
    visible: &mut Option<Visible>,
    why: Recheck,
    out: &mpsc::Sender<Bytes>,
) -> Result<bool> {
    let announce = match visible.as_mut() {
        // The server's own token sees everything, always.
        None => matches!(
            why,
            Recheck::Told(AccessChange::Project(_)) | Recheck::Missed
        ),
        Some(visible) => {
            let checked = visible.recheck(inner)?;
            if checked == Checked::Gone {
                return Ok(false);
            }
            if let Some(task) = task
                && !visible.sees(inner, task)?
            {
                return Ok(false);
            }
            let changed = checked == Checked::Changed;
            match why {
                Recheck::Start => false,
                Recheck::Routine
                | Recheck::Told(AccessChange::Credential | AccessChange::People) => changed,
                Recheck::Told(AccessChange::Project(project)) => {
                    changed || visible.sees_project(project)
                }
                Recheck::Missed => true,
            }
        }
    };
    if announce && task.is_none() {
        send(out, Bytes::from_static(b"event: projects\ndata: {}\n\n")).await?;
    }
    Ok(true)
}

/// Sends what the store holds after `cursor`, page by page, moving the cursor (past transcript
/// items too, which are sent only with `transcripts`).
async fn backlog(
    inner: &Inner,
    task: Option<TaskId>,
    transcripts: bool,
    cursor: &mut (i64, i64),
    out: &mpsc::Sender<Bytes>,
    visible: &mut Option<Visible>,
) -> Result<()> {
    loop {
        let page = inner
            .store
            .read(|tx| tx.activity_after(task, *cursor, PAGE))?;
        let mut count = 0usize;
        let mut text = String::new();
        let mut starts = Vec::new();
        for item in &page {
            count += match &item.body {
                ActivityBody::Events { events, .. } => events.len(),
                _ => 1,
            };
            *cursor = item.last_key();
            if !wanted(transcripts, &item.body) {
                continue;
            }
            if let Some(visible) = visible.as_mut()
                && !visible.sees(inner, item.task)?
            {
                continue;
            }
            encode(item, hides_server_details(visible), &mut text, &mut starts);
        }
        if !text.is_empty() {
            send(out, Bytes::from(text)).await?;
        }
        if count < PAGE as usize {
            return Ok(());
        }
    }
}
