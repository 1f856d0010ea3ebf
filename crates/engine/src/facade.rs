//! The public entry points of the engine (what the HTTP layer calls).

use crate::api::*;
use crate::error::Result;
use domain::{Signal, Stage, TaskId};
use futures::stream::BoxStream;
use std::path::PathBuf;
use std::time::Duration;

/// Server-wide settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// The `atelier` binary: agents signal with it and the scripted agent runs it.
    pub atelier_bin: PathBuf,
    /// URL agents use to reach this server (always a loopback address).
    pub server_url: String,
    /// Agents that may run at once, all projects together.
    pub global_slots: usize,
    /// A run that emits nothing for this long is interrupted, then failed.
    pub stall_window: Duration,
    /// Default wall-clock limit of one run.
    pub stage_timeout: Duration,
    /// Time between a graceful interrupt and killing the process tree.
    pub stop_grace: Duration,
    /// How often the local forge checks the remote for merged branches.
    pub merge_poll: Duration,
}

impl EngineConfig {
    pub fn new(data_dir: PathBuf, atelier_bin: PathBuf, server_url: String) -> Self {
        EngineConfig {
            data_dir,
            atelier_bin,
            server_url,
            global_slots: 8,
            stall_window: Duration::from_secs(600),
            stage_timeout: Duration::from_secs(3600),
            stop_grace: Duration::from_secs(5),
            merge_poll: Duration::from_secs(30),
        }
    }
}

/// Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {}

#[allow(unused_variables, clippy::unused_async)]
impl Engine {
    /// Opens the store in `config.data_dir`, recovers runs that were live when the server died,
    /// replays unfinished intents and starts the background loops.
    pub async fn start(config: EngineConfig) -> Result<Engine> {
        todo!()
    }
    pub async fn add_project(&self, req: NewProject) -> Result<ProjectView> {
        todo!()
    }
    pub async fn list_projects(&self) -> Result<Vec<ProjectView>> {
        todo!()
    }
    pub async fn create_task(&self, req: NewTask) -> Result<TaskView> {
        todo!()
    }
    /// Tasks, optionally of one project (name or id).
    pub async fn list_tasks(&self, project: Option<String>) -> Result<Vec<TaskView>> {
        todo!()
    }
    pub async fn task(&self, id: TaskId) -> Result<TaskDetail> {
        todo!()
    }
    pub async fn approve(&self, id: TaskId) -> Result<TaskView> {
        todo!()
    }
    pub async fn answer(&self, id: TaskId, text: String) -> Result<TaskView> {
        todo!()
    }
    pub async fn run(&self, id: TaskId, stage: Option<Stage>) -> Result<TaskView> {
        todo!()
    }
    pub async fn stop(&self, id: TaskId) -> Result<TaskView> {
        todo!()
    }
    pub async fn resume(&self, id: TaskId) -> Result<TaskView> {
        todo!()
    }
    /// Merges the task's pull request on the forge (local forge: into the remote default branch).
    pub async fn merge(&self, id: TaskId) -> Result<TaskView> {
        todo!()
    }
    /// An agent's signal; `run_token` is the bearer token of the run.
    pub async fn signal(&self, run_token: &str, task: TaskId, signal: Signal) -> Result<()> {
        todo!()
    }
    /// The task's transcript: the backlog, then (if `follow`) live events without gaps, ending
    /// with `FollowItem::End` once no agent of the task is queued or running.
    pub async fn logs(&self, id: TaskId, follow: bool) -> Result<BoxStream<'static, FollowItem>> {
        todo!()
    }
    /// Stops every live run (used on graceful shutdown); runs are recorded as interrupted.
    pub async fn shutdown(&self) {
        todo!()
    }
}
