//! Benchmarks of the engine through the real `atelier serve` (release build) and real scripted
//! agents, recorded in `docs/performance.md`:
//!
//! 1. stage-transition latency: agent exit observed → next agent spawned, p50/p99 over ≥ 200
//!    transitions (target p99 ≤ 50 ms), one task at a time and with many tasks at once;
//! 2. transcript ingest: a scripted agent emitting events as fast as it can, persisted and
//!    streamed to 10 followers (target ≥ 50,000 events/s).
//!
//! Run: `cargo bench -p cli --bench pipeline` (options after `--`: `--tasks N`, `--events N`).

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
        json!([[{"do": "message", "text": "done"}]]),
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

fn report(label: &str, sorted: &[i64]) {
    println!(
        "{label}: {} transitions, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        percentile(sorted, 0.50),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0)
    );
}

async fn transitions(dir: &Path) {
    let data = dir.join("data-transitions");
    let server = ServerProcess::start(Path::new(BIN), &data, &["--slots", "8"], &[])
        .await
        .unwrap();
    let tasks = arg("--tasks", 70);
    let sequential = project(&server, dir, "seq", 8).await;
    let mut ids = Vec::new();
    for n in 0..tasks {
        let id = new_task(&server, &sequential, n).await;
        wait_done(&server, id).await;
        ids.push(id);
    }
    report("sequential (one task at a time)", &latencies(&data, &ids));

    let concurrent = project(&server, dir, "conc", 8).await;
    let mut ids = Vec::new();
    for n in 0..tasks {
        ids.push(new_task(&server, &concurrent, n).await);
    }
    for id in &ids {
        wait_done(&server, *id).await;
    }
    report(
        &format!("concurrent ({tasks} tasks, 8 slots)"),
        &latencies(&data, &ids),
    );
}

async fn follow(url: String, token: String) -> (usize, bool) {
    let mut response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (mut events, mut ended, mut rest) = (0usize, false, Vec::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = rest[start..].iter().position(|b| *b == b'\n') {
            let line = &rest[start..start + end];
            if line.starts_with(br#"{"item":"event""#) {
                events += 1;
            } else if line.starts_with(br#"{"item":"end""#) {
                ended = true;
            }
            start += end + 1;
        }
        rest.drain(..start);
    }
    (events, ended)
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
    let mut roles = serde_json::Map::new();
    roles.insert(
        "plan".into(),
        json!({"harness": "scripted", "scenario": scenarios.join("plan.json")}),
    );
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
            tokio::spawn(follow(url, server.token().to_string()))
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
