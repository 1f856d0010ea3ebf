//! Benchmarks of the engine through the real `atelier serve` (release build) and real scripted
//! agents, recorded in `docs/performance.md`:
//!
//! 1. stage-transition latency: agent exit observed → next agent spawned, min/p50/p99/max over
//!    ≥ 200 transitions (target p99 ≤ 10 ms), one task at a time and with many tasks at once,
//!    agents sandboxed and unconfined, each on the host as it is and with 1,000 extra idle
//!    processes (the figure must not move by more than 2×: nothing after a run scans the host);
//! 2. transcript ingest: a scripted agent emitting events as fast as it can, persisted and
//!    streamed to 10 followers (target ≥ 50,000 events/s).
//!
//! Run: `cargo bench -p cli --bench pipeline` (options after `--`: `--tasks N`, `--block N` —
//! tasks per block, blocks alternating as is / loaded —, `--events N`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

mod common;

use common::arg;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{ServerProcess, sample_repo, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_atelier");

fn write(dir: &Path, stage: &str, runs: Value) {
    std::fs::write(
        dir.join(format!("{stage}.json")),
        serde_json::to_vec(&json!({"runs": runs})).unwrap(),
    )
    .unwrap();
}

async fn project(server: &ServerProcess, dir: &Path, name: &str, slots: u32) -> String {
    let scenarios = dir.join(format!("{name}-scenarios"));
    std::fs::create_dir_all(&scenarios).unwrap();
    write(
        &scenarios,
        "plan",
        json!([[{"do": "signal", "args": ["plan-ready"]}]]),
    );
    write(
        &scenarios,
        "implement",
        // A commit: an implement run that changes nothing is nudged, then blocked (the guards).
        json!([[
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            {"do": "run", "command": "git add -A && git commit -qm 'Add a greeting'"},
            {"do": "message", "text": "done"}
        ]]),
    );
    write(
        &scenarios,
        "review",
        json!([[{"do": "signal", "args": ["verdict", "ready"]}]]),
    );
    write(
        &scenarios,
        "pr",
        json!([[{"do": "signal", "args": ["pr-done", "--no-changes"]}]]),
    );
    let repo_dir = dir.join(name);
    std::fs::create_dir_all(&repo_dir).unwrap();
    let repo = sample_repo(&repo_dir).unwrap();
    let mut roles = serde_json::Map::new();
    for stage in ["plan", "implement", "review", "pr"] {
        roles.insert(
            stage.into(),
            json!({"harness": "scripted", "scenario": scenarios.join(format!("{stage}.json"))}),
        );
    }
    let (status, body) = server
        .post(
            "/api/projects",
            &json!({"path": repo.path, "name": name, "settings": {"roles": roles, "slots": slots}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    name.to_string()
}

async fn new_task(server: &ServerProcess, project: &str, n: usize) -> i64 {
    let (status, body) = server
        .post("/api/tasks", &json!({"project": project, "title": format!("bench {n}"), "body": "bench", "technical": false}))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

async fn wait_done(server: &ServerProcess, id: i64) {
    wait_until(
        &format!("task {id} done"),
        Duration::from_secs(120),
        || async move {
            let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
            (detail["task"]["state"]["state"] == "done").then_some(())
        },
    )
    .await
    .unwrap();
}

/// (exit → spawn) latencies in µs of consecutive runs of each task, read from the store.
fn latencies(data: &Path, tasks: &[i64]) -> Vec<i64> {
    let db = rusqlite::Connection::open(data.join("atelier.db")).unwrap();
    let mut out = Vec::new();
    for task in tasks {
        let runs: Vec<(Option<i64>, Option<i64>)> = db
            .prepare("SELECT spawned_us, exited_us FROM runs WHERE task_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([task], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for pair in runs.windows(2) {
            if let [(_, Some(exited)), (Some(spawned), _)] = pair {
                out.push(spawned - exited);
            }
        }
    }
    out.sort_unstable();
    out
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// min / p50 / p99 / max in ms, as a table cell.
fn figures(sorted: &[i64]) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2} ms",
        percentile(sorted, 0.0),
        percentile(sorted, 0.50),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0)
    )
}

/// How many idle processes the loaded half of the measurement adds to the host.
const IDLE: usize = 1000;

/// `n` idle processes (`sleep 3600`) on the host, killed and reaped when dropped: what a busy
/// machine has besides Atelier. The transition must not grow with them.
struct Idle(Vec<std::process::Child>);

impl Idle {
    fn start(n: usize) -> Idle {
        let children = (0..n)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("3600")
                    .stdin(std::process::Stdio::null())
                    .spawn()
                    .expect("start an idle process")
            })
            .collect();
        Idle(children)
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// Transitions of tasks run one at a time, in blocks of `block` tasks that alternate between
/// the host as it is and the host with [`IDLE`] extra idle processes, so both halves see the
/// same background load. Returns (as is, loaded) latencies.
async fn alternating(
    server: &ServerProcess,
    data: &Path,
    project: &str,
    tasks: usize,
    block: usize,
) -> (Vec<i64>, Vec<i64>) {
    let (mut quiet, mut loaded) = (Vec::new(), Vec::new());
    for (b, first) in (0..tasks).step_by(block).enumerate() {
        let idle = (b % 2 == 1).then(|| Idle::start(IDLE));
        let mut ids = Vec::new();
        for n in first..(first + block).min(tasks) {
            let id = new_task(server, project, n).await;
            wait_done(server, id).await;
            ids.push(id);
        }
        drop(idle);
        let into = if b % 2 == 1 { &mut loaded } else { &mut quiet };
        into.extend(latencies(data, &ids));
    }
    quiet.sort_unstable();
    loaded.sort_unstable();
    (quiet, loaded)
}

/// All `tasks` at once (8 slots), with or without the idle processes.
async fn concurrent(server: &ServerProcess, data: &Path, project: &str, tasks: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in 0..tasks {
        ids.push(new_task(server, project, n).await);
    }
    for id in &ids {
        wait_done(server, *id).await;
    }
    latencies(data, &ids)
}

fn row(label: &str, quiet: &[i64], loaded: &[i64]) {
    println!(
        "| {label} | {} + {} | {} | {} | {:.2}× / {:.2}× |",
        quiet.len(),
        loaded.len(),
        figures(quiet),
        figures(loaded),
        percentile(loaded, 0.50) / percentile(quiet, 0.50),
        percentile(loaded, 0.99) / percentile(quiet, 0.99),
    );
}

/// Stage-transition latency with agents in the sandbox (the default) and unconfined
/// (`--sandbox=none`), each as is and with [`IDLE`] extra idle processes on the host.
async fn transitions(dir: &Path) {
    let tasks = arg("--tasks", 70);
    let block = arg("--block", 10).max(1);
    println!(
        "| transitions (min / p50 / p99 / max) | n (as is + loaded) | as is | with {IDLE} idle processes | ratio p50 / p99 |"
    );
    println!("|---|---|---|---|---|");
    for (mode, args) in [
        ("bubblewrap", &["--slots", "8"][..]),
        ("none", &["--slots", "8", "--sandbox", "none"][..]),
    ] {
        let data = dir.join(format!("data-transitions-{mode}"));
        let server = ServerProcess::start(Path::new(BIN), &data, args, &[])
            .await
            .unwrap();
        let sequential = project(&server, dir, &format!("seq-{mode}"), 8).await;
        let (quiet, loaded) = alternating(&server, &data, &sequential, tasks, block).await;
        row(
            &format!("sandbox {mode}, one task at a time"),
            &quiet,
            &loaded,
        );

        let quiet_project = project(&server, dir, &format!("conc-{mode}"), 8).await;
        let quiet = concurrent(&server, &data, &quiet_project, tasks).await;
        let loaded_project = project(&server, dir, &format!("conc-idle-{mode}"), 8).await;
        let idle = Idle::start(IDLE);
        let loaded = concurrent(&server, &data, &loaded_project, tasks).await;
        drop(idle);
        row(
            &format!("sandbox {mode}, {tasks} tasks at once, 8 slots"),
            &quiet,
            &loaded,
        );
    }
}

async fn ingest(dir: &Path) {
    let events = arg("--events", 200_000);
    let data = dir.join("data-ingest");
    let server = ServerProcess::start(Path::new(BIN), &data, &[], &[])
        .await
        .unwrap();
    let scenarios = dir.join("ingest-scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    write(
        &scenarios,
        "plan",
        json!([[{"do": "burst", "count": events}, {"do": "signal", "args": ["plan-ready"]}]]),
    );
    let repo_dir = dir.join("ingest");
    std::fs::create_dir_all(&repo_dir).unwrap();
    let repo = sample_repo(&repo_dir).unwrap();
    // Every stage needs a runnable role; the task stops at the plan gate.
    let mut roles = serde_json::Map::new();
    for stage in ["plan", "implement", "review", "pr"] {
        roles.insert(
            stage.into(),
            json!({"harness": "scripted", "scenario": scenarios.join("plan.json")}),
        );
    }
    let (status, body) = server
        .post(
            "/api/projects",
            &json!({"path": repo.path, "name": "ingest", "settings": {"roles": roles}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");

    let started = Instant::now();
    let (status, body) = server
        .post(
            "/api/tasks",
            &json!({"project": "ingest", "title": "burst", "body": "burst", "technical": true}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let followers: Vec<_> = (0..10)
        .map(|_| {
            let url = format!("{}/api/tasks/{id}/logs?follow=true", server.url());
            tokio::spawn(common::follow(url, server.token().to_string()))
        })
        .collect();
    let mut received = Vec::new();
    for follower in followers {
        received.push(follower.await.unwrap());
    }
    let elapsed = started.elapsed();
    let detail = server.get(&format!("/api/tasks/{id}")).await.unwrap();
    let run = &detail["runs"][0];
    let persisted_ms =
        (run["ended_at"].as_i64().unwrap() - run["started_at"].as_i64().unwrap()).max(1);
    // The burst plus the agent's own events (session, status, tool calls, usage, turn end).
    let stored = received[0].0;
    assert!(stored >= events, "follower got {stored} of {events}");
    assert!(
        received.iter().all(|(n, ended)| *n == stored && *ended),
        "every follower got every event: {received:?}"
    );
    println!(
        "ingest: {events} events persisted in {persisted_ms} ms ({:.0}/s); streamed to 10 followers, all {stored} each, end to end in {:.0} ms ({:.0} events/s)",
        events as f64 / (persisted_ms as f64 / 1000.0),
        elapsed.as_secs_f64() * 1000.0,
        events as f64 / elapsed.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; test runners only list or smoke-run bench targets.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        transitions(dir.path()).await;
        ingest(dir.path()).await;
    });
}
