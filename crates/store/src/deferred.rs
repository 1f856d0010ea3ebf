//! Deferred writes: many small writes (transcript events of every run) committed together in
//! one transaction, in the order they came, before anything else reads or writes the store —
//! so deferring is invisible to every other user of the store except in when the commit
//! happens.

use crate::{Result, Store, StoreError, Tx};
use rusqlite::Connection;
use std::cell::RefCell;
use std::sync::atomic::Ordering;

/// A write that may wait a moment and share its transaction with others ([`Store::defer`]):
/// what high-rate ingest (transcript events of every run) hands the store.
pub trait DeferredWrite: Send {
    /// Writes inside the shared transaction (in a savepoint of its own: a failure undoes only
    /// this write).
    fn write(&mut self, tx: &Tx<'_>) -> Result<()>;
    /// Called once the transaction holding the write committed, in the order the writes were
    /// deferred, while the connection is still held (as the activity sink is).
    fn committed(self: Box<Self>);
    /// Called when the write was not stored (its own error or the transaction's).
    fn failed(self: Box<Self>, err: &StoreError);
}

impl Store {
    /// Queues `write` to be committed with the other deferred writes in one transaction: by
    /// the next [`Store::commit_deferred`] (the engine's ingest timer) or, at the latest, just
    /// before the next read or write of anyone — so whatever is done after `defer` returns sees
    /// the write as if it had been committed at once, and writes commit in the order they were
    /// deferred. Returns how many writes now wait.
    pub fn defer(&self, write: Box<dyn DeferredWrite>) -> usize {
        let mut deferred = self
            .deferred
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        deferred.push(write);
        self.has_deferred.store(true, Ordering::SeqCst);
        deferred.len()
    }

    /// Commits the deferred writes now (one transaction), if any wait.
    pub fn commit_deferred(&self) {
        if self.has_deferred.load(Ordering::SeqCst) {
            let mut conn = self.lock();
            self.commit_deferred_in(&mut conn);
        }
    }

    pub(crate) fn commit_deferred_in(&self, conn: &mut Connection) {
        if !self.has_deferred.swap(false, Ordering::SeqCst) {
            return;
        }
        let writes = std::mem::take(
            &mut *self
                .deferred
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if writes.is_empty() {
            return;
        }
        let sink = self.sink.get().map(|sink| &**sink);
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(err) => {
                let err = StoreError::from(err);
                writes.into_iter().for_each(|w| w.failed(&err));
                return;
            }
        };
        let tx = Tx {
            tx,
            pending: RefCell::new(Vec::new()),
            sink,
        };
        let mut stored = Vec::with_capacity(writes.len());
        for mut write in writes {
            let written = tx
                .tx
                .execute_batch("SAVEPOINT deferred")
                .map_err(StoreError::from)
                .and_then(|()| write.write(&tx));
            match written {
                Ok(()) => match tx.tx.execute_batch("RELEASE deferred") {
                    Ok(()) => stored.push(write),
                    Err(err) => write.failed(&StoreError::from(err)),
                },
                Err(err) => {
                    // Its activity rows go with it: the savepoint undid them.
                    let undone = tx
                        .tx
                        .execute_batch("ROLLBACK TO deferred; RELEASE deferred");
                    write.failed(&err);
                    if undone.is_err() {
                        let err = StoreError::Corrupt(
                            "cannot undo a failed deferred write; the batch is dropped".into(),
                        );
                        stored
                            .into_iter()
                            .for_each(|w: Box<dyn DeferredWrite>| w.failed(&err));
                        return;
                    }
                }
            }
        }
        let Tx { tx, pending, .. } = tx;
        if let Err(err) = tx.commit() {
            let err = StoreError::from(err);
            stored.into_iter().for_each(|w| w.failed(&err));
            return;
        }
        let pending = pending.into_inner();
        if let (Some(sink), false) = (sink, pending.is_empty()) {
            sink.committed(pending);
        }
        for write in stored {
            write.committed();
        }
    }
}
