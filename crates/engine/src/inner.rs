//! The engine's shared state: store, adapters, live runs, and the wake-ups of the dispatcher
//! and the outbox worker.

use crate::facade::EngineConfig;
use crate::hub::Hub;
use crate::secrets::SecretBox;
use domain::{RunId, TaskId};
use forge::Forge;
use harness::Harness;
use harness::sandbox::{Sandbox, SandboxError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a live run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopCause {
    User,
    Shutdown,
}

/// A forge-touching action a task is busy with (see [`Inner::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    Merging,
    Deleting,
}

/// Holds a task for one forge-touching action; released when dropped.
pub(crate) struct Claim<'a> {
    inner: &'a Inner,
    task: TaskId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.inner.busy().remove(&self.task);
    }
}

/// A run whose process is alive, and the handle to stop it.
pub(crate) struct LiveRun {
    pub stop: tokio::sync::watch::Sender<Option<StopCause>>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub config: EngineConfig,
    pub harnesses: BTreeMap<&'static str, Arc<dyn Harness>>,
    pub forge: Arc<dyn Forge>,
    pub hub: Arc<Hub>,
    /// The live stream's channels (fed by the store with each committed activity row).
    pub streams: Arc<crate::hub::Streams>,
    /// The stage prompts (built in, with the instance's overrides); replaced whole when an
    /// administrator changes an override.
    pub prompts: std::sync::RwLock<Arc<crate::prompt::Prompts>>,
    /// The sandbox agents start in: `Ok(None)` when the operator opted out, `Err` when it was
    /// asked for but cannot work here (then no agent starts; the error says how to fix it).
    pub sandbox: Result<Option<Sandbox>, SandboxError>,
    /// Seals and opens credentials at rest.
    pub secrets: SecretBox,
    /// The projects' forges other than the local one, built on first use.
    pub forges: crate::forges::Forges,
    /// Pull-request syncs under way (see `follow_up`).
    pub syncs: crate::follow_up::Syncs,
    /// Recent failed logins (see `accounts`).
    pub logins: crate::accounts::LoginLimiter,
    /// Held (flock) for the engine's lifetime: one server per data directory.
    _data_lock: std::fs::File,
    live: Mutex<HashMap<RunId, LiveRun>>,
    /// Runs waiting for an answer with their long-lived process alive (`crate::session`).
    parked: Mutex<HashMap<RunId, crate::session::Parked>>,
    /// Long-lived processes kept for the nudge run of their task (`crate::session`).
    nudges: Mutex<HashMap<TaskId, crate::session::NudgeWait>>,
    /// Successor processes started ahead of their run (`crate::warm`).
    pub warm: crate::warm::Pool,
    /// Wakes the dispatcher: queued runs may be startable.
    pub dispatch: Notify,
    /// Wakes the outbox worker: intents may be pending.
    pub outbox: Notify,
    /// Transcript events on their way to the store (`ingest`).
    pub ingest: Arc<crate::ingest::Queue>,
    /// What git needs serialized per repository (`repo_lock`): task creations run in parallel.
    pub repo_locks: crate::repo_lock::RepoLocks,
    /// Port blocks chosen by task creations whose row is not written yet.
    pub reserved_ports: Mutex<std::collections::BTreeSet<u16>>,
    pub shutdown: CancellationToken,
    /// Tasks a merge or a delete is acting on in this process. The durable `merging` state keeps
    /// merges apart across crashes; this keeps a delete (whose steps are not one transaction)
    /// apart from a merge, and the outbox from replaying a merge the request still carries out.
    busy: Mutex<HashMap<TaskId, Busy>>,
    /// Waiting tasks and when they are due; drained by the retry timer task.
    retries: tokio::sync::mpsc::UnboundedSender<(TaskId, i64)>,
    retries_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(TaskId, i64)>>>,
}

/// What the engine is made of, opened by `Engine::start`.
pub(crate) struct Parts {
    pub store: Store,
    pub config: EngineConfig,
    pub harnesses: BTreeMap<&'static str, Arc<dyn Harness>>,
    pub forge: Arc<dyn Forge>,
    pub prompts: crate::prompt::Prompts,
    pub sandbox: Result<Option<Sandbox>, SandboxError>,
    pub secrets: SecretBox,
    pub data_lock: std::fs::File,
}

