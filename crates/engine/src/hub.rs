//! Live fan-out of a task's transcript events and state changes to followers. Events are
//! broadcast only after they are persisted, so a follower that subscribes first and then reads
//! the backlog misses nothing.
//!
//! Two kinds of channels: the NDJSON log follower's per-task channels ([`Hub`]), fed by the
//! ingest writer (`ingest`) after each commit, one item per stored batch, and the live stream's ([`Streams`]: one global channel plus one
//! per followed task), fed by the store itself with each committed activity row, in commit order.

use crate::stream_access::AccessChange;
use bytes::Bytes;
use domain::{RunId, TaskId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use store::{Activity, ActivitySink};
use tokio::sync::broadcast;

const CAPACITY: usize = 8192;

#[derive(Debug, Clone)]
pub(crate) enum HubItem {
    /// Consecutive transcript events of one run, committed together, as ready-to-send NDJSON
    /// lines: one buffer shared by every follower.
    Events(Arc<EventLines>),
    /// The task's state or runs changed.
    Changed,
}

/// The NDJSON lines of events `first..first + ends.len()` of `run` (consecutive `seq`s), built
/// once per stored batch; a follower sends a slice of `lines`, never a copy.
#[derive(Debug)]
pub(crate) struct EventLines {
    pub run: RunId,
    pub first: i64,
    pub lines: Bytes,
    /// Where each line ends in `lines`.
    pub ends: Vec<usize>,
}

impl EventLines {
    /// The lines of the events after `cursor` (`None` when there is none).
    pub fn after(&self, cursor: (RunId, i64)) -> Option<(Bytes, (RunId, i64))> {
        let count = i64::try_from(self.ends.len()).ok()?;
        let last = (self.run, self.first + count - 1);
        if count == 0 || last <= cursor {
            return None;
        }
        let skip = if self.run == cursor.0 {
            usize::try_from(cursor.1 - self.first + 1).unwrap_or(0)
        } else {
            0
        };
        let start = match skip {
            0 => 0,
            n => self.ends[n - 1],
        };
        Some((self.lines.slice(start..), last))
    }
}

#[derive(Default)]
pub(crate) struct Hub {
    channels: Mutex<HashMap<TaskId, broadcast::Sender<HubItem>>>,
}

impl Hub {
    /// Subscribes under the lock: a channel without receivers is pruned by the next caller, so
    /// the receiver must exist before the lock is released.
    pub fn subscribe(&self, task: TaskId) -> broadcast::Receiver<HubItem> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.retain(|_, sender| sender.receiver_count() > 0);
        channels
            .entry(task)
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    fn existing(&self, task: TaskId) -> Option<broadcast::Sender<HubItem>> {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .get(&task)
            .filter(|s| s.receiver_count() > 0)
            .cloned()
    }

    /// Whether anyone follows the task (events are only formatted for followers).
    pub fn has_followers(&self, task: TaskId) -> bool {
        self.existing(task).is_some()
    }

    pub fn publish(&self, task: TaskId, item: HubItem) {
        if let Some(sender) = self.existing(task) {
            let _ = sender.send(item);
        }
    }

    pub fn changed(&self, task: TaskId) {
        if let Some(sender) = self.existing(task) {
            let _ = sender.send(HubItem::Changed);
        }
    }
}

/// One committed activity row on its way to live-stream followers; its Server-Sent Events text
/// is built once, by the first follower that needs it.
#[derive(Debug)]
pub(crate) struct Live {
    pub item: Activity,
    pub sse: OnceLock<crate::stream::Encoded>,
}

/// The live stream's channels: everything, and per followed task. Publishing to a task nobody
/// follows costs a receiver count and a map lookup.
pub(crate) struct Streams {
    global: broadcast::Sender<Arc<Live>>,
    tasks: Mutex<HashMap<TaskId, broadcast::Sender<Arc<Live>>>>,
    /// Who may see what changed: a project added or its settings changed, a membership, an
    /// account's flags, a token revoked, a session ended. Followers check their access again;
    /// nothing is stored.
    access: broadcast::Sender<AccessChange>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            global: broadcast::channel(CAPACITY).0,
            tasks: Mutex::default(),
            access: broadcast::channel(16).0,
        }
    }
}

impl Streams {
    /// Tells every follower what changed of who may see what (after the commit).
    pub fn access_changed(&self, change: AccessChange) {
        let _ = self.access.send(change);
    }

    /// Hears of [`Streams::access_changed`].
    pub fn subscribe_access(&self) -> broadcast::Receiver<AccessChange> {
        self.access.subscribe()
    }

    /// Follows everything (`None`) or one task; under the lock, as [`Hub::subscribe`].
    pub fn subscribe(&self, task: Option<TaskId>) -> broadcast::Receiver<Arc<Live>> {
        let Some(task) = task else {
            return self.global.subscribe();
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|_, sender| sender.receiver_count() > 0);
        tasks
            .entry(task)
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    fn existing(&self, task: TaskId) -> Option<broadcast::Sender<Arc<Live>>> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.get(&task).filter(|s| s.receiver_count() > 0).cloned()
    }
}

impl ActivitySink for Streams {
    fn wants(&self, task: TaskId) -> bool {
        self.global.receiver_count() > 0 || self.existing(task).is_some()
    }

    fn committed(&self, items: Vec<Activity>) {
        for item in items {
            let global = self.global.receiver_count() > 0;
            let task = self.existing(item.task);
            if !global && task.is_none() {
                continue;
            }
            let live = Arc::new(Live {
                item,
                sse: OnceLock::new(),
            });
            if global {
                let _ = self.global.send(Arc::clone(&live));
            }
            if let Some(sender) = task {
                let _ = sender.send(live);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_sliced_after_the_cursor() {
        let batch = EventLines {
            run: RunId(2),
            first: 5,
            lines: Bytes::from_static(b"five\nsix\nseven\n"),
            ends: vec![5, 9, 15],
        };
        let after = |run, seq| {
            batch
                .after((RunId(run), seq))
                .map(|(lines, last)| (String::from_utf8(lines.to_vec()).unwrap_or_default(), last))
        };
        let whole = Some(("five\nsix\nseven\n".to_string(), (RunId(2), 7)));
        assert_eq!(after(1, 99), whole, "an earlier run");
        assert_eq!(after(2, 4), whole, "just before");
        assert_eq!(
            after(2, 5),
            Some(("six\nseven\n".to_string(), (RunId(2), 7)))
        );
        assert_eq!(after(2, 6), Some(("seven\n".to_string(), (RunId(2), 7))));
        assert_eq!(after(2, 7), None, "all seen");
        assert_eq!(after(3, 0), None, "a later run");
    }
}
