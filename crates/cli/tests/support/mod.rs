//! Shared setup of the end-to-end tests: a sample repository with a bare remote, scenario files
//! for the scripted agents, the real `atelier serve` on a free loopback port, and waits on task
//! state with deadlines.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod people;
pub mod sse;

use engine::api::{TaskDetail, TaskView};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{SampleRepo, ServerProcess, sample_repo, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_atelier");
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A temp folder holding a project repository, its remote, scenarios and a server's data dir.
pub struct World {
    pub dir: tempfile::TempDir,
    pub repo: SampleRepo,
    pub scenarios: PathBuf,
    pub data: PathBuf,
    pub server: ServerProcess,
    pub project: String,
}

/// Scenario files per stage: `plan`, `implement`, `review`, `pr` → a `{"runs": [...]}` value;
/// also `second_review`, `qa` and `refine` ([`OPTIONAL_STAGES`]), whose files are written, and
/// whose roles are given, only when a test names them.
pub type Scenarios<'a> = &'a [(&'a str, Value)];

/// Stages a project has a scripted role for only when their scenario file exists (otherwise
/// their roles fall back to the reviewer's or the implementer's, as a project's do).
pub const OPTIONAL_STAGES: [&str; 3] = ["second_review", "qa", "refine"];

pub fn write_scenarios(dir: &Path, scenarios: Scenarios<'_>) {
    std::fs::create_dir_all(dir).unwrap();
    for (stage, value) in scenarios {
        if OPTIONAL_STAGES.contains(stage) {
            std::fs::write(
                dir.join(format!("{stage}.json")),
                serde_json::to_vec_pretty(value).unwrap(),
            )
            .unwrap();
        }
    }
    for stage in ["plan", "implement", "review", "pr"] {
        let value = scenarios
            .iter()
            .find(|(name, _)| *name == stage)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| json!({"runs": [[{"do": "message", "text": format!("{stage}: nothing to do")}]]}));
        std::fs::write(
            dir.join(format!("{stage}.json")),
            serde_json::to_vec_pretty(&value).unwrap(),
        )
        .unwrap();
    }
}

impl World {
    /// Creates a task of `pipeline` in the world's project; returns the API's answer.
    pub async fn create_in_pipeline(
        &self,
        title: &str,
        body: &str,
        pipeline: &str,
    ) -> (u16, Value) {
        self.server
            .post(
                "/api/tasks",
                &json!({"project": self.project, "title": title, "body": body, "pipeline": pipeline}),
            )
            .await
            .unwrap()
    }

    /// The tool results of the task's transcript that were errors, with their output.
    pub async fn failed_tool_outputs(&self, id: i64) -> Vec<String> {
        self.logs(id)
            .await
            .iter()
            .filter(|e| e["event"]["type"] == "tool_result" && e["event"]["is_error"] == true)
            .map(|e| e["event"]["output"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// `GET path` with the API token, as text (a file, an attachment): status and body.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = http
            .get(format!("{}{path}", self.server.url().trim_end_matches('/')))
            .bearer_auth(self.server.token())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A repository, scenarios and a server with `server_args`, with the project added.
    pub async fn start(scenarios: Scenarios<'_>, server_args: &[&str]) -> World {
        Self::start_with_env(scenarios, server_args, &[]).await
    }

    pub async fn start_with_env(
        scenarios: Scenarios<'_>,
        server_args: &[&str],
        env: &[(&str, &str)],
    ) -> World {
        let mut world = Self::start_bare(scenarios, server_args, env).await;
        world.project = world
            .add_project(&world.repo.path.clone(), "app", json!({}))
            .await;
        world
    }

    /// A repository, scenarios and a server, with no project added yet (`project` is empty):
    /// for tests that add it themselves, e.g. through the web UI.
    pub async fn start_bare(
        scenarios: Scenarios<'_>,
        server_args: &[&str],
        env: &[(&str, &str)],
    ) -> World {
        let dir = tempfile::tempdir().unwrap();
        let repo = sample_repo(dir.path()).unwrap();
        let scenario_dir = dir.path().join("scenarios");
        write_scenarios(&scenario_dir, scenarios);
        let data = dir.path().join("data");
        let server = ServerProcess::start(Path::new(BIN), &data, server_args, env)
            .await
            .unwrap();
        World {
            dir,
            repo,
            scenarios: scenario_dir,
            data,
            server,
            project: String::new(),
        }
    }

    /// Adds a project whose roles all play the world's scenarios; returns its name.
    pub async fn add_project(&self, path: &Path, name: &str, extra: Value) -> String {
        let mut settings =
            json!({"roles": self.roles(&self.scenarios), "sandbox": gated_sandbox()});
        if let (Some(s), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        let (status, body) = self
            .server
            .post(
                "/api/projects",
                &json!({"path": path, "name": name, "settings": settings}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "adding project {name}: {body}");
        name.to_string()
    }

    pub fn roles(&self, dir: &Path) -> Value {
        let mut roles = serde_json::Map::new();
        for stage in ["plan", "implement", "review", "pr"] {
            roles.insert(
                stage.into(),
                json!({"harness": "scripted", "scenario": dir.join(format!("{stage}.json"))}),
            );
        }
        for stage in OPTIONAL_STAGES {
            let scenario = dir.join(format!("{stage}.json"));
            if scenario.is_file() {
                roles.insert(
                    stage.into(),
                    json!({"harness": "scripted", "scenario": scenario}),
                );
            }
        }
        Value::Object(roles)
    }

    pub async fn restart(&mut self, server_args: &[&str], env: &[(&str, &str)]) {
        self.server = ServerProcess::start(Path::new(BIN), &self.data, server_args, env)
            .await
            .unwrap();
    }

    /// Creates a task; returns its id.
    pub async fn new_task(&self, title: &str, technical: bool) -> i64 {
        self.new_task_in(&self.project, title, technical, 0).await
    }

    pub async fn new_task_in(
        &self,
        project: &str,
        title: &str,
        technical: bool,
        priority: i64,
    ) -> i64 {
        let (status, body) = self
            .server
            .post(
                "/api/tasks",
                &json!({"project": project, "title": title, "body": "Please add a greeting.\n", "technical": technical, "priority": priority}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "creating task {title}: {body}");
        typed::<TaskView>(&body).id.0
    }

    /// The task's detail as JSON, checked against the API's own type first (a renamed or
    /// missing field fails here instead of passing silently as a `null`).
    pub async fn detail(&self, id: i64) -> Value {
        let detail = self.server.get(&format!("/api/tasks/{id}")).await.unwrap();
        typed::<TaskDetail>(&detail);
        detail
    }

    /// The task's detail as the API's type.
    pub async fn task_detail(&self, id: i64) -> TaskDetail {
        typed(&self.server.get(&format!("/api/tasks/{id}")).await.unwrap())
    }

    pub async fn action(&self, id: i64, action: &str, body: Value) -> (u16, Value) {
        self.server
            .post(&format!("/api/tasks/{id}/{action}"), &body)
            .await
            .unwrap()
    }

    /// Waits until the task's state name (`running`, `plan_gate` …) is `want`.
    pub async fn wait_state(&self, id: i64, want: &str) -> Value {
        self.wait_state_for(id, want, DEADLINE).await
    }

    pub async fn wait_state_for(&self, id: i64, want: &str, deadline: Duration) -> Value {
        let server = &self.server;
        let result = wait_until(
            &format!("task {id} to be {want}"),
            deadline,
            || async move {
                let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
                (typed::<TaskDetail>(&detail).task.state.name() == want).then_some(detail)
            },
        )
        .await;
        match result {
            Ok(detail) => detail,
            Err(err) => {
                let detail = self.detail(id).await;
                // The transcript's end says what the last run did (or why it ended).
                let logs = self.logs(id).await;
                let tail: Vec<String> = logs[logs.len().saturating_sub(40)..]
                    .iter()
                    .map(Value::to_string)
                    .collect();
                panic!(
                    "{err}\nlast detail: {detail:#}\ntranscript's end:\n{}\nserver logs:\n{}",
                    tail.join("\n"),
                    self.server.logs()
                )
            }
        }
    }

    /// Waits until the task has a run of `stage` with status `status`.
    pub async fn wait_run(&self, id: i64, stage: &str, status: &str) -> Value {
        let server = &self.server;
        wait_until(
            &format!("a {status} {stage} run of task {id}"),
            DEADLINE,
            || async move {
                let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
                let runs = typed::<TaskDetail>(&detail).runs;
                let index = runs
                    .iter()
                    .position(|r| r.stage.as_str() == stage && r.status.as_str() == status)?;
                Some(detail["runs"][index].clone())
            },
        )
        .await
        .unwrap_or_else(|err| panic!("{err}\nserver logs:\n{}", self.server.logs()))
    }

    pub fn worktree(&self, detail: &Value) -> PathBuf {
        PathBuf::from(detail["task"]["worktree"].as_str().unwrap())
    }
}

/// The folder of this test's release files: shown read-only to every project's agents (the
/// sandbox hides the rest of the test's folders), one per test process. It is emptied the first
/// time this process asks for it: a folder of an earlier process with the same pid would
/// otherwise hold its release files, and an agent would not wait.
pub fn gates() -> PathBuf {
    static GATES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    GATES
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("atelier-gates-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        })
        .clone()
}

/// A release file agents can wait for with [`wait_for_file`]: `<gates>/<name>`.
pub fn release_file(name: &str) -> PathBuf {
    gates().join(name)
}

/// Asserts that an API answer is a 400 whose error message contains every one of `needles`;
/// returns the message.
pub fn assert_refused<'a>(status: u16, body: &'a Value, needles: &[&str]) -> &'a str {
    let error = body["error"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{body}");
    for needle in needles {
        assert!(error.contains(needle), "`{needle}` missing from: {error}");
    }
    error
}

/// Project settings that show the test's release files to its agents.
pub fn gated_sandbox() -> Value {
    json!({"read_only": [gates()]})
}

/// A shell command that waits (as an agent would wait on its own work) until `file` exists.
pub fn wait_for_file(file: &Path) -> Value {
    json!({"do": "run", "command": format!("while [ ! -e '{}' ]; do sleep 0.02; done", file.display())})
}

/// `(stage, status)` of each run, in order.
pub fn run_summary(detail: &Value) -> Vec<(String, String)> {
    detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Pids of processes still carrying a run's mark (zombies excluded).
pub fn processes_of_run(mark: &str) -> Vec<u32> {
    harness::process::marked_processes("ATELIER_RUN_MARK", mark)
}

/// A plan that writes two to-do items and signals plan-ready.
pub fn plan_scenario() -> Value {
    json!({"runs": [[
        {"do": "thinking", "text": "Reading the request."},
        {"do": "doc_section", "heading": "Overview", "body": "Add greeting and farewell files."},
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n- [ ] Add farewell.txt\n"},
        {"do": "signal", "args": ["plan-ready"]}
    ]]})
}

/// Implementer: run 0 writes a wrong farewell; run 1 fixes it. Both commit.
pub fn implement_scenario() -> Value {
    json!({"runs": [
        [
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            {"do": "check", "item": "Add greeting.txt"},
            {"do": "write", "path": "farewell.txt", "content": "bye?\n"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Add greeting and farewell'"}
        ],
        [
            {"do": "message", "text": "Addressing the review findings first."},
            {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Fix farewell'"}
        ]
    ]})
}

/// Reviewer: round 0 unchecks the farewell item and says needs-work; round 1 says ready.
pub fn review_scenario() -> Value {
    json!({"runs": [
        [
            {"do": "run", "command": "cat farewell.txt"},
            {"do": "uncheck", "item": "Add farewell.txt"},
            {"do": "doc_section", "heading": "Review Findings", "body": "- farewell.txt must say goodbye\n"},
            {"do": "signal", "args": ["verdict", "needs-work", "--reason", "farewell is wrong"]}
        ],
        [
            {"do": "run", "command": "grep -q goodbye farewell.txt"},
            {"do": "doc_section", "heading": "Review Findings", "body": "None.\n"},
            {"do": "signal", "args": ["verdict", "ready"]}
        ]
    ]})
}

/// Implementer that commits a change on every run (progress, as the no-progress guard expects)
/// and checks nothing: for tests about what happens after implementation.
pub fn committing_implement_scenario() -> Value {
    json!({"runs": [[
        {"do": "run", "command": "echo work >> work.txt && git add -A && git commit -qm 'More work'"}
    ]]})
}

pub fn pr_scenario() -> Value {
    json!({"runs": [[
        {"do": "run", "command": "git status --short"},
        {"do": "signal", "args": ["pr-done"]}
    ]]})
}

pub fn full_pipeline() -> Vec<(&'static str, Value)> {
    vec![
        ("plan", plan_scenario()),
        ("implement", implement_scenario()),
        ("review", review_scenario()),
        ("pr", pr_scenario()),
    ]
}

impl World {
    /// Waits until the task's pull-request record exists; returns it.
    pub async fn wait_until_pr(&self, id: i64) -> Value {
        let server = &self.server;
        wait_until(
            &format!("the pull request of task {id}"),
            DEADLINE,
            || async move {
                let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
                (!detail["pull_request"].is_null()).then(|| detail["pull_request"].clone())
            },
        )
        .await
        .unwrap()
    }

    /// The whole transcript of a task (not following): NDJSON items.
    pub async fn logs(&self, id: i64) -> Vec<Value> {
        let url = format!("{}/api/tasks/{id}/logs?follow=false", self.server.url());
        let text = reqwest::Client::new()
            .get(url)
            .bearer_auth(self.server.token())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A new project on a fresh sample repository (in a sub-folder), playing the scenarios.
    pub async fn add_project_from_scratch(&self, name: &str, extra: Value) -> String {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let repo = sample_repo(&dir).unwrap();
        self.add_project(&repo.path, name, extra).await
    }

    /// The process mark of the task's latest run, read from the store file.
    pub async fn run_mark(&self, id: i64) -> String {
        let db = rusqlite::Connection::open(self.data.join("atelier.db")).unwrap();
        db.query_row(
            "SELECT mark FROM runs WHERE task_id = ?1 ORDER BY id DESC LIMIT 1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Where the server keeps its agents' homes (`ServerProcess` puts them beside the data dir).
    pub fn homes(&self) -> PathBuf {
        let mut homes = self.data.as_os_str().to_owned();
        homes.push("-homes");
        PathBuf::from(homes)
    }

    /// Reads the store file directly (read-only checks of what was recorded).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data.join("atelier.db")).unwrap()
    }
}

impl World {
    /// A fresh sample repository in `<dir>/<name>`; returns its work tree path.
    pub fn add_repo(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        sample_repo(&dir).unwrap().path
    }
}

/// The path of the real agent CLI of `harness` (`claude-code`, `codex`, `opencode`) and the
/// `atelier serve` flag that names it; fails when it is not installed. The tests that call it are
/// compiled as ignored (shown as skipped) when the CLIs are not configured outside CI: see
/// `crates/cli/build.rs`.
pub fn agent_cli(harness: &str) -> (&'static str, PathBuf) {
    let (var, flag) = match harness {
        "claude-code" => ("ATELIER_CLAUDE_BIN", "--claude-bin"),
        "codex" => ("ATELIER_CODEX_BIN", "--codex-bin"),
        "opencode" => ("ATELIER_OPENCODE_BIN", "--opencode-bin"),
        other => panic!("no agent CLI for harness {other}"),
    };
    match std::env::var_os(var).map(PathBuf::from) {
        Some(path) if path.is_file() => (flag, path),
        other => {
            let why = match other {
                Some(path) => format!("{var}={} does not exist", path.display()),
                None => format!("{var} is not set"),
            };
            panic!(
                "the {harness} CLI is needed: {why}; run the tests with `scripts/test`, which \
                 installs the pinned CLIs into .tools/"
            )
        }
    }
}

/// The role of one stage on the real CLI of `harness`, pointed at the model simulator at `url`.
pub fn simulated_role(harness: &str, url: &str) -> Value {
    match harness {
        "claude-code" => json!({
            "harness": "claude-code", "model": "claude-sonnet-4-5", "max_retries": 0,
            "env": {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-ant-simulated"}
        }),
        "codex" => json!({
            "harness": "codex", "model": "gpt-5.5", "base_url": format!("{url}/v1"),
            "api_key_env": "SIM_API_KEY", "max_retries": 0, "env": {"SIM_API_KEY": "simulated"}
        }),
        _ => json!({
            "harness": "opencode", "model": "sim-model", "base_url": format!("{url}/v1"),
            "api_key_env": "SIM_API_KEY", "env": {"SIM_API_KEY": "simulated"}
        }),
    }
}

/// `value` read as the API's type `T` (the same struct the server serializes and the CLI reads):
/// a field renamed or missing on either side fails the test here.
pub fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap_or_else(|err| {
        panic!(
            "the API's answer is not a {}: {err}\n{value:#}",
            std::any::type_name::<T>()
        )
    })
}

/// A stand-in agent CLI `dir/name` that answers `--version` with `version` and fails anything
/// else: for tests of the CLI checks, which need no real CLI.
pub fn fake_agent_cli(dir: &Path, name: &str, version: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{version}'; exit 0; fi\n\
             echo 'a stand-in: only --version' >&2\nexit 2\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Four stages for the real CLIs against the model simulator (its scenarios, keyed by each
/// prompt's `Atelier-Stage` line): a plan with one item, a file written and committed, a review
/// and a pull request, each through the CLI's own tools.
pub fn sim_pipeline() -> Vec<(&'static str, Value)> {
    vec![
        (
            "plan",
            json!({"runs": [[
                {"do": "message", "text": "Reading the request."},
                {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add hello.txt\n"},
                {"do": "signal", "args": ["plan-ready"]},
                {"do": "message", "text": "The plan is ready."}
            ]]}),
        ),
        (
            "implement",
            json!({"runs": [[
                {"do": "write", "path": "hello.txt", "content": "hello from the agent\n"},
                {"do": "check", "item": "Add hello.txt"},
                {"do": "run", "command": "git add -A && git commit -qm 'Add hello.txt'"},
                {"do": "message", "text": "Implemented."}
            ]]}),
        ),
        (
            "review",
            json!({"runs": [[
                {"do": "run", "command": "cat hello.txt"},
                {"do": "signal", "args": ["verdict", "ready"]},
                {"do": "message", "text": "Verified."}
            ]]}),
        ),
        (
            "pr",
            json!({"runs": [[{"do": "signal", "args": ["pr-done"]}, {"do": "message", "text": "Submitted."}]]}),
        ),
    ]
}