impl Inner {
    /// The prompts now (a run renders with the set it read).
    pub fn prompts(&self) -> Arc<crate::prompt::Prompts> {
        match self.prompts.read() {
            Ok(prompts) => Arc::clone(&prompts),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn new(parts: Parts) -> Inner {
        let Parts {
            store,
            config,
            harnesses,
            forge,
            prompts,
            sandbox,
            secrets,
            data_lock,
        } = parts;
        let (retries, retries_rx) = tokio::sync::mpsc::unbounded_channel();
        let streams = Arc::new(crate::hub::Streams::default());
        store.set_activity_sink(Arc::clone(&streams) as Arc<dyn store::ActivitySink>);
        Inner {
            store,
            config,
            harnesses,
            forge,
            hub: Arc::default(),
            streams,
            prompts: std::sync::RwLock::new(Arc::new(prompts)),
            sandbox,
            secrets,
            forges: crate::forges::Forges::default(),
            syncs: crate::follow_up::Syncs::default(),
            logins: crate::accounts::LoginLimiter::default(),
            _data_lock: data_lock,
            live: Mutex::new(HashMap::new()),
            parked: Mutex::new(HashMap::new()),
            nudges: Mutex::new(HashMap::new()),
            warm: crate::warm::Pool::default(),
            dispatch: Notify::new(),
            outbox: Notify::new(),
            ingest: Arc::default(),
            repo_locks: crate::repo_lock::RepoLocks::default(),
            reserved_ports: Mutex::default(),
            shutdown: CancellationToken::new(),
            busy: Mutex::new(HashMap::new()),
            retries,
            retries_rx: Mutex::new(Some(retries_rx)),
        }
    }

    pub fn live(&self) -> MutexGuard<'_, HashMap<RunId, LiveRun>> {
        // Entries are inserted and removed whole; a panic cannot leave one half-written.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn parked(&self) -> MutexGuard<'_, HashMap<RunId, crate::session::Parked>> {
        // Entries are inserted and removed whole; a panic cannot leave one half-written.
        self.parked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn nudges(&self) -> MutexGuard<'_, HashMap<TaskId, crate::session::NudgeWait>> {
        // Entries are inserted and removed whole; a panic cannot leave one half-written.
        self.nudges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks the live run to stop; false when it has no live process. A run parked with its
    /// long-lived process (waiting for an answer) is let go: the process is killed.
    pub fn stop_live(&self, run: RunId, cause: StopCause) -> bool {
        if self.parked().remove(&run).is_some() {
            return true;
        }
        match self.live().get(&run) {
            Some(live) => live.stop.send(Some(cause)).is_ok(),
            None => false,
        }
    }

    fn busy(&self) -> MutexGuard<'_, HashMap<TaskId, Busy>> {
        // Entries are inserted and removed whole.
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `task` for `action`, or says what it is already busy with.
    pub fn claim(&self, task: TaskId, action: Busy) -> Result<Claim<'_>, Busy> {
        let mut busy = self.busy();
        if let Some(current) = busy.get(&task) {
            return Err(*current);
        }
        busy.insert(task, action);
        Ok(Claim { inner: self, task })
    }

    /// Arranges for `RetryDue` to be applied to a waiting task at `retry_at`.
    pub fn schedule_retry(&self, task: TaskId, retry_at: i64) {
        let _ = self.retries.send((task, retry_at));
    }

    /// The receiving end of the retry schedule (taken once, by the timer task).
    pub fn take_retries(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(TaskId, i64)>> {
        self.retries_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The forge `project`'s pull requests live on.
    pub fn forge_for(&self, project: &store::ProjectRow) -> crate::error::Result<Arc<dyn Forge>> {
        self.forges.get(
            project,
            &self.forge,
            &self.secrets,
            self.config.forge_timeout,
        )
    }

    pub fn harness_names(&self) -> String {
        self.harnesses
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    }
}
