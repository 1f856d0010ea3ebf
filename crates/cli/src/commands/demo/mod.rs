//! `atelier demo`: the newcomer's first minute. Builds a sample repository with a bare remote,
//! starts an embedded server with simulated (scripted) agents, and walks one task through plan,
//! approval, implement ⇄ review, pr and merge, printing each stage as it happens.

mod printer;
mod repo;
mod scenarios;

use crate::GlobalArgs;
use crate::commands::{project, serve};
use crate::config;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use domain::{TaskId, TaskState};
use engine::api::{NewProject, NewTask, ProjectSettings, TaskDetail};
use engine::{Engine, EngineConfig};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(120);
/// How long to watch for the worktree's removal after the merge.
const CLEANUP_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

const BANNER: &str = "\
════════════════════════════════════════════════════════════════════════════
  Atelier demo: SIMULATED agents (scripted scenarios) — no model is called
════════════════════════════════════════════════════════════════════════════";

const REQUEST: &str = "greet.sh always greets the world. Add a `--name NAME` option so it can \
greet someone else; without the option it should keep printing `Hello, world!`.";

const AFTER_HELP: &str = "\
Everything happens in a temporary directory with an embedded server; nothing else is touched and \
no model is called: the agents play scripted scenarios. The planner writes a plan, which the demo \
approves for you; the reviewer sends the work back once; the pull request is merged as a human \
would. Exits 0 once the task is done.

With --ui the demo serves the web UI instead of walking the task itself: it prints the task's
address and a sign-in, and you approve the plan and merge the pull request in the browser. It
runs until Ctrl-C.

Examples:
  atelier demo
  atelier demo --keep     # keep the repository, scenarios and data directory to explore
  atelier demo --ui --listen 127.0.0.1:8080";

