//! Benchmark of the real agent CLIs driven by the real server against the model simulator,
//! recorded in `docs/performance.md`: per harness, the wall time of a whole pipeline (plan →
//! implement → review → pr, four agent runs) and the spawn-to-first-event latency of each run
//! (agent process spawned → its first transcript event stored).
//!
//! Run: `cargo bench -p cli --bench harnesses` with `ATELIER_CLAUDE_BIN`, `ATELIER_CODEX_BIN` and
//! `ATELIER_OPENCODE_BIN` set (as `scripts/test` does; `-- --tasks N`, default 3 per harness).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

use serde_json::{Value, json};
use simulator::Simulator;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{ServerProcess, sample_repo, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_atelier");

fn scenarios(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        (
            "plan",
            json!([{"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add hello.txt\n"}, {"do": "signal", "args": ["plan-ready"]}, {"do": "message", "text": "planned"}]),
        ),
        (
            "implement",
            json!([{"do": "write", "path": "hello.txt", "content": "hello\n"}, {"do": "check", "item": "Add hello.txt"}, {"do": "run", "command": "git add -A && git commit -qm hello"}, {"do": "message", "text": "done"}]),
        ),
        (
            "review",
            json!([{"do": "signal", "args": ["verdict", "ready"]}, {"do": "message", "text": "verified"}]),
        ),
        (
            "pr",
            json!([{"do": "signal", "args": ["pr-done"]}, {"do": "message", "text": "submitted"}]),
        ),
    ];
    for (stage, steps) in files {
        std::fs::write(
            dir.join(format!("{stage}.json")),
            json!({"runs": [steps]}).to_string(),
        )
        .unwrap();
    }
}

fn role(harness: &str, url: &str) -> Value {
    match harness {
        "claude-code" => json!({"harness": harness, "model": "claude-sonnet-4-5", "max_retries": 0,
            "env": {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-ant-simulated"}}),
        "codex" => json!({"harness": harness, "model": "gpt-5.5", "base_url": format!("{url}/v1"),
            "api_key_env": "SIM_API_KEY", "max_retries": 0, "env": {"SIM_API_KEY": "simulated"}}),
        _ => json!({"harness": harness, "model": "sim-model", "base_url": format!("{url}/v1"),
            "api_key_env": "SIM_API_KEY", "env": {"SIM_API_KEY": "simulated"}}),
    }
}

fn bin(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_default();
    assert!(
        path.is_file(),
        "{var} must name the CLI binary (scripts/test installs them into .tools/)"
    );
    path
}

/// Spawn → first agent event (ms) of every run of `tasks`, from the store file.
fn first_event_latencies(data: &Path, tasks: &[i64]) -> Vec<f64> {
    let db = rusqlite::Connection::open(data.join("atelier.db")).unwrap();
    let mut out = Vec::new();
    for task in tasks {
        let runs: Vec<(i64, i64)> = db
            .prepare(
                "SELECT id, spawned_us FROM runs WHERE task_id = ?1 AND spawned_us IS NOT NULL",
            )
            .unwrap()
            .query_map([task], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (run, spawned_us) in runs {
            // seq 1 is Atelier's own "agent started" status; the agent's first event follows.
            let first: i64 = db
                .query_row(
                    "SELECT MIN(created_at) FROM events WHERE run_id = ?1 AND body NOT LIKE '{\"type\":\"status\"%'",
                    [run],
                    |r| r.get(0),
                )
                .unwrap();
            out.push((first * 1000 - spawned_us) as f64 / 1000.0);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let tasks: usize = args
        .iter()
        .position(|a| a == "--tasks")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let scenario_dir = dir.path().join("scenarios");
        scenarios(&scenario_dir);
        let sim = Simulator::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), scenario_dir).await;
        let data = dir.path().join("data");
        let (claude, codex, opencode) = (bin("ATELIER_CLAUDE_BIN"), bin("ATELIER_CODEX_BIN"), bin("ATELIER_OPENCODE_BIN"));
        let server = ServerProcess::start(
            Path::new(BIN),
            &data,
            &[
                "--claude-bin", claude.to_str().unwrap(),
                "--codex-bin", codex.to_str().unwrap(),
                "--opencode-bin", opencode.to_str().unwrap(),
            ],
            &[],
        )
        .await
        .unwrap();
        for harness in ["claude-code", "codex", "opencode"] {
            let repo_dir = dir.path().join(harness);
            std::fs::create_dir_all(&repo_dir).unwrap();
            let repo = sample_repo(&repo_dir).unwrap();
            let roles: serde_json::Map<String, Value> =
                ["plan", "implement", "review", "pr"].iter().map(|s| (s.to_string(), role(harness, &sim.url()))).collect();
            let (status, body) = server
                .post("/api/projects", &json!({"path": repo.path, "name": harness, "settings": {"roles": roles}}))
                .await
                .unwrap();
            assert_eq!(status, 201, "{body}");
            let mut ids = Vec::new();
            let mut walls = Vec::new();
            for n in 0..tasks {
                let started = Instant::now();
                let (status, body) = server
                    .post("/api/tasks", &json!({"project": harness, "title": format!("bench {n}"), "body": "hello", "technical": false}))
                    .await
                    .unwrap();
                assert_eq!(status, 201, "{body}");
                let id = body["id"].as_i64().unwrap();
                wait_until(&format!("{harness} task {id}"), Duration::from_secs(300), || {
                    let server = &server;
                    async move {
                        let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
                        let state = detail["task"]["state"]["state"].as_str()?.to_string();
                        assert!(state != "blocked", "{detail:#}");
                        (state == "awaiting_merge").then_some(())
                    }
                })
                .await
                .unwrap();
                walls.push(started.elapsed().as_secs_f64());
                ids.push(id);
            }
            let latencies = first_event_latencies(&data, &ids);
            walls.sort_by(f64::total_cmp);
            println!(
                "{harness}: pipeline (4 runs) median {:.1} s over {tasks} tasks; spawn → first event over {} runs: median {:.0} ms, max {:.0} ms",
                walls[walls.len() / 2],
                latencies.len(),
                latencies[latencies.len() / 2],
                latencies[latencies.len() - 1]
            );
        }
    });
}
