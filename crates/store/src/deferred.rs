//! Deferred writes: many small writes (transcript events of every run) committed together in
//! one transaction, in the order they came, before anything else reads or writes the store —
//! so deferring is invisible to every other user of the store except in when the commit
//! happens.

use crate::{Activity, Result, Store, StoreError, Tx};
use rusqlite::Connection;
use std::cell::RefCell;
use std::sync::atomic::Ordering;

/// A write that may wait a moment and share its transaction with others ([`Store::defer`]):
/// what high-rate ingest (transcript events of every run) hands the store.
pub trait DeferredWrite: Send {
    /// Writes inside the shared transaction. May be called again after a rollback (when another
    /// write of the transaction failed), so it must not consume what it writes.
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
        let mut writes = std::mem::take(
            &mut *self
                .deferred
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if writes.is_empty() {
            return;
        }
        // All in one transaction; should one fail, the transaction is rolled back and the
        // writes are run again one savepoint each, so that one alone is lost.
        match self.all_at_once(conn, &mut writes) {
            Ok(activity) => self.publish(activity, writes),
            Err(_) if writes.len() > 1 => self.one_by_one(conn, writes),
            Err(err) => writes.into_iter().for_each(|w| w.failed(&err)),
        }
    }

    fn all_at_once(
        &self,
        conn: &mut Connection,
        writes: &mut [Box<dyn DeferredWrite>],
    ) -> Result<Vec<Activity>> {
        let tx = Tx {
            tx: conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            pending: RefCell::new(Vec::new()),
            sink: self.sink.get().map(|sink| &**sink),
        };
        for write in writes.iter_mut() {
            write.write(&tx)?;
        }
        let Tx { tx, pending, .. } = tx;
        tx.commit()?;
        Ok(pending.into_inner())
    }

    fn one_by_one(&self, conn: &mut Connection, writes: Vec<Box<dyn DeferredWrite>>) {
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => Tx {
                tx,
                pending: RefCell::new(Vec::new()),
                sink: self.sink.get().map(|sink| &**sink),
            },
            Err(err) => {
                let err = StoreError::from(err);
                writes.into_iter().for_each(|w| w.failed(&err));
                return;
            }
        };
        let mut stored = Vec::with_capacity(writes.len());
        for mut write in writes {
            let mark = tx.pending.borrow().len();
            let written = tx
                .tx
                .execute_batch("SAVEPOINT deferred")
                .map_err(StoreError::from)
                .and_then(|()| write.write(&tx))
                .and_then(|()| Ok(tx.tx.execute_batch("RELEASE deferred")?));
            if let Err(err) = written {
                // Its rows and their activity go with it.
                tx.pending.borrow_mut().truncate(mark);
                let undone = tx
                    .tx
                    .execute_batch("ROLLBACK TO deferred; RELEASE deferred");
                write.failed(&err);
                if let Err(undo) = undone {
                    let err = StoreError::from(undo);
                    stored
                        .into_iter()
                        .for_each(|w: Box<dyn DeferredWrite>| w.failed(&err));
                    return;
                }
                continue;
            }
            stored.push(write);
        }
        let Tx { tx, pending, .. } = tx;
        match tx.commit() {
            Ok(()) => self.publish(pending.into_inner(), stored),
            Err(err) => {
                let err = StoreError::from(err);
                stored.into_iter().for_each(|w| w.failed(&err));
            }
        }
    }

    /// After a commit, still holding the connection: the sink, then each write, in order.
    fn publish(&self, activity: Vec<Activity>, stored: Vec<Box<dyn DeferredWrite>>) {
        if let (Some(sink), false) = (self.sink.get(), activity.is_empty()) {
            sink.committed(activity);
        }
        for write in stored {
            write.committed();
        }
    }
}
