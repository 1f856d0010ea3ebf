//! Durable state in one SQLite file (WAL): projects, tasks, runs, transcript events (per-run
//! `seq`), signals, pull-request records with what follows them up (comments, webhook
//! deliveries), the outbox of side-effect intents, and the activity stream (what the live
//! stream follows).
//!
//! Writes go through [`Store::write`], which runs a closure inside one transaction: a state change
//! and the intents it produces are committed together or not at all. Rows are plain structs; the
//! JSON columns hold domain values.

mod accounts;
mod activity;
mod checks;
mod credentials;
mod deferred;
mod events;
mod follow_up;
mod migrations;
mod outbox;
mod projects;
mod runs;
mod tasks;

pub use accounts::{AuditRow, SessionRow, TokenRow, UserId, UserRow};
pub use activity::{Activity, ActivityBody, ActivityKind, ActivitySink, RecentActivityRow, WHOLE};
pub use checks::{CheckRow, PrChecksRow};
pub use credentials::{CredentialRow, UserModelRow};
pub use deferred::DeferredWrite;
pub use events::{StoredEvent, TimedEvent};
pub use follow_up::{CommentRow, CommentStatus, NewComment};
pub use outbox::{Intent, IntentKind, NewIntent, UnknownIntentKind};
pub use projects::{NewProjectRow, ProjectRow};
pub use runs::{LiveRunRow, NewRunRow, RunRow, UsageSum};
pub use tasks::{NewTaskRow, PullRequestRow, TaskRow, task_pipeline};

use rusqlite::Connection;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Store failures. Messages name the operation and, for open, the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "the database {path} was written by a newer Atelier (schema {found}, this build knows {known})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database. Cheap to share behind an `Arc`; one connection serializes writers.
pub struct Store {
    conn: Mutex<Connection>,
    sink: OnceLock<Arc<dyn ActivitySink>>,
    /// Writes handed to [`Store::defer`] and not committed yet, in the order they came.
    deferred: Mutex<Vec<Box<dyn DeferredWrite>>>,
    /// Whether `deferred` may hold something (checked without its lock by every read and write).
    has_deferred: AtomicBool,
}

/// An open transaction; every typed operation of the store hangs off it.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    /// Activity rows written so far, handed to the sink after the commit.
    pending: RefCell<Vec<Activity>>,
    sink: Option<&'a dyn ActivitySink>,
}

impl Store {
    /// Opens (creating if needed) `<dir>/atelier.db` and applies pending migrations.
    pub fn open_in(dir: &Path) -> Result<Store> {
        let path = dir.join("atelier.db");
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // Ingest rewrites the same few hundred pages (the tail of each live run's events) in
        // every transaction; a checkpoint copies each page once however often the WAL holds it,
        // and fsyncs. Checkpointing every 32 MiB instead of SQLite's 4 MiB makes that 8 times
        // rarer (at 100 agents × 100 events/s a profile put about a fifth of the server's CPU
        // in checkpoints with the default, an eighth with this).
        conn.pragma_update(None, "wal_autocheckpoint", 8192)
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // Replaced values (credentials sealed in place, deleted rows) are overwritten on disk,
        // not left readable in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        migrations::apply(&mut conn, &path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            sink: OnceLock::new(),
            deferred: Mutex::default(),
            has_deferred: AtomicBool::new(false),
        })
    }

    /// An in-memory store, for tests.
    pub fn open_memory() -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::apply(&mut conn, Path::new(":memory:"))?;
        Ok(Store {
            conn: Mutex::new(conn),
            sink: OnceLock::new(),
            deferred: Mutex::default(),
            has_deferred: AtomicBool::new(false),
        })
    }

    /// Sets where committed activity goes (once; later calls are ignored).
    pub fn set_activity_sink(&self, sink: Arc<dyn ActivitySink>) {
        let _ = self.sink.set(sink);
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction (it rolls back
        // on drop), so the connection is still consistent.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one transaction; commits when it returns `Ok`, rolls back otherwise.
    /// Deferred writes are committed first.
    pub fn write<T, E>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.lock();
        self.commit_deferred_in(&mut conn);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let sink = self.sink.get().map(|sink| &**sink);
        let tx = Tx {
            tx,
            pending: RefCell::new(Vec::new()),
            sink,
        };
        let value = f(&tx)?;
        let Tx { tx, pending, .. } = tx;
        tx.commit().map_err(StoreError::from)?;
        // Still holding the connection: sinks see transactions in commit order.
        let pending = pending.into_inner();
        if let (Some(sink), false) = (sink, pending.is_empty()) {
            sink.committed(pending);
        }
        Ok(value)
    }

    /// Copies the WAL into the database and empties it, so what was replaced no longer lingers
    /// in the WAL file (after credentials were sealed in place, say).
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self.lock();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Runs `f` in a read transaction (a consistent snapshot), after committing the deferred
    /// writes: a read sees every write deferred before it.
    pub fn read<T, E>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.lock();
        self.commit_deferred_in(&mut conn);
        let tx = Tx {
            tx: conn.transaction().map_err(StoreError::from)?,
            pending: RefCell::new(Vec::new()),
            sink: None,
        };
        f(&tx)
    }
}

impl Drop for Store {
    /// Nothing deferred is left behind by a store that closes.
    fn drop(&mut self) {
        self.commit_deferred();
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Microseconds since the Unix epoch (for latency measurements).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{e}: {text}")))
}
