//! Benchmarks of issue 11 item 4 through the real `atelier serve` (release build) and real
//! scripted agents, each next to a reference measured in the same run, recorded in
//! `docs/performance.md`:
//!
//! 1. ingest: one agent emits `--events` messages as fast as it can while 10 followers stream
//!    the task's log (NDJSON); events/s from the run's start to the last follower's end, next
//!    to plain batched rusqlite inserts of the same rows (same table and indexes, WAL, 2,048
//!    rows a transaction) — `--reps` times, interleaved (target ≥ 100,000 events/s and within
//!    2× of the reference);
//! 2. cpu: 100 agents each emitting 100 events/s; the server's CPU (utime + stime from
//!    `/proc/<pid>/stat`) over `--window` seconds while all 100 run (target ≤ 15 % of a core);
//! 3. create: 100 parallel task creations (`POST /api/tasks`) on a generated repository of
//!    `--files` files, next to 100 parallel raw `git worktree add` on a fresh clone of the same
//!    repository — `--create-reps` times, interleaved (target: within 1.5×).
//!
//! Run: `cargo bench -p cli --bench scale` (options after `--`: `--part ingest|cpu|create`,
//! `--events N` (200000), `--reps N` (3), `--agents N` (100), `--window S` (10), `--files N`
//! (20000), `--tasks N` (100), `--create-reps N` (1), `--bin PATH` (another `atelier` to
//! measure, e.g. an older build)).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

mod common;