/// Watch one task go from request to merged pull request, with simulated agents
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct DemoArgs {
    /// Keep the temporary directory (repository, remote, scenarios, data) and print where it is
    #[arg(long)]
    keep: bool,
    /// Serve the web UI on the demo task (you approve and merge in the browser) until Ctrl-C
    #[arg(long)]
    ui: bool,
    /// Where the demo's server listens (with --ui, the address to open)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

pub async fn run(args: DemoArgs, _global: &GlobalArgs) -> Result<()> {
    serve::init_tracing("warn");
    println!("{BANNER}\n");
    let dir = tempfile::Builder::new()
        .prefix("atelier-demo-")
        .tempdir()
        .context("cannot create a temporary directory for the demo")?;
    let outcome = demo(dir.path(), args.ui, args.listen).await;
    if args.keep {
        let root = dir.keep();
        println!("\nkept the demo directory {}:", root.display());
        println!("  greeter/    the sample repository (the task's worktree was next to it)");
        println!(
            "  remote.git  its bare remote (`git --git-dir {}/remote.git log --all`)",
            root.display()
        );
        println!("  scenarios/  the scripted agents' scenario files");
        println!("  data/       the server's data directory (store, task docs)");
    } else {
        let root = dir.path().display().to_string();
        if let Err(err) = dir.close() {
            eprintln!("warning: cannot remove the demo directory {root}: {err}");
        }
    }
    outcome
}

async fn demo(root: &Path, ui: bool, listen: std::net::SocketAddr) -> Result<()> {
    let sample = repo::create(root).await?;
    println!(
        "sample repository: {} (remote {})",
        sample.path.display(),
        sample.remote.display()
    );
    let scenario_dir = root.join("scenarios");
    scenarios::write_all(&scenario_dir)?;
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
    engine_config.stage_timeout = Duration::from_secs(60);
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
    println!("embedded server: {url}\n");

    let deadline = Instant::now() + DEADLINE;
    let outcome = if ui {
        serve_ui(&engine, &sample, &scenario_dir, &url).await
    } else {
        tokio::select! {
            outcome = walk(&engine, &sample, &scenario_dir, deadline) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    };
    engine.shutdown().await;
    let _ = stop_server.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(%err, "the embedded server failed"),
        Err(err) => tracing::warn!(%err, "the embedded server task panicked"),
    }
    outcome
}

/// `--ui`: adds the project and the task, an administrator to sign in as, prints where to look
/// and serves until Ctrl-C; the human drives the task in the browser.
async fn serve_ui(
    engine: &Engine,
    sample: &repo::SampleRepo,
    scenario_dir: &Path,
    url: &str,
) -> Result<()> {
    let password = hex::encode(rand::random::<[u8; 12]>());
    engine
        .create_user(engine::api::NewUser {
            login: "demo".into(),
            password: Some(password.clone()),
            admin: true,
            technical: true,
        })
        .await
        .context("cannot create the demo's account")?;
    let task = add_demo_task(engine, sample, scenario_dir).await?;
    println!(
        "▶ open {url}/tasks/{} and sign in as `demo` with the password {password}",
        task.id
    );
    println!("  (the board: {url}/projects/greeter) — Ctrl-C ends the demo");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    Ok(())
}

/// Adds the sample project with scripted roles and creates the demo task.
async fn add_demo_task(
    engine: &Engine,
    sample: &repo::SampleRepo,
    scenario_dir: &Path,
) -> Result<engine::api::TaskView> {
    let mut settings = ProjectSettings::default();
    settings
        .roles
        .extend(project::scripted_roles(scenario_dir)?);
    let project = engine
        .add_project(NewProject {
            path: sample.path.display().to_string(),
            name: Some("greeter".into()),
            settings: Some(settings),
            github: None,
        })
        .await
        .context("cannot add the sample project")?;
    println!(
        "project {} added (default branch {})",
        project.name, project.default_branch
    );
    let task = engine
        .create_task(NewTask {
            project: project.name.clone(),
            title: "Add a --name option to greet.sh".into(),
            body: REQUEST.into(),
            priority: 0,
            technical: true,
            pipeline: None,
        })
        .await
        .context("cannot create the demo task")?;
    println!(
        "task {} created: {}\n  request: {REQUEST}\n",
        task.id, task.title
    );
    Ok(task)
}

/// Adds the project, creates the task and drives it to done.
async fn walk(
    engine: &Engine,
    sample: &repo::SampleRepo,
    scenario_dir: &Path,
    deadline: Instant,
) -> Result<()> {
    let task = add_demo_task(engine, sample, scenario_dir).await?;

    let mut printer = printer::Printer::default();
    let mut worktree = task.worktree.clone();
    let mut state = task.state.clone();
    loop {
        let followed = tokio::time::timeout_at(deadline, async {
            let items = engine
                .logs(task.id, true)
                .await
                .context("cannot follow the task")?;
            printer.follow(items).await;
            anyhow::Ok(())
        })
        .await;
        followed.map_err(|_| too_late(&state))??;
        let detail = engine.task(task.id).await?;
        worktree = detail.task.worktree.clone().or(worktree);
        state = detail.task.state.clone();
        match &state {
            TaskState::Running { .. }
            | TaskState::Waiting { .. }
            | TaskState::Merging
            | TaskState::AwaitingChecks => {
                if Instant::now() >= deadline {
                    bail!(too_late(&state));
                }
                tokio::time::sleep(POLL).await;
            }
            TaskState::PlanGate => {
                println!("\n▶ the plan is ready: approving it automatically for the demo");
                println!(
                    "  (normally you read it in {} and run `atelier task approve {}`)",
                    detail.task.doc_path, task.id
                );
                engine
                    .approve(task.id)
                    .await
                    .context("cannot approve the plan")?;
            }
            TaskState::Closed => bail!("the demo's pull request was closed"),
            TaskState::AwaitingMerge { .. } => {
                let detail = wait_for_pull_request(engine, task.id, deadline).await?;
                if let Some(pr) = &detail.pull_request {
                    println!(
                        "\n▶ pull request opened: {} ({} ← {})",
                        pr.url, pr.base, pr.branch
                    );
                }
                println!("▶ merging the pull request as a human would");
                engine
                    .merge(task.id)
                    .await
                    .context("cannot merge the pull request")?;
                let done = wait_until_done(engine, task.id, deadline).await?;
                return report(&done, sample, worktree.as_deref()).await;
            }
            TaskState::Done { .. } => return report(&detail, sample, worktree.as_deref()).await,
            TaskState::NeedsInput { .. }
            | TaskState::Blocked { .. }
            | TaskState::Stopped { .. } => {
                bail!("the demo task stopped unexpectedly: {state}")
            }
        }
    }
}

fn too_late(state: &TaskState) -> anyhow::Error {
    anyhow!(
        "the demo task did not finish within {} s: it is still {state}",
        DEADLINE.as_secs()
    )
}

/// The engine opens the pull request just after the task reaches awaiting-merge.
async fn wait_for_pull_request(
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
            bail!(
                "the pull request of the demo task was not opened within {} s",
                DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_until_done(engine: &Engine, id: TaskId, deadline: Instant) -> Result<TaskDetail> {
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

async fn report(
    detail: &TaskDetail,
    sample: &repo::SampleRepo,
    worktree: Option<&str>,
) -> Result<()> {
    let task = &detail.task;
    println!("\n✔ final state: {}", task.state);
    if let Some(pr) = &detail.pull_request {
        println!(
            "  pull request: {} ({})",
            pr.url,
            if pr.merged { "merged" } else { "open" }
        );
    }
    let branches = repo::remote_branches(&sample.remote).await?;
    let on_remote = if branches.contains(&task.branch) {
        "is on the remote"
    } else {
        "is not on the remote"
    };
    println!(
        "  branch {} {on_remote} (remote branches: {})",
        task.branch,
        branches.join(", ")
    );
    println!("  main on the remote now:");
    for line in repo::remote_log(&sample.remote, "main", 5).await?.lines() {
        println!("    {line}");
    }
    match worktree {
        Some(path) => println!(
            "  worktree {path}: {}",
            worktree_fate(Path::new(path)).await
        ),
        None => println!("  the task had no worktree"),
    }
    println!(
        "\nThat was one task end to end. Next: `atelier serve`, then `atelier project add <repo>`."
    );
    Ok(())
}

/// Waits a little for the engine's cleanup, then says whether the worktree is gone.
async fn worktree_fate(path: &Path) -> String {
    let until = Instant::now() + CLEANUP_WAIT;
    while path.exists() && Instant::now() < until {
        tokio::time::sleep(POLL).await;
    }
    if path.exists() {
        "still there (Atelier removes it after the merge grace period)".into()
    } else {
        "removed".into()
    }
}
