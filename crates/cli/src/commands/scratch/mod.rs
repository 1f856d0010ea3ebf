//! A scratch world shared by `atelier demo` and `atelier pipeline simulate`: a sample repository
//! with a bare remote (`repo`), and an embedded engine with its server on loopback, whose
//! project gives its stages scripted agents.

pub mod repo;

use crate::commands::{project, serve};
use crate::config;
use anyhow::{Context, Result, bail};
use domain::{Stage, TaskId, TaskState};
use engine::api::{NewProject, ProjectSettings, ProjectView, TaskDetail};
use engine::{Engine, EngineConfig};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

pub const POLL: Duration = Duration::from_millis(100);

/// An engine started on `root/data` (agent homes in `root/homes`) with its server listening on
/// `listen`.
pub struct Embedded {
    pub engine: Engine,
    pub url: String,
    /// The scratch folder (data dir, agent homes, scenario files of unused stages).
    root: std::path::PathBuf,
    stop_server: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Embedded {
    pub async fn start(
        root: &Path,
        listen: std::net::SocketAddr,
        stage_timeout: Duration,
    ) -> Result<Embedded> {
        let data_dir = root.join("data");
        config::create_data_dir(&data_dir)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} for the embedded server"))?;
        let url = serve::local_url(
            listener
                .local_addr()
                .context("cannot read the bound address")?,
        );
        let exe = std::env::current_exe().context("cannot find the path of the atelier binary")?;
        let mut engine_config = EngineConfig::new(data_dir, exe, url.clone());
        engine_config.homes_dir = root.join("homes");
        engine_config.merge_poll = Duration::from_millis(200);
        engine_config.stop_grace = Duration::from_secs(1);
        engine_config.stage_timeout = stage_timeout;
        engine_config.legacy_api_token = Some(hex::encode(rand::random::<[u8; 32]>()));
        let engine = Engine::start(engine_config)
            .await
            .context("cannot start the embedded engine")?;
        let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(
            listener,
            server::app(engine.clone(), server::HttpOptions::default()),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Embedded {
            engine,
            url,
            root: root.to_path_buf(),
            stop_server,
            server,
        })
    }

    /// Stops the engine (and its agents), then the server.
    pub async fn shutdown(self) {
        self.engine.shutdown().await;
        let _ = self.stop_server.send(());
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "the embedded server failed"),
            Err(err) => tracing::warn!(%err, "the embedded server task panicked"),
        }
    }

    /// Adds the sample repository as project `name`, each of `stages` played by a scripted agent
    /// from `scenario_dir/<stage>.json`.
    pub async fn add_scripted_project(
        &self,
        sample: &repo::SampleRepo,
        name: &str,
        scenario_dir: &Path,
        stages: &[Stage],
    ) -> Result<ProjectView> {
        let mut settings = ProjectSettings::default();
        settings
            .roles
            .extend(project::scripted_roles_for(scenario_dir, stages)?);
        // The stages this pipeline never runs get a scripted role too, not the default one: no
        // agent CLI is needed (a project's roles must name CLIs that start).
        let unused: Vec<Stage> = Stage::ALL
            .into_iter()
            .filter(|s| !stages.contains(s))
            .collect();
        if !unused.is_empty() {
            let dir = self.root.join("unused-stages");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for stage in &unused {
                let file = dir.join(format!("{stage}.json"));
                let text = serde_json::json!({"runs": [[
                    {"do": "message", "text": format!("the {stage} stage is not in this pipeline")}
                ]]});
                std::fs::write(&file, text.to_string())
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
            settings
                .roles
                .extend(project::scripted_roles_for(&dir, &unused)?);
        }
        self.engine
            .add_project(NewProject {
                path: sample.path.display().to_string(),
                name: Some(name.into()),
                settings: Some(settings),
                github: None,
            })
            .await
            .context("cannot add the sample project")
    }
}

/// Waits for the pull request the engine opens just after the task reaches awaiting-merge.
pub async fn wait_for_pull_request(
    engine: &Engine,
    id: TaskId,
    deadline: Instant,
) -> Result<TaskDetail> {
    loop {
        let detail = engine.task(id).await?;
        if detail.pull_request.is_some() {
            return Ok(detail);
        }
        if Instant::now() >= deadline {
            bail!("the pull request of task {id} was not opened in time");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for a merged task to be done (the local forge sees the merge within a poll or two).
pub async fn wait_until_done(engine: &Engine, id: TaskId, deadline: Instant) -> Result<TaskDetail> {
    loop {
        let detail = engine.task(id).await?;
        match &detail.task.state {
            TaskState::Done { .. } => return Ok(detail),
            TaskState::AwaitingMerge { .. } | TaskState::Merging if Instant::now() < deadline => {
                tokio::time::sleep(POLL).await
            }
            other => bail!(
                "the task is {other} after the merge, not done: the forge did not see the merge in time"
            ),
        }
    }
}
