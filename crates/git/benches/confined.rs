//! Benchmark of what confining the server's own git adds to a git command on a project's
//! repository, recorded in `docs/performance.md`: the same `git rev-parse --verify HEAD` run
//! through the crate's recipe unconfined (`git::run`, the reference) and confined (`Repo`'s
//! command inside the bubblewrap sandbox, seeing the repository), interleaved in one run; each
//! sample is spawn → output read. Also a task's diff as the web UI asks for it: confined
//! (`git::work_tree_diff`: the merge base, then its four other commands at once) against the old
//! way as the reference (the same five commands unconfined, one after the other).
//!
//! Run: `cargo bench -p git --bench confined` (options after `--`: `--runs N`, default 100, at
//! least 50).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

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

fn summary(label: &str, times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    println!(
        "{label:<34} n={} min {:.2} ms, median {:.2} ms, max {:.2} ms",
        times.len(),
        ms(times[0]),
        ms(median),
        ms(times[times.len() - 1])
    );
    median
}

async fn timed<F: std::future::Future>(work: F) -> Duration {
    let began = Instant::now();
    work.await;
    began.elapsed()
}

/// The commands of a task's diff (`git::work_tree_diff` on a worktree with one commit and no
/// untracked file), run unconfined through `git::run`, one after the other.
async fn diff_unconfined(worktree: &Path) {
    let base = git::run(worktree, ["merge-base", "HEAD", "main"])
        .await
        .unwrap();
    let base = base.trim();
    for extra in [&["--name-status", "-z"][..], &["--numstat", "-z"], &[]] {
        let mut args = vec![
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--ignore-submodules=all",
            "-M",
        ];
        args.extend_from_slice(extra);
        args.extend([base, "--"]);
        git::run(worktree, args).await.unwrap();
    }
    git::run(
        worktree,
        ["ls-files", "--others", "--exclude-standard", "-z"],
    )
    .await
    .unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; test runners only list or smoke-run bench targets.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs = arg("--runs", 100).max(50);
    let sandbox = sandbox::Sandbox::probe(Path::new("bwrap")).expect("a working bubblewrap");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let sample = testkit::sample_repo(&root).unwrap();
    let worktree = root.join("worktrees/t1");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut bare, mut boxed, mut bare_diff, mut boxed_diff) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        let repo = git::Repo::open(&sample.path).await.unwrap();
        repo.add_worktree(&worktree, "atelier/t1", "main")
            .await
            .unwrap();
        testkit::commit_file(&worktree, "feature.txt", "new\n", "Add a feature").unwrap();
        git::confine_server_git(sandbox);
        let task = repo.task_worktree(&worktree).unwrap();
        // Warm-up, then interleaved so both see the same machine load.
        repo.rev_parse("HEAD").await.unwrap();
        git::run(&sample.path, ["rev-parse", "--verify", "HEAD"])
            .await
            .unwrap();
        for _ in 0..runs {
            bare.push(timed(git::run(&sample.path, ["rev-parse", "--verify", "HEAD"])).await);
            boxed.push(timed(repo.rev_parse("HEAD")).await);
            bare_diff.push(timed(diff_unconfined(&worktree)).await);
            boxed_diff.push(timed(git::work_tree_diff(&task, "main", 1 << 20)).await);
        }
    });
    println!("one git command, spawn → output read ({runs} of each, interleaved):");
    let bare_median = summary("unconfined `git rev-parse`", &mut bare);
    let boxed_median = summary("confined `git rev-parse`", &mut boxed);
    println!("a task's diff, five git commands ({runs} of each, interleaved):");
    let bare_diff_median = summary("unconfined, one after the other", &mut bare_diff);
    let boxed_diff_median = summary("confined, four at once", &mut boxed_diff);
    let added = |a: Duration, b: Duration| (b.as_secs_f64() - a.as_secs_f64()) * 1000.0;
    println!(
        "added by confinement (median): {:.2} ms per command, {:.2} ms per diff",
        added(bare_median, boxed_median),
        added(bare_diff_median, boxed_diff_median)
    );
}
