//! # `harnesses`: the real agent CLIs, driven by the real server, against the model simulator
//!
//! ```text
//! cargo bench -p cli --bench harnesses [-- OPTIONS]
//!
//!   --harness NAME   claude-code, codex or opencode; repeatable or a comma list
//!                    (default: all three)
//!   --mode MODE      one-shot, warm or both (default: both)
//!   --handoffs N     hand-offs measured per harness and mode, at least (default 20)
//!   --boots N        bare CLI starts for the same-run reference (default 10)
//!   --model-latency-ms N
//!                    the simulated model waits N ms before each answer (default 0: at
//!                    once), so that runs last like real ones and a warm standby has the
//!                    time it would have with a real model
//!   --trace          also print each task's timeline: runs spawned/exited, model requests
//! ```
//!
//! Each chosen harness needs its CLI: `ATELIER_CLAUDE_BIN`, `ATELIER_CODEX_BIN`,
//! `ATELIER_OPENCODE_BIN` (`scripts/test` installs the pinned CLIs into `.tools/` and sets them).
//! A chosen CLI that is missing fails the bench; it is never skipped. Figures are recorded in
//! `docs/performance.md` ("Real harnesses against the model simulator").
//!
//! The real `atelier serve` (release build, sandboxed agents, `--warm-limit 2`) drives the real
//! CLIs against the in-process model simulator, which answers at once (zero latency; or after
//! `--model-latency-ms`) and records per request when it arrived and when its answer ended (µs
//! since the epoch: the clock of the store's `runs.spawned_us`/`exited_us`; the latency is
//! inside that interval, so it is model time and the arrival stays the moment the CLI asked). Tasks run one after the other, each the default
//! 4-run automated pipeline: plan → implement → review → pr (non-technical owner: the plan gate
//! passes by itself), until at least `--handoffs` hand-offs of the mode were seen.
//!
//! Modes: **one-shot** (the roles' default session) and **warm** (`"session": "long-lived"` in
//! every role: the server starts the likely successor stage's process ahead, warm standby). A
//! harness without a long-lived mode is refused by the server (400 "no long-lived session
//! mode"); the bench then says the warm figures are not available for it and goes on.
//!
//! Definitions (each figure min / median / max):
//! - a run's **first model request**: the first request the simulator answered from that run's
//!   stage script (answer label `<stage> #<n> …`) after the previous run's exit; its **last
//!   answer**: the end of the last such response before the run's process exit.
//! - **hand-off** = the previous run's process exit as the server recorded it (`exited_us`) →
//!   the next run's first model request; split into *server* (exit → next process spawned or
//!   handed its prompt, `spawned_us`: the supervisor's end of run, the transition, the dispatch)
//!   and *CLI* (that → its first model request: boot, or a warm process reading its prompt).
//!   Also shown: the **user-visible hand-off**, the previous run's last answer → the next
//!   run's first model request (adds the previous CLI's own exit after its last answer). In
//!   warm mode, hand-offs whose successor was a warm process and the others (plan →
//!   implement: behind the plan gate, never warmed) are counted apart.
//! - **warm process up before its run came**: from the server's log (`idle_ms` of each
//!   hand-off), per stage: how long the standby had been booting or idle when its run was
//!   handed to it.
//! - **pipeline**: wall = task created (POST sent) → `awaiting_merge` seen (polled every
//!   10 ms); model time = the union of the task's model requests' [received, answer ended]
//!   (the sum when they do not overlap); overhead = wall − model time, and, leaving the first
//!   run's cold start out (a task's first run cannot be warm), wall from the first model
//!   request − model time. That splits into the time inside the runs (first model request →
//!   exit; of it, the CLI's own steps — an answer's end → the run's next request — and each
//!   run's last answer → exit), the hand-offs, and the tail after the last run (its exit →
//!   `awaiting_merge` seen: the publish). **Atelier's own share** is the time no CLI of the task is
//!   at work: task created → first process spawned, each hand-off's server part, and the
//!   publish tail; the rest of the overhead is the CLIs' own (boots, steps and tools, exits).
//! - same-run **reference** per harness: the bare CLI, started directly (the command line
//!   Atelier builds, without server or sandbox) against the same simulator with the `boot`
//!   script (two shell calls, then a message): start → first model request, each answer →
//!   its next request (the CLI's own steps), and last answer → process exit. One unmeasured
//!   start first warms the page cache and the CLI's home. For the warm mode of a harness with
//!   a long-lived mode, also the bare long-lived CLI started with nothing on stdin (and the
//!   warm environment), left to boot until idle (the CPU time of its process tree, a bridge's
//!   CLI included, unchanged for 0.5 s), then given its prompt: prompt → first model request,
//!   and last answer → exit (stdin closed at the end of its turn, as the supervisor does).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

