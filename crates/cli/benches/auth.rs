//! Benchmark of what authentication costs a request, through the real `atelier serve` (release
//! build) on loopback: the same cheap route answered to an API token (a SHA-256 and one indexed
//! lookup of the token, its user and, for `/api/me`, the account) and to a browser session,
//! next to an open route measured in the same run (`/healthz`, no authentication at all).
//! Rounds alternate the three so a noisy neighbour hits them alike.
//!
//! Run: `cargo bench -p cli --bench auth` (`-- --requests N`, default 2000 per kind).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

use serde_json::json;
use std::path::Path;
use std::time::Instant;
use testkit::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_atelier");

fn requests() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, values: &mut [f64]) {
    values.sort_by(f64::total_cmp);
    println!(
        "{label:<42} n={:<5} min {:>6.3} ms  p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>6.3} ms",
        values.len(),
        values[0],
        percentile(values, 0.50),
        percentile(values, 0.99),
        values[values.len() - 1]
    );
}

async fn measure(dir: &Path) {
    let server = ServerProcess::start(Path::new(BIN), &dir.join("data"), &[], &[])
        .await
        .unwrap();
    let base = server.url().to_string();
    let admin = server.client();
    let (status, _) = admin
        .post(
            "/api/users",
            &json!({"login": "bench", "password": "bench-long-password"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let login = http
        .post(format!("{base}/api/login"))
        .json(&json!({"login": "bench", "password": "bench-long-password"}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = server.token().to_string();
    let (mut open, mut with_token, mut with_session) = (Vec::new(), Vec::new(), Vec::new());
    let timed = |request: reqwest::RequestBuilder| async move {
        let started = Instant::now();
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap();
        started.elapsed().as_secs_f64() * 1000.0
    };
    // Warm the connection pool and the server.
    for _ in 0..50 {
        timed(http.get(format!("{base}/healthz"))).await;
    }
    for _ in 0..requests() {
        open.push(timed(http.get(format!("{base}/healthz"))).await);
        with_token.push(timed(http.get(format!("{base}/api/me")).bearer_auth(&token)).await);
        with_session
            .push(timed(http.get(format!("{base}/api/me")).header("cookie", &cookie)).await);
    }
    println!(
        "authentication overhead, {} requests of each kind:",
        requests()
    );
    report("reference: GET /healthz (no authentication)", &mut open);
    report("GET /api/me with an API token", &mut with_token);
    report("GET /api/me with a session cookie", &mut with_session);
}

fn main() {
    // `cargo bench` passes `--bench`; test runners only list or smoke-run bench targets.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(measure(dir.path()));
}
