//! Benchmark of what the agent sandbox adds to an agent's start, recorded in
//! `docs/performance.md`: the same tiny agent (`/bin/true`) started through the process
//! primitives with and without the bubblewrap sandbox, interleaved in one run, from the spawn to
//! the observed exit. The sandbox gets the mounts of a real run (worktree, the repository's
//! `.git`, the agent's home, the task's doc folder, the `atelier` binary). Target: ≤ 15 ms added
//! at the median over ≥ 50 starts.
//!
//! Run: `cargo bench -p harness --bench sandbox` (options after `--`: `--starts N`, default 100).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

use harness::process::{AgentProcess, ProcessSpec};
use harness::sandbox::{Mounts, Sandbox};
use std::path::Path;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Spawn → exit observed, for one start.
async fn start_once(spec: &ProcessSpec, sandbox: Option<(&Sandbox, &Mounts)>) -> Duration {
    let began = Instant::now();
    let mut process = match sandbox {
        Some((sandbox, mounts)) => AgentProcess::spawn_sandboxed(spec, sandbox, mounts),
        None => AgentProcess::spawn(spec),
    }
    .unwrap();
    let status = process.wait().await.unwrap();
    assert!(status.success(), "{}", process.stderr_tail());
    began.elapsed()
}

fn summary(label: &str, times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    println!(
        "{label:<12} n={} min {:.2} ms, median {:.2} ms, max {:.2} ms",
        times.len(),
        ms(times[0]),
        ms(median),
        ms(times[times.len() - 1])
    );
    median
}

fn main() {
    // `cargo bench` passes `--bench`; test runners only list or smoke-run bench targets.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let starts = arg("--starts", 100).max(50);
    let sandbox = Sandbox::probe(Path::new("bwrap")).expect("a working bubblewrap");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (repo, worktree, home, doc) = (
        root.join("repo"),
        root.join("repo-worktrees/1-task"),
        root.join("homes/1-task"),
        root.join("data/tasks/1-task"),
    );
    for d in [&repo.join(".git"), &worktree, &home, &doc] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mounts = Mounts {
        read_only: vec![std::env::current_exe().unwrap()],
        writable: vec![worktree.clone(), repo.join(".git"), home, doc],
    };
    let spec = ProcessSpec {
        program: "/bin/true".into(),
        args: Vec::new(),
        cwd: worktree,
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        stdin: None,
        stdin_open: false,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut bare, mut boxed) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        // Warm-up, then interleaved so both see the same machine load.
        start_once(&spec, Some((&sandbox, &mounts))).await;
        start_once(&spec, None).await;
        for _ in 0..starts {
            bare.push(start_once(&spec, None).await);
            boxed.push(start_once(&spec, Some((&sandbox, &mounts))).await);
        }
    });
    println!("agent start, spawn → exit observed ({starts} starts each, interleaved):");
    let bare_median = summary("unconfined", &mut bare);
    let boxed_median = summary("sandboxed", &mut boxed);
    println!(
        "added by the sandbox (median, n={starts} starts of each kind): {:.2} ms (target ≤ 15 ms)",
        (boxed_median.as_secs_f64() - bare_median.as_secs_f64()) * 1000.0
    );
}