#[path = "harnesses/bare.rs"]
mod bare;
mod common;

use bare::{Boot, bare_boot, bare_warm};
use common::now_us;
use harness::Harness;
use serde_json::{Value, json};
use simulator::{RecordedRequest, Simulator};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{ServerProcess, sample_repo};

const BIN: &str = env!("CARGO_BIN_EXE_atelier");
const HARNESSES: [&str; 3] = ["claude-code", "codex", "opencode"];
/// How long one task may take before the bench fails.
const TASK_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    OneShot,
    Warm,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::OneShot => "one-shot",
            Mode::Warm => "warm",
        }
    }
}

struct Options {
    harnesses: Vec<String>,
    modes: Vec<Mode>,
    handoffs: usize,
    boots: usize,
    trace: bool,
    model_latency_ms: u64,
}

fn usage(problem: &str) -> ! {
    panic!(
        "{problem}\nusage: cargo bench -p cli --bench harnesses -- [--harness claude-code,codex,opencode] \
         [--mode one-shot|warm|both] [--handoffs N] [--boots N] [--model-latency-ms N] [--trace]"
    )
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options {
        harnesses: Vec::new(),
        modes: vec![Mode::OneShot, Mode::Warm],
        handoffs: 20,
        boots: 10,
        trace: false,
        model_latency_ms: 0,
    };
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| usage(&format!("{} needs a value", args[i])))
        };
        let number = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| usage(&format!("{} needs a positive number, not {v}", args[i])))
        };
        match args[i].as_str() {
            "--bench" => {
                i += 1;
                continue;
            }
            "--trace" => {
                o.trace = true;
                i += 1;
                continue;
            }
            "--harness" => {
                for name in value().split(',').filter(|s| !s.is_empty()) {
                    if !HARNESSES.contains(&name) {
                        usage(&format!("no harness {name}"));
                    }
                    if !o.harnesses.iter().any(|h| h == name) {
                        o.harnesses.push(name.to_string());
                    }
                }
            }
            "--mode" => {
                o.modes = match value().as_str() {
                    "one-shot" => vec![Mode::OneShot],
                    "warm" => vec![Mode::Warm],
                    "both" => vec![Mode::OneShot, Mode::Warm],
                    other => usage(&format!("no mode {other}")),
                }
            }
            "--handoffs" => o.handoffs = number(value()),
            "--boots" => o.boots = number(value()),
            "--model-latency-ms" => {
                let v = value();
                o.model_latency_ms = v.parse().unwrap_or_else(|_| {
                    usage(&format!("--model-latency-ms needs a number of ms, not {v}"))
                });
            }
            other => usage(&format!("unknown option {other}")),
        }
        i += 2;
    }
    if o.harnesses.is_empty() {
        o.harnesses = HARNESSES.iter().map(|h| h.to_string()).collect();
    }
    o
}

/// The CLI of `harness`: its server flag and path. Missing: the bench fails, loudly.
fn cli(harness: &str) -> (&'static str, PathBuf) {
    let (var, flag) = match harness {
        "claude-code" => ("ATELIER_CLAUDE_BIN", "--claude-bin"),
        "codex" => ("ATELIER_CODEX_BIN", "--codex-bin"),
        _ => ("ATELIER_OPENCODE_BIN", "--opencode-bin"),
    };
    match std::env::var_os(var).map(PathBuf::from) {
        Some(path) if path.is_file() => (flag, path),
        other => panic!(
            "the {harness} CLI is needed for this bench: {}; run `scripts/test` once (it installs \
             the pinned CLIs into .tools/) and set {var}, or leave {harness} out with --harness",
            match other {
                Some(path) => format!("{var}={} is not a file", path.display()),
                None => format!("{var} is not set"),
            }
        ),
    }
}