use common::arg;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testkit::{ServerProcess, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_atelier");

/// The string after `name` on the command line, if any.
fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn bin() -> PathBuf {
    text_arg("--bin").map_or_else(|| PathBuf::from(BIN), PathBuf::from)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {out:?}",
        dir.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

/// A project `name` on `repo` whose every stage is the scripted `steps` (the plan stage's is
/// what matters: tasks are technical and stop at the plan gate).
async fn project(
    server: &ServerProcess,
    dir: &Path,
    name: &str,
    repo: &Path,
    steps: Value,
    slots: u32,
) {
    let scenario = dir.join(format!("{name}-plan.json"));
    std::fs::write(
        &scenario,
        serde_json::to_vec(&json!({"runs": [steps]})).unwrap(),
    )
    .unwrap();
    let mut roles = serde_json::Map::new();
    for stage in ["plan", "implement", "review", "pr"] {
        roles.insert(
            stage.into(),
            json!({"harness": "scripted", "scenario": scenario}),
        );
    }
    let (status, body) = server
        .post(
            "/api/projects",
            &json!({"path": repo, "name": name, "settings": {"roles": roles, "slots": slots}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
}

async fn new_task(server: &ServerProcess, project: &str, n: usize) -> i64 {
    let (status, body) = server
        .post(
            "/api/tasks",
            &json!({"project": project, "title": format!("{project} {n}"), "body": "bench", "technical": true}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// A repository of one commit with `files` small files, pushed to a bare `origin`: returns the
/// bare repository (clone it to get a work tree with `origin/main`).
fn generated_repo(dir: &Path, files: usize) -> PathBuf {
    let work = dir.join("generated");
    for i in 0..files {
        let sub = work.join(format!("src/m{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::write(
            sub.join(format!("f{i:05}.rs")),
            format!("// file {i}\npub fn f{i}() -> usize {{ {i} }}\n"),
        )
        .unwrap();
    }
    git(&work, &["init", "--quiet", "-b", "main"]);
    git(&work, &["config", "user.name", "Bench"]);
    git(&work, &["config", "user.email", "bench@example.invalid"]);
    // No `gc --auto` in the background (20,000 loose objects would start one): one pack, so
    // neither the clones nor Atelier's fetches start one either.
    git(&work, &["config", "gc.auto", "0"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "generated"]);
    git(&work, &["repack", "-a", "-d", "-q"]);
    let bare = dir.join("generated.git");
    git(
        dir,
        &["clone", "--quiet", "--bare", "generated", "generated.git"],
    );
    bare
}

fn clone(bare: &Path, to: &Path) -> PathBuf {
    git(
        bare.parent().unwrap(),
        &[
            "clone",
            "--quiet",
            bare.to_str().unwrap(),
            to.to_str().unwrap(),
        ],
    );
    to.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// 1. Ingest

/// One burst: events/s from the run's start (the store's clock) to the last follower's end.
async fn ingest_once(server: &ServerProcess, n: usize) -> (i64, f64, usize) {
    let id = new_task(server, "ingest", n).await;
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
    let ended = now_ms();
    let detail = server.get(&format!("/api/tasks/{id}")).await.unwrap();
    let started = detail["runs"][0]["started_at"].as_i64().unwrap();
    let stored = received[0].0;
    assert!(
        received.iter().all(|(count, end)| *count == stored && *end),
        "every follower got every event: {received:?}"
    );
    let secs = ((ended - started).max(1)) as f64 / 1000.0;
    (id, stored as f64 / secs, stored)
}

/// The reference: the task's stored rows inserted into a fresh database with the same `events`
/// table and indexes (WAL, synchronous NORMAL, as the store), 2,048 rows a transaction.
fn plain_inserts(data: &Path, task: i64, scratch: &Path) -> f64 {
    let source = rusqlite::Connection::open(data.join("atelier.db")).unwrap();
    let rows: Vec<(i64, i64, i64, String, i64)> = source
        .prepare("SELECT run_id, seq, task_id, body, created_at FROM events WHERE task_id = ?1 ORDER BY run_id, seq")
        .unwrap()
        .query_map([task], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let schema: Vec<String> = source
        .prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL ORDER BY type DESC")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).unwrap();
    let mut db = rusqlite::Connection::open(scratch.join("plain.db")).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.pragma_update(None, "synchronous", "NORMAL").unwrap();
    for sql in &schema {
        // The foreign keys point at tables this database does not have.
        let sql = sql
            .replace("REFERENCES runs(id)", "")
            .replace("REFERENCES tasks(id)", "");
        db.execute_batch(&sql).unwrap();
    }
    let started = Instant::now();
    for chunk in rows.chunks(2048) {
        let tx = db.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events (run_id, seq, task_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            for (run, seq, task, body, at) in chunk {
                insert
                    .execute(rusqlite::params![run, seq, task, body, at])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    rows.len() as f64 / started.elapsed().as_secs_f64()
}

async fn ingest(dir: &Path) {
    let events = arg("--events", 200_000);
    let reps = arg("--reps", 3);
    let data = dir.join("data-ingest");
    let server = ServerProcess::start(&bin(), &data, &[], &[]).await.unwrap();
    let parent = dir.join("ingest-repo");
    std::fs::create_dir_all(&parent).unwrap();
    let repo = testkit::sample_repo(&parent).unwrap();
    project(
        &server,
        dir,
        "ingest",
        &repo.path,
        json!([{"do": "burst", "count": events}, {"do": "signal", "args": ["plan-ready"]}]),
        4,
    )
    .await;
    let (mut served, mut plain, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let (task, rate, stored) = ingest_once(&server, rep).await;
        let reference = plain_inserts(&data, task, &dir.join("plain"));
        println!(
            "ingest {}: {stored} events to 10 followers at {rate:.0} events/s; plain batched inserts of the same rows: {reference:.0} rows/s (×{:.2})",
            rep + 1,
            reference / rate
        );
        served.push(rate);
        plain.push(reference);
        ratios.push(reference / rate);
    }
    let (a, b, c) = spread(&mut served);
    let (d, e, f) = spread(&mut plain);
    let (g, h, i) = spread(&mut ratios);
    println!(
        "ingest over {reps}: to 10 followers min/median/max {a:.0} / {b:.0} / {c:.0} events/s; plain inserts {d:.0} / {e:.0} / {f:.0} rows/s; plain ÷ served {g:.2} / {h:.2} / {i:.2}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. CPU at N agents × 100 events/s

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn running_agents(data: &Path) -> i64 {
    let db = rusqlite::Connection::open(data.join("atelier.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM runs WHERE spawned_us IS NOT NULL AND exited_us IS NULL",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn unfinished_runs(data: &Path) -> i64 {
    let db = rusqlite::Connection::open(data.join("atelier.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM runs WHERE exited_us IS NULL",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn stored_events(data: &Path) -> i64 {
    let db = rusqlite::Connection::open(data.join("atelier.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

async fn cpu(dir: &Path) {
    let agents = arg("--agents", 100);
    let window = arg("--window", 10);
    let data = dir.join("data-cpu");
    let slots = agents.to_string();
    let ingest_window = text_arg("--ingest-window-ms");
    let env: Vec<(&str, &str)> = ingest_window
        .as_deref()
        .map(|ms| ("ATELIER_INGEST_WINDOW_MS", ms))
        .into_iter()
        .collect();
    let server = ServerProcess::start(&bin(), &data, &["--slots", &slots], &env)
        .await
        .unwrap();
    let parent = dir.join("cpu-repo");
    std::fs::create_dir_all(&parent).unwrap();
    let repo = testkit::sample_repo(&parent).unwrap();
    // Long enough to cover starting every agent and the window.
    let count = 100 * (window + 30);
    project(
        &server,
        dir,
        "cpu",
        &repo.path,
        json!([{"do": "burst", "count": count, "per_second": 100.0}, {"do": "signal", "args": ["plan-ready"]}]),
        agents as u32,
    )
    .await;
    let server = &server;
    futures::future::join_all((0..agents).map(|n| new_task(server, "cpu", n))).await;
    wait_until(
        &format!("{agents} agents running"),
        Duration::from_secs(60),
        || async { (running_agents(&data) == agents as i64).then_some(()) },
    )
    .await
    .unwrap();
    let per_second = clock_ticks_per_second();
    let (ticks, events, started) = (
        cpu_ticks(server.pid()),
        stored_events(&data),
        Instant::now(),
    );
    // The measurement window itself (a benchmark, not a test waiting for a condition).
    tokio::time::sleep(Duration::from_secs(window as u64)).await;
    let (ticks_after, events_after, elapsed) = (
        cpu_ticks(server.pid()),
        stored_events(&data),
        started.elapsed(),
    );
    let still = running_agents(&data);
    let cpu = (ticks_after - ticks) as f64 / per_second / elapsed.as_secs_f64() * 100.0;
    println!(
        "cpu: {agents} agents × 100 events/s ({still} still running at the end; ingest window {} ms): server CPU {cpu:.1} % of one core over {:.1} s; {:.0} events/s stored",
        ingest_window.as_deref().unwrap_or("default"),
        elapsed.as_secs_f64(),
        (events_after - events) as f64 / elapsed.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Parallel task creation next to raw `git worktree add`

/// 100 raw `git worktree add` at once in `repo` (as Atelier made a worktree before: a new
/// branch from `origin/main`): wall time and how many git refused.
async fn raw_adds(repo: &Path, tasks: usize) -> (Duration, usize) {
    let root = repo.parent().unwrap().join("raw-worktrees");
    let started = Instant::now();
    let adds = (0..tasks).map(|n| {
        let dir = root.join(format!("w{n}"));
        let branch = format!("bench/w{n}");
        tokio::process::Command::new("git")
            .current_dir(repo)
            .args(["worktree", "add", "--quiet", "--no-track", "-b", &branch])
            .arg(&dir)
            .arg("refs/remotes/origin/main")
            .output()
    });
    let outs = futures::future::join_all(adds).await;
    let elapsed = started.elapsed();
    let failed = outs
        .iter()
        .filter(|out| !out.as_ref().unwrap().status.success())
        .count();
    if let Some(out) = outs.iter().flatten().find(|out| !out.status.success()) {
        println!(
            "  a raw add failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    (elapsed, failed)
}

async fn create(dir: &Path) {
    let files = arg("--files", 20_000);
    let tasks = arg("--tasks", 100);
    let reps = arg("--create-reps", 1);
    let made = Instant::now();
    let bare = generated_repo(dir, files);
    println!(
        "create: generated a repository of {files} files in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let data = dir.join("data-create");
    let server = ServerProcess::start(&bin(), &data, &[], &[]).await.unwrap();
    let server = &server;
    let (mut ratios, mut raws, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let raw_repo = clone(&bare, &dir.join(format!("raw-{rep}/app")));
        let (raw, failed) = raw_adds(&raw_repo, tasks).await;
        println!(
            "create {}: {tasks} parallel raw `git worktree add` {:.2} s ({failed} refused by git)",
            rep + 1,
            raw.as_secs_f64()
        );
        // Each side leaves 100 worktrees of `--files` files: removing 2 million files takes
        // minutes, left to the temporary folder's removal at the end (mind the disk).

        let ours_repo = clone(&bare, &dir.join(format!("ours-{rep}/app")));
        let name = format!("create{rep}");
        project(
            server,
            dir,
            &name,
            &ours_repo,
            json!([{"do": "signal", "args": ["plan-ready"]}]),
            1,
        )
        .await;
        // A client without the test client's deadline: on a slow disk a creation among 100
        // can take minutes, as the raw adds do.
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let post = |n: usize| {
            let request = client
                .post(format!("{}/api/tasks", server.url()))
                .bearer_auth(server.token())
                .json(&json!({"project": name, "title": format!("{name} {n}"), "body": "bench", "technical": true}));
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 201, "{:?}", response.text().await);
            }
        };
        let started = Instant::now();
        let ids = futures::future::join_all((0..tasks).map(post)).await;
        let elapsed = started.elapsed();
        assert_eq!(ids.len(), tasks);
        let listed = git(&ours_repo, &["worktree", "list", "--porcelain"]);
        assert_eq!(
            listed.matches("worktree ").count(),
            tasks + 1,
            "every task has its worktree"
        );
        println!(
            "create {}: {tasks} parallel task creations {:.2} s; {tasks} parallel raw `git worktree add` {:.2} s ({failed} refused by git); ×{:.2}",
            rep + 1,
            elapsed.as_secs_f64(),
            raw.as_secs_f64(),
            elapsed.as_secs_f64() / raw.as_secs_f64()
        );
        ratios.push(elapsed.as_secs_f64() / raw.as_secs_f64());
        raws.push(raw.as_secs_f64());
        ours.push(elapsed.as_secs_f64());
        // Wait for the planners (one slot) so the next round is not measured beside them.
        wait_until("planners done", Duration::from_secs(300), || async {
            (unfinished_runs(&data) == 0).then_some(())
        })
        .await
        .unwrap();
    }
    let (a, b, c) = spread(&mut ours);
    let (d, e, f) = spread(&mut raws);
    let (g, h, i) = spread(&mut ratios);
    println!(
        "create over {reps}: Atelier min/median/max {a:.2} / {b:.2} / {c:.2} s; raw git {d:.2} / {e:.2} / {f:.2} s; ratio {g:.2} / {h:.2} / {i:.2}"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; test runners only list or smoke-run bench targets.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let part = text_arg("--part");
    let wants = |name: &str| part.as_deref().is_none_or(|p| p == name);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        if wants("ingest") {
            ingest(dir.path()).await;
        }
        if wants("cpu") {
            cpu(dir.path()).await;
        }
        if wants("create") {
            create(dir.path()).await;
        }
    });
}
