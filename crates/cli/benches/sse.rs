//! The live stream (Server-Sent Events) under load, through the real `atelier serve` (release):
//! N concurrent subscribers of one busy task (a scripted agent writing a steady stream of
//! messages). Measures the delivery lag of every event to every subscriber (the event's store
//! time `at_us` → parsed by the subscriber) and the server's RSS (`/proc/<pid>/status`), next to
//! a reference in the same run: the same task with one subscriber. Recorded in
//! `docs/performance.md`.
//!
//! Run: `cargo bench -p cli --bench sse` (options after `--`: `--subscribers N` (default 200),
//! `--events N` (default 10000), `--runs N` (default 3)).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

mod common;

use common::{arg, now_us};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use testkit::{ServerProcess, sample_repo, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_atelier");

/// VmRSS and VmHWM of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reads the task's stream until the task reaches the plan gate; the lag of every transcript
/// event that arrived live (after `live_from`), in microseconds.
async fn subscribe(url: String, token: String, ready: tokio::sync::mpsc::Sender<()>) -> Vec<i64> {
    let mut response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    ready.send(()).await.unwrap();
    let mut lags = Vec::new();
    let mut buffer = Vec::<u8>::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        let received = now_us();
        buffer.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = buffer[start..].windows(2).position(|w| w == b"\n\n") {
            let block = &buffer[start..start + end];
            start += end + 2;
            let text = std::str::from_utf8(block).unwrap();
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            // Only the store time is read (no full JSON decoding: the client shares the cores).
            if text.contains("event: transcript") {
                let at = data.split("\"at_us\":").nth(1).unwrap();
                let digits = at.split(|c: char| !c.is_ascii_digit()).next().unwrap();
                lags.push(received - digits.parse::<i64>().unwrap());
            } else if text.contains("event: task") && data.contains("\"plan_gate\"") {
                return lags;
            }
        }
        buffer.drain(..start);
    }
    panic!("the stream ended before the plan gate");
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

struct Outcome {
    events: usize,
    p50: f64,
    p99: f64,
    max: f64,
    rss_idle_mib: f64,
    rss_peak_mib: f64,
}

/// One server, one busy task, `subscribers` followers.
async fn measure(dir: &Path, label: &str, subscribers: usize, events: usize) -> Outcome {
    let data = dir.join(format!("data-{label}"));
    let server = ServerProcess::start(Path::new(BIN), &data, &[], &[])
        .await
        .unwrap();
    let scenarios = dir.join(format!("{label}-scenarios"));
    std::fs::create_dir_all(&scenarios).unwrap();
    // A wait for the subscribers to connect, then a steady stream: 10 messages, a 1 ms pause.
    let go = scenarios.join("go");
    let wait = format!("while [ ! -e '{}' ]; do sleep 0.01; done", go.display());
    let mut steps = vec![json!({"do": "run", "command": wait})];
    for i in 0..events {
        steps.push(json!({"do": "message", "text": format!("event {i}")}));
        if i % 10 == 9 {
            steps.push(json!({"do": "sleep", "ms": 1}));
        }
    }
    steps.push(json!({"do": "signal", "args": ["plan-ready"]}));
    std::fs::write(
        scenarios.join("plan.json"),
        serde_json::to_vec(&json!({"runs": [steps]})).unwrap(),
    )
    .unwrap();
    let repo_dir = dir.join(label);
    std::fs::create_dir_all(&repo_dir).unwrap();
    let repo = sample_repo(&repo_dir).unwrap();
    let roles = json!({"plan": {"harness": "scripted", "scenario": scenarios.join("plan.json")}});
    let settings = json!({"roles": roles, "sandbox": {"read_only": [scenarios]}});
    let (status, body) = server
        .post(
            "/api/projects",
            &json!({"path": repo.path, "name": label, "settings": settings}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .post(
            "/api/tasks",
            &json!({"project": label, "title": "busy", "body": "busy", "technical": true}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();

    let (ready, mut connected) = tokio::sync::mpsc::channel(subscribers);
    let handles: Vec<_> = (0..subscribers)
        .map(|_| {
            let url = format!("{}/api/tasks/{id}/stream", server.url());
            tokio::spawn(subscribe(url, server.token().to_string(), ready.clone()))
        })
        .collect();
    for _ in 0..subscribers {
        connected.recv().await.unwrap();
    }
    let pid = server.pid();
    let (rss_idle, _) = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_idle));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let (rss, _) = rss_kib(pid);
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    std::fs::write(&go, "go").unwrap();
    let mut lags = Vec::new();
    for handle in handles {
        let got = handle.await.unwrap();
        assert!(
            got.len() >= events,
            "a subscriber got {} of {events}",
            got.len()
        );
        lags.extend(got);
    }
    sampler.abort();
    wait_until("the task at the plan gate", Duration::from_secs(30), || {
        let server = &server;
        async move {
            let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
            (detail["task"]["state"]["state"] == "plan_gate").then_some(())
        }
    })
    .await
    .unwrap();
    lags.sort_unstable();
    Outcome {
        events: lags.len(),
        p50: percentile(&lags, 0.50),
        p99: percentile(&lags, 0.99),
        max: percentile(&lags, 1.0),
        rss_idle_mib: rss_idle as f64 / 1024.0,
        rss_peak_mib: peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; test runners only list or smoke-run bench targets.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let subscribers = arg("--subscribers", 200);
    let events = arg("--events", 10_000);
    let runs = arg("--runs", 3);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        println!(
            "| run | subscribers | deliveries | lag p50 | lag p99 | lag max | server RSS connected | server RSS peak |"
        );
        for run in 1..=runs {
            for (label, n) in [("reference", 1), ("loaded", subscribers)] {
                let o = measure(dir.path(), &format!("{label}-{run}"), n, events).await;
                println!(
                    "| {run} | {n} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} MiB | {:.1} MiB |",
                    o.events, o.p50, o.p99, o.max, o.rss_idle_mib, o.rss_peak_mib
                );
            }
        }
    });
}
