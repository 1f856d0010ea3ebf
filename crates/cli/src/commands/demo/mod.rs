//! `atelier demo`: the newcomer's first minute. Builds a sample repository with a bare remote,
//! starts an embedded server with simulated (scripted) agents, and walks one task through plan,
//! approval, implement ⇄ review, pr and merge, printing each stage as it happens.

mod printer;
mod scenarios;

use crate::GlobalArgs;
use crate::commands::scratch::{self, Embedded, POLL, repo};
use crate::commands::serve;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use domain::{Stage, TaskState};
use engine::api::{NewTask, TaskDetail};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(120);
/// How long to watch for the worktree's removal after the merge.
const CLEANUP_WAIT: Duration = Duration::from_secs(10);

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
    let embedded = Embedded::start(root, listen, Duration::from_secs(60)).await?;
    let url = embedded.url.clone();
    println!("embedded server: {url}\n");

    let deadline = Instant::now() + DEADLINE;
    let outcome = if ui {
        serve_ui(&embedded, &sample, &scenario_dir, &url).await
    } else {
        tokio::select! {
            outcome = walk(&embedded, &sample, &scenario_dir, deadline) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    };
    embedded.shutdown().await;
    outcome
}

/// `--ui`: adds the project and the task, an administrator to sign in as, prints where to look
/// and serves until Ctrl-C; the human drives the task in the browser.
async fn serve_ui(
    embedded: &Embedded,
    sample: &repo::SampleRepo,
    scenario_dir: &Path,
    url: &str,
) -> Result<()> {
    let password = hex::encode(rand::random::<[u8; 12]>());
    embedded
        .engine
        .create_user(engine::api::NewUser {
            login: "demo".into(),
            password: Some(password.clone()),
            admin: true,
            technical: true,
        })
        .await
        .context("cannot create the demo's account")?;
    let task = add_demo_task(embedded, sample, scenario_dir).await?;
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
    embedded: &Embedded,
    sample: &repo::SampleRepo,
    scenario_dir: &Path,
) -> Result<engine::api::TaskView> {
    let engine = &embedded.engine;
    let project = embedded
        .add_scripted_project(sample, "greeter", scenario_dir, &Stage::STANDARD)
        .await?;
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
    embedded: &Embedded,
    sample: &repo::SampleRepo,
    scenario_dir: &Path,
    deadline: Instant,
) -> Result<()> {
    let engine = &embedded.engine;
    let task = add_demo_task(embedded, sample, scenario_dir).await?;

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
                let detail = scratch::wait_for_pull_request(engine, task.id, deadline).await?;
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
                let done = scratch::wait_until_done(engine, task.id, deadline).await?;
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
