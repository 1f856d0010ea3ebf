//! Live fan-out of a task's transcript events and state changes to followers. Events are
//! broadcast only after they are persisted, so a follower that subscribes first and then reads
//! the backlog misses nothing.

use bytes::Bytes;
use domain::{RunId, TaskId};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::broadcast;

const CAPACITY: usize = 8192;

#[derive(Debug, Clone)]
pub(crate) enum HubItem {
    /// One transcript event as its ready-to-send NDJSON line.
    Event { run: RunId, seq: i64, line: Bytes },
    /// The task's state or runs changed.
    Changed,
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

    pub fn publish(&self, task: TaskId, items: impl IntoIterator<Item = HubItem>) {
        if let Some(sender) = self.existing(task) {
            for item in items {
                let _ = sender.send(item);
            }
        }
    }

    pub fn changed(&self, task: TaskId) {
        if let Some(sender) = self.existing(task) {
            let _ = sender.send(HubItem::Changed);
        }
    }
}