fn adapter(harness: &str, bin: PathBuf) -> Box<dyn Harness> {
    match harness {
        "claude-code" => Box::new(harness::claude::ClaudeHarness::new(bin)),
        "codex" => Box::new(harness::codex::CodexHarness::new(bin)),
        _ => Box::new(harness::opencode::OpenCodeHarness::new(bin)),
    }
}

/// The role of every stage on `harness`, pointed at the simulator at `url`.
fn role(harness: &str, url: &str, mode: Mode) -> Value {
    let mut role = match harness {
        "claude-code" => json!({"harness": harness, "model": "claude-sonnet-4-5", "max_retries": 0,
            "env": {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-ant-simulated"}}),
        "codex" => json!({"harness": harness, "model": "gpt-5.5", "base_url": format!("{url}/v1"),
            "api_key_env": "SIM_API_KEY", "max_retries": 0, "env": {"SIM_API_KEY": "simulated"}}),
        _ => json!({"harness": harness, "model": "sim-model", "base_url": format!("{url}/v1"),
            "api_key_env": "SIM_API_KEY", "env": {"SIM_API_KEY": "simulated"}}),
    };
    if mode == Mode::Warm {
        role["session"] = json!("long-lived");
    }
    role
}

/// The simulated model's scripts: the four stages (each through the CLI's own tools), and
/// `boot`, two shell calls and a message, for the bare CLI starts.
fn scenarios(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        (
            "plan",
            json!([{"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add hello.txt\n"},
                   {"do": "signal", "args": ["plan-ready"]}, {"do": "message", "text": "Planned."}]),
        ),
        (
            "implement",
            json!([{"do": "write", "path": "hello.txt", "content": "hello\n"},
                   {"do": "check", "item": "Add hello.txt"},
                   {"do": "run", "command": "git add -A && git commit -qm hello"},
                   {"do": "message", "text": "Implemented."}]),
        ),
        (
            "review",
            json!([{"do": "signal", "args": ["verdict", "ready"]}, {"do": "message", "text": "Verified."}]),
        ),
        (
            "pr",
            json!([{"do": "signal", "args": ["pr-done"]}, {"do": "message", "text": "Submitted."}]),
        ),
        // Two shell steps, as the stages' own: the same-run reference of a CLI's steps.
        (
            "boot",
            json!([{"do": "run", "command": "true"}, {"do": "run", "command": "git status --short"},
                   {"do": "message", "text": "Hello."}]),
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

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// `(min, median, max)`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    assert!(!values.is_empty(), "no value to summarize");
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], median, v[n - 1])
}

/// One row of a figure table: `| what | n | min / median / max unit |`.
fn row(what: &str, values: &[f64], unit: &str) {
    if values.is_empty() {
        println!("| {what} | 0 | – |");
        return;
    }
    let (min, median, max) = spread(values);
    let f = |x: f64| {
        if unit == "s" {
            format!("{x:.2}")
        } else {
            format!("{x:.0}")
        }
    };
    println!(
        "| {what} | {} | {} / {} / {} {unit} |",
        values.len(),
        f(min),
        f(median),
        f(max)
    );
}

/// Whether `request` was answered from `stage`'s script.
fn scripted(request: &RecordedRequest, stage: &str) -> bool {
    request
        .answer
        .as_deref()
        .and_then(|a| a.strip_prefix(stage))
        .is_some_and(|rest| rest.starts_with(" #"))
}

/// One run of a task, from the store and the simulator's log.
#[derive(Debug)]
struct Run {
    stage: String,
    mark: String,
    spawned_us: i64,
    exited_us: i64,
    /// Its first scripted model request arrived.
    first_us: i64,
    /// Its last scripted answer ended.
    last_end_us: i64,
}

/// What one task measured.
struct TaskFigures {
    runs: Vec<Run>,
    /// Summed over the runs: first model request → process exit.
    inside_ms: f64,
    /// Of it, summed: an answer's end → the same run's next model request (the CLI's own work
    /// between two requests: its tools, bookkeeping and the next request's preparation).
    steps_ms: f64,
    /// Those steps one by one (ms), after a run's first shell call and after its later ones
    /// (a Write, say, counts in neither).
    first_shell_steps: Vec<f64>,
    later_shell_steps: Vec<f64>,
    /// Of it, summed: a run's last answer → its process exit.
    exits_ms: f64,
    /// The last run's exit → `awaiting_merge` seen (the publish, polled every 10 ms).
    tail_ms: f64,
    /// Model requests of the task.
    requests: usize,
    wall_ms: f64,
    model_ms: f64,
    /// Task created → its first model request.
    cold_start_ms: f64,
    /// Task created (POST sent) → its first run's process spawned.
    first_spawn_ms: f64,
}

impl TaskFigures {
    /// Atelier's own share of the wall time: while no CLI of the task is at work — task
    /// created → first process spawned, each previous exit → next process spawned or handed
    /// its prompt, and the last exit → `awaiting_merge` seen.
    fn atelier_ms(&self) -> f64 {
        let handoffs: f64 = self
            .runs
            .windows(2)
            .map(|p| ms(p[1].spawned_us - p[0].exited_us))
            .sum();
        self.first_spawn_ms + handoffs + self.tail_ms
    }

    /// The CLIs' own share: wall − model time − Atelier's share.
    fn cli_ms(&self) -> f64 {
        self.wall_ms - self.model_ms - self.atelier_ms()
    }
}

/// The union of the requests' [received, ended] intervals, in µs (an answer still streaming
/// counts until `end`).
fn busy_us(requests: &[&RecordedRequest], end: i64) -> i64 {
    let mut spans: Vec<(u64, u64)> = requests
        .iter()
        .map(|r| {
            let ended = r.finished_at_us.unwrap_or(end as u64);
            (r.received_at_us, ended)
        })
        .collect();
    spans.sort_unstable();
    let (mut total, mut cur): (u64, Option<(u64, u64)>) = (0, None);
    for (a, b) in spans {
        cur = match cur {
            Some((s, e)) if a <= e => Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((s, e)) = cur {
        total += e - s;
    }
    total as i64
}

struct Bench<'a> {
    server: &'a ServerProcess,
    sim: &'a Simulator,
    data: PathBuf,
    trace: bool,
}

impl Bench<'_> {
    /// Creates a task of `project`, waits for `awaiting_merge`, and reads its figures.
    async fn task(&self, project: &str, n: usize) -> TaskFigures {
        let created = now_us();
        let (status, body) = self
            .server
            .post(
                "/api/tasks",
                &json!({"project": project, "title": format!("bench {n}"), "body": "Add hello.txt", "technical": false}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_i64().unwrap();
        let deadline = tokio::time::Instant::now() + TASK_DEADLINE;
        let end = loop {
            let detail = self.server.get(&format!("/api/tasks/{id}")).await.unwrap();
            let seen = now_us();
            let state = detail["task"]["state"]["state"]
                .as_str()
                .unwrap_or_default();
            if state == "awaiting_merge" {
                break seen;
            }
            assert!(
                !matches!(state, "blocked" | "failed" | "stopped" | "done"),
                "{project}: task {id} ended in {state}:\n{detail:#}\n{}",
                self.server.logs()
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "{project}: task {id} not awaiting merge after {TASK_DEADLINE:?}: {detail:#}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let db = rusqlite::Connection::open(self.data.join("atelier.db")).unwrap();
        let rows: Vec<(String, String, i64, i64)> = db
            .prepare(
                "SELECT stage, mark, spawned_us, exited_us FROM runs WHERE task_id = ?1 ORDER BY id",
            )
            .unwrap()
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let all = self.sim.requests();
        let mine: Vec<&RecordedRequest> = all
            .iter()
            .filter(|r| (created..=end).contains(&(r.received_at_us as i64)))
            .collect();
        let mut runs: Vec<Run> = Vec::new();
        let mut steps_us = 0;
        let (mut first_shell_steps, mut later_shell_steps) = (Vec::new(), Vec::new());
        for (stage, mark, spawned_us, exited_us) in rows {
            let after = runs.last().map_or(created, |r| r.exited_us);
            let own: Vec<&&RecordedRequest> = mine
                .iter()
                .filter(|r| {
                    let at = r.received_at_us as i64;
                    scripted(r, &stage) && at >= after && at <= exited_us
                })
                .collect();
            assert!(
                !own.is_empty(),
                "{project}: the {stage} run of task {id} made no model request"
            );
            let mut shells = 0;
            for p in own.windows(2) {
                let gap =
                    p[1].received_at_us as i64 - p[0].finished_at_us.unwrap_or_default() as i64;
                steps_us += gap;
                if p[0].answer.as_deref().is_some_and(|a| {
                    ["Bash", "bash", "exec_command", "shell_command", "shell"]
                        .iter()
                        .any(|shell| a.ends_with(&format!("tool {shell}")))
                }) {
                    shells += 1;
                    match shells {
                        1 => first_shell_steps.push(ms(gap)),
                        _ => later_shell_steps.push(ms(gap)),
                    }
                }
            }
            runs.push(Run {
                first_us: own[0].received_at_us as i64,
                last_end_us: own.iter().filter_map(|r| r.finished_at_us).max().unwrap() as i64,
                stage,
                mark,
                spawned_us,
                exited_us,
            });
        }
        if self.trace {
            let mut lines: Vec<(i64, String)> = mine
                .iter()
                .map(|r| {
                    let took = r.finished_at_us.unwrap_or(r.received_at_us) - r.received_at_us;
                    (
                        r.received_at_us as i64,
                        format!(
                            "request ({} µs): {}",
                            took,
                            r.answer.as_deref().unwrap_or("?")
                        ),
                    )
                })
                .collect();
            for r in &runs {
                lines.push((
                    r.spawned_us,
                    format!("{} {} spawned / handed its prompt", r.stage, r.mark),
                ));
                lines.push((r.exited_us, format!("{} exited", r.stage)));
            }
            lines.sort_by_key(|l| l.0);
            println!("task {id} timeline (ms since created):");
            for (at, what) in lines {
                println!("  {:>8.1}  {what}", ms(at - created));
            }
            println!("  {:>8.1}  awaiting merge seen", ms(end - created));
        }
        TaskFigures {
            inside_ms: runs.iter().map(|r| ms(r.exited_us - r.first_us)).sum(),
            steps_ms: ms(steps_us),
            first_shell_steps,
            later_shell_steps,
            exits_ms: runs.iter().map(|r| ms(r.exited_us - r.last_end_us)).sum(),
            tail_ms: ms(end - runs.last().map_or(end, |r| r.exited_us)),
            requests: mine.len(),
            wall_ms: ms(end - created),
            model_ms: ms(busy_us(&mine, end)),
            cold_start_ms: ms(runs[0].first_us - created),
            first_spawn_ms: ms(runs[0].spawned_us - created),
            runs,
        }
    }
}

/// Hand-off figures (ms) over pairs of consecutive runs.
#[derive(Default)]
struct HandOffs {
    /// Previous exit → next first request.
    total: Vec<f64>,
    /// Previous exit → next spawned / handed its prompt.
    server: Vec<f64>,
    /// Next spawned → its first request.
    cli: Vec<f64>,
    /// Previous last answer → next first request.
    visible: Vec<f64>,
    /// Previous last answer → previous exit.
    exit_wait: Vec<f64>,
    /// The hand-off (`total`) per pair of stages, in order of appearance.
    pairs: Vec<(String, Vec<f64>)>,
}

impl HandOffs {
    fn add(&mut self, a: &Run, b: &Run) {
        self.total.push(ms(b.first_us - a.exited_us));
        self.server.push(ms(b.spawned_us - a.exited_us));
        self.cli.push(ms(b.first_us - b.spawned_us));
        self.visible.push(ms(b.first_us - a.last_end_us));
        self.exit_wait.push(ms(a.exited_us - a.last_end_us));
        let pair = format!("{} → {}", a.stage, b.stage);
        let total = ms(b.first_us - a.exited_us);
        match self.pairs.iter_mut().find(|(p, _)| *p == pair) {
            Some((_, values)) => values.push(total),
            None => self.pairs.push((pair, vec![total])),
        }
    }

    fn print(&self, title: &str) {
        let pairs: Vec<&str> = self.pairs.iter().map(|(p, _)| p.as_str()).collect();
        row(
            &format!(
                "hand-off, {title} ({}): previous exit → next first model request",
                pairs.join(", ")
            ),
            &self.total,
            "ms",
        );
        if self.pairs.len() > 1 {
            for (pair, values) in &self.pairs {
                row(&format!("  {pair}"), values, "ms");
            }
        }
        row(
            "  server: previous exit → next process spawned / handed its prompt",
            &self.server,
            "ms",
        );
        row("  CLI: → its first model request", &self.cli, "ms");
        row(
            "user-visible: previous last answer → next first model request",
            &self.visible,
            "ms",
        );
        row(
            "  previous CLI: last answer → its exit",
            &self.exit_wait,
            "ms",
        );
    }
}

async fn measure(bench: &Bench<'_>, harness: &str, mode: Mode, handoffs: usize, refs: &Refs<'_>) {
    let boots = refs.cold;
    let project = format!("{harness}-{}", mode.name());
    let repo_dir = bench.data.with_file_name(format!("repo-{project}"));
    std::fs::create_dir_all(&repo_dir).unwrap();
    let repo = sample_repo(&repo_dir).unwrap();
    let role = role(harness, &bench.sim.url(), mode);
    let roles: serde_json::Map<String, Value> = ["plan", "implement", "review", "pr"]
        .iter()
        .map(|s| (s.to_string(), role.clone()))
        .collect();
    let (status, body) = bench
        .server
        .post(
            "/api/projects",
            &json!({"path": repo.path, "name": project, "settings": {"roles": roles}}),
        )
        .await
        .unwrap();
    if status == 400 && body.to_string().contains("no long-lived session mode") {
        println!(
            "\n{harness} {}: not available ({harness} has no long-lived session mode in this build: {})",
            mode.name(),
            body["error"].as_str().unwrap_or_default()
        );
        return;
    }
    assert_eq!(status, 201, "{body}");
    let (mut chosen, mut others) = (HandOffs::default(), HandOffs::default());
    let mut tasks: Vec<TaskFigures> = Vec::new();
    // A warm hand-off is one whose successor was a warm process; bounded in case none comes.
    while chosen.total.len() < handoffs && tasks.len() < handoffs {
        let figures = bench.task(&project, tasks.len()).await;
        for pair in figures.runs.windows(2) {
            let warm = pair[1].mark.starts_with("warm-");
            match (mode, warm) {
                (Mode::OneShot, false) | (Mode::Warm, true) => chosen.add(&pair[0], &pair[1]),
                _ => others.add(&pair[0], &pair[1]),
            }
        }
        tasks.push(figures);
    }
    let col = |f: fn(&TaskFigures) -> f64| tasks.iter().map(f).collect::<Vec<f64>>();
    println!(
        "\n{harness} {}: {} tasks of 4 runs, {} hand-offs",
        mode.name(),
        tasks.len(),
        chosen.total.len() + others.total.len()
    );
    println!("| figure | n | min / median / max |\n|---|---|---|");
    match mode {
        Mode::OneShot => chosen.print("one-shot"),
        Mode::Warm => {
            chosen.print("to a warm process");
            if !others.total.is_empty() {
                others.print("not warm");
            }
            if chosen.total.is_empty() {
                println!("| no run was handed to a warm process | | |");
            }
        }
    }
    row(
        "ref: bare CLI start → first model request",
        &boots.iter().map(|b| b.first_request).collect::<Vec<_>>(),
        "ms",
    );
    row(
        "ref: bare CLI last answer → its exit",
        &boots.iter().map(|b| b.exit).collect::<Vec<_>>(),
        "ms",
    );
    if mode == Mode::Warm && !refs.warm.is_empty() {
        row(
            "ref: bare long-lived CLI, idle, prompt written → first model request",
            &refs
                .warm
                .iter()
                .map(|b| b.first_request)
                .collect::<Vec<_>>(),
            "ms",
        );
        row(
            "ref: bare long-lived CLI last answer → its exit (stdin closed at its turn's end)",
            &refs.warm.iter().map(|b| b.exit).collect::<Vec<_>>(),
            "ms",
        );
    }
    row(
        "pipeline wall: task created → awaiting merge",
        &col(|t| t.wall_ms / 1000.0),
        "s",
    );
    row(
        "  model time (requests in flight)",
        &col(|t| t.model_ms / 1000.0),
        "s",
    );
    row(
        "  overhead: wall − model time",
        &col(|t| (t.wall_ms - t.model_ms) / 1000.0),
        "s",
    );
    row(
        "  cold start: task created → first model request",
        &col(|t| t.cold_start_ms / 1000.0),
        "s",
    );
    row(
        "  overhead after the cold start: wall from the first model request − model time",
        &col(|t| (t.wall_ms - t.cold_start_ms - t.model_ms) / 1000.0),
        "s",
    );
    row(
        "    of which inside the 4 runs: first model request → exit, summed",
        &col(|t| t.inside_ms / 1000.0),
        "s",
    );
    row(
        "      an answer → the same run's next model request, summed (the CLI's own steps)",
        &col(|t| t.steps_ms / 1000.0),
        "s",
    );
    let all =
        |f: fn(&TaskFigures) -> &Vec<f64>| tasks.iter().flat_map(f).copied().collect::<Vec<f64>>();
    row(
        "        one step after a run's first shell call (Claude Code builds its shell snapshot in it)",
        &all(|t| &t.first_shell_steps),
        "ms",
    );
    row(
        "        one step after a later shell call",
        &all(|t| &t.later_shell_steps),
        "ms",
    );
    row(
        "        ref: bare CLI, one step after its first shell call",
        &boots
            .iter()
            .filter_map(|b| b.steps.first().copied())
            .collect::<Vec<_>>(),
        "ms",
    );
    row(
        "        ref: bare CLI, one step after its second shell call",
        &boots
            .iter()
            .filter_map(|b| b.steps.get(1).copied())
            .collect::<Vec<_>>(),
        "ms",
    );
    row(
        "      a run's last answer → its exit, summed",
        &col(|t| t.exits_ms / 1000.0),
        "s",
    );
    row(
        "    of which the 3 hand-offs: exit → next first model request, summed",
        &col(|t| {
            t.runs
                .windows(2)
                .map(|p| ms(p[1].first_us - p[0].exited_us))
                .sum::<f64>()
                / 1000.0
        }),
        "s",
    );
    row(
        "    of which the last run's exit → awaiting merge seen (the publish; polled every 10 ms)",
        &col(|t| t.tail_ms / 1000.0),
        "s",
    );
    row(
        "  Atelier's own share: created → first spawn + hand-offs' server parts + publish",
        &col(|t| t.atelier_ms() / 1000.0),
        "s",
    );
    row(
        "    task created → its first process spawned",
        &col(|t| t.first_spawn_ms / 1000.0),
        "s",
    );
    row(
        "  the CLIs' own share: overhead − Atelier's (boot, steps and tools, exits)",
        &col(|t| t.cli_ms() / 1000.0),
        "s",
    );
    row("  model requests per task", &col(|t| t.requests as f64), "");
    row(
        "ref: 4 bare CLI runs' own start and exit (4 × median sum)",
        &[4.0 * (spread_of(boots, |b| b.first_request) + spread_of(boots, |b| b.exit)) / 1000.0],
        "s",
    );
}

/// The same-run references of one harness.
struct Refs<'a> {
    /// One-shot starts.
    cold: &'a [Boot],
    /// Long-lived starts, idle before the prompt (empty without a long-lived mode).
    warm: &'a [Boot],
}

fn spread_of(boots: &[Boot], f: fn(&Boot) -> f64) -> f64 {
    spread(&boots.iter().map(f).collect::<Vec<_>>()).1
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let o = options();
    let clis: Vec<(String, &'static str, PathBuf)> = o
        .harnesses
        .iter()
        .map(|h| {
            let (flag, path) = cli(h);
            (h.clone(), flag, path)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let scenario_dir = dir.path().join("scenarios");
        scenarios(&scenario_dir);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start_with(
            listener,
            simulator::Options {
                scenarios_dir: scenario_dir,
                latency: Duration::from_millis(o.model_latency_ms),
                ..simulator::Options::default()
            },
        )
        .await
        .unwrap();
        let data = dir.path().join("data");
        let mut args = vec!["--warm-limit".to_string(), "2".to_string()];
        for (_, flag, path) in &clis {
            args.push(flag.to_string());
            args.push(path.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = ServerProcess::start(Path::new(BIN), &data, &args, &[])
            .await
            .unwrap();
        let bench = Bench {
            server: &server,
            sim: &sim,
            data: data.clone(),
            trace: o.trace,
        };
        println!(
            "harnesses: {:?}, modes: {:?}, ≥ {} hand-offs each, {} bare starts, model latency {} ms",
            o.harnesses,
            o.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
            o.handoffs,
            o.boots,
            o.model_latency_ms
        );
        for (harness, _, path) in &clis {
            let cli = adapter(harness, path.clone());
            let boot_dir = dir.path().join(format!("bare-{harness}"));
            std::fs::create_dir_all(&boot_dir).unwrap();
            sample_repo(&boot_dir).unwrap();
            let role = role(harness, &sim.url(), Mode::OneShot);
            // The first start warms the page cache and creates the CLI's home: not counted.
            bare_boot(cli.as_ref(), &role, &sim, &boot_dir).await;
            let mut boots = Vec::new();
            for _ in 0..o.boots {
                boots.push(bare_boot(cli.as_ref(), &role, &sim, &boot_dir).await);
            }
            let mut warm_boots = Vec::new();
            if o.modes.contains(&Mode::Warm) {
                for _ in 0..o.boots {
                    match bare_warm(cli.as_ref(), &role, &sim, &boot_dir).await {
                        Some(boot) => warm_boots.push(boot),
                        None => break,
                    }
                }
            }
            for mode in &o.modes {
                let refs = Refs {
                    cold: &boots,
                    warm: &warm_boots,
                };
                measure(&bench, harness, *mode, o.handoffs, &refs).await;
            }
        }
        let logs = server.logs();
        println!(
            "\nwarm standby: {} started, {} handed to their run, {} shut down unused",
            logs.matches("warm standby started for the next stage")
                .count(),
            logs.matches("run handed to its warm standby process")
                .count(),
            logs.matches("warm standby shut down unused").count()
        );
        if o.trace {
            for line in logs.lines().filter(|l| l.contains("warm standby")) {
                println!("server: {line}");
            }
        }
        // How long each warm process had been up when its run came (the server's `idle_ms`).
        for stage in ["implement", "review", "pr"] {
            let idle: Vec<f64> = logs
                .lines()
                .filter(|l| {
                    l.contains("run handed to its warm standby process")
                        && l.contains(&format!("stage={stage} "))
                })
                .filter_map(|l| {
                    let rest = l.split("idle_ms=").nth(1)?;
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .collect();
            if !idle.is_empty() {
                let (min, median, max) = spread(&idle);
                println!(
                    "| warm {stage} process: up before its run came | {} | {min:.0} / {median:.0} / {max:.0} ms |",
                    idle.len()
                );
            }
        }
    });
}
