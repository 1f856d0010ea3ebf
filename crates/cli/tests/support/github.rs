//! A GitHub project end to end: a fake GitHub (`fakehub`) holding the project's repository, the
//! project's `origin` pointed at it, the project added with `atelier project add --forge github`
//! (token and webhook secret read from files), and the hub's webhook aimed at the server.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use fakehub::{CiKind, CiOutcome, CiScript, FakeHub, Options};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{ServerProcess, sample_repo, wait_until};

pub const OWNER: &str = "acme";
pub const REPO: &str = "app";
/// The check the fake CI runs.
pub const CHECK: &str = "build";
/// What the failing check's log and annotation say (the fixing run must be told).
pub const LOG_LINE: &str = "error[E0425]: cannot find value `greting` in this scope";
pub const ANNOTATION: &str = "greting is not defined: did you mean greeting?";

/// Server flags of every GitHub test: a fast poll tick (the project's `poll_secs` paces GitHub).
pub const SERVE: &[&str] = &["--merge-poll-ms", "200"];

/// A world whose project lives on a fake GitHub.
pub struct Gh {
    pub world: World,
    pub hub: FakeHub,
    pub token: String,
    pub secret: String,
    /// The project's roles when not the world's scripted ones (e.g. real CLIs on the simulator).
    pub roles: Option<Value>,
}

/// The forge settings of the tests: the non-secret fields only (the CLI fills the rest), a 3 s
/// comment window and a 1 s poll, with `extra`'s fields on top.
pub fn forge_settings(extra: &Value) -> Value {
    let mut forge =
        json!({"kind": "github", "comment_window_secs": 3, "poll_secs": 1, "checks_grace_secs": 1});
    if let (Some(f), Some(extra)) = (forge.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            f.insert(k.clone(), v.clone());
        }
    }
    forge
}

/// A CI that fails the first head with a log and an annotation, then passes.
pub fn fail_then_pass() -> Vec<CiScript> {
    vec![CiScript {
        name: CHECK.into(),
        kind: CiKind::CheckRun,
        outcomes: vec![
            CiOutcome::Fail {
                failing_step: "cargo test".into(),
                log: format!("   Compiling app v0.1.0\n{LOG_LINE}\n --> src/lib.rs:3:5\n"),
                annotations: vec![("src/lib.rs".into(), 3, ANNOTATION.into())],
            },
            CiOutcome::Pass,
        ],
    }]
}

pub fn always_pass() -> Vec<CiScript> {
    vec![CiScript {
        name: CHECK.into(),
        kind: CiKind::CheckRun,
        outcomes: vec![CiOutcome::Pass],
    }]
}

impl Gh {
    /// A fake GitHub with `acme/app` seeded from a sample repository, a server started with
    /// `server_args` and `env`, the project added through the CLI with `token`.
    pub async fn start(
        scenarios: Scenarios<'_>,
        ci: Vec<CiScript>,
        token: &str,
        forge: Value,
        server_args: &[&str],
        env: &[(&str, &str)],
    ) -> Gh {
        Self::start_with_roles(scenarios, ci, token, forge, server_args, env, None).await
    }

    /// [`Gh::start`] with the project's `roles` given (instead of the scripted scenarios').
    pub async fn start_with_roles(
        scenarios: Scenarios<'_>,
        ci: Vec<CiScript>,
        token: &str,
        forge: Value,
        server_args: &[&str],
        env: &[(&str, &str)],
        roles: Option<Value>,
    ) -> Gh {
        let dir = tempfile::tempdir().unwrap();
        let repo = sample_repo(dir.path()).unwrap();
        let hub = FakeHub::start(Options::default()).await;
        hub.create_repo(OWNER, REPO, &repo.path, "main").await;
        hub.add_token(token);
        hub.script_ci(OWNER, REPO, ci);
        repo.git(&["remote", "set-url", "origin", &hub.clone_url(OWNER, REPO)])
            .unwrap();
        let scenario_dir = dir.path().join("scenarios");
        write_scenarios(&scenario_dir, scenarios);
        let data = dir.path().join("data");
        let server = ServerProcess::start(Path::new(BIN), &data, server_args, env)
            .await
            .unwrap();
        let world = World {
            dir,
            repo,
            scenarios: scenario_dir,
            data,
            server,
            project: REPO.to_string(),
        };
        let secret = format!("whsec-{}", std::process::id());
        let gh = Gh {
            hub,
            token: token.to_string(),
            secret,
            world,
            roles,
        };
        gh.add_project(&forge);
        gh.aim_webhook();
        gh
    }

    /// The number of the task's pull request on the hub.
    pub async fn pr_number(&self, id: i64) -> u64 {
        let branch = self.world.detail(id).await["task"]["branch"]
            .as_str()
            .unwrap()
            .to_string();
        self.hub
            .pulls(OWNER, REPO)
            .iter()
            .find(|p| p.head_ref == branch)
            .unwrap_or_else(|| panic!("no pull request of {branch} on the hub"))
            .number
    }

    /// `(delivery, event, outcome)` of every webhook delivery the server recorded.
    pub fn recorded_deliveries(&self) -> Vec<(Option<String>, String, String)> {
        self.world
            .db()
            .prepare("SELECT delivery, event, outcome FROM webhook_deliveries ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// `atelier project add <repo> --forge github --github-token-file … --webhook-secret-file …`
    fn add_project(&self, forge: &Value) {
        self.add_project_at(&self.world.repo.path, REPO, forge);
    }

    /// A second GitHub project `OWNER/name` on the same hub, from a fresh sample repository.
    pub async fn add_second_project(&self, name: &str, forge: &Value) {
        let dir = self.world.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let repo = sample_repo(&dir).unwrap();
        self.hub.create_repo(OWNER, name, &repo.path, "main").await;
        repo.git(&[
            "remote",
            "set-url",
            "origin",
            &self.hub.clone_url(OWNER, name),
        ])
        .unwrap();
        self.add_project_at(&repo.path, name, forge);
    }

    fn add_project_at(&self, path: &Path, name: &str, forge: &Value) {
        let secrets = self.world.dir.path().join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        let token_file = secrets.join("gh-token");
        let secret_file = secrets.join("webhook-secret");
        std::fs::write(&token_file, format!("{}\n", self.token)).unwrap();
        std::fs::write(&secret_file, &self.secret).unwrap();
        let settings = json!({
            "roles": self.roles.clone().unwrap_or_else(|| self.world.roles(&self.world.scenarios)),
            "sandbox": gated_sandbox(),
            "forge": forge_settings(forge),
        });
        let settings_file = secrets.join("settings.json");
        std::fs::write(&settings_file, serde_json::to_vec(&settings).unwrap()).unwrap();
        let out = self.cli(&[
            "project",
            "add",
            path.to_str().unwrap(),
            "--name",
            name,
            "--forge",
            "github",
            "--github-token-file",
            token_file.to_str().unwrap(),
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--config",
            settings_file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "project add failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs the `atelier` CLI against the world's server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new(BIN);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ATELIER_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(args)
            .env("ATELIER_URL", self.world.server.url())
            .env("ATELIER_TOKEN", self.world.server.token())
            .env("ATELIER_DATA_DIR", &self.world.data)
            .output()
            .unwrap()
    }

    /// Points the hub's webhook at the (current) server.
    pub fn aim_webhook(&self) {
        self.hub.set_webhook(
            &format!("{}/api/webhooks/github", self.world.server.url()),
            &self.secret,
        );
    }

    /// Restarts the server and aims the webhook at its new port.
    pub async fn restart(&mut self, server_args: &[&str], env: &[(&str, &str)]) {
        self.world.restart(server_args, env).await;
        self.aim_webhook();
    }

    /// The single pull request on the hub (fails if there are more).
    pub fn only_pull(&self) -> fakehub::PullSnapshot {
        let pulls = self.hub.pulls(OWNER, REPO);
        assert_eq!(pulls.len(), 1, "exactly one pull request: {pulls:#?}");
        pulls.into_iter().next().unwrap()
    }

    /// Runs of `stage` of task `id` that have ended (completed/failed/…), waited until `n`.
    pub async fn wait_runs_ended(&self, id: i64, stage: &str, n: usize) -> Value {
        let server = &self.world.server;
        wait_until(
            &format!("{n} ended {stage} runs of task {id}"),
            DEADLINE,
            || async move {
                let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
                let ended = detail["runs"]
                    .as_array()?
                    .iter()
                    .filter(|r| r["stage"] == stage && r["status"] == "completed")
                    .count();
                (ended >= n).then_some(detail)
            },
        )
        .await
        .unwrap_or_else(|err| panic!("{err}\nserver logs:\n{}", self.world.server.logs()))
    }

    /// Waits until the task's state is `want`; on failure shows the task, the hub's requests and
    /// deliveries, and the server logs.
    pub async fn wait_state(&self, id: i64, want: &str) -> Value {
        let server = &self.world.server;
        self.wait_for(&format!("task {id} to be {want}"), || async move {
            let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
            (detail["task"]["state"]["state"] == want).then_some(detail)
        })
        .await
    }

    /// Waits for `what` to hold, with the server logs on failure.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        wait_until(what, DEADLINE, f).await.unwrap_or_else(|err| {
            panic!(
                "{err}\nhub requests: {:#?}\nhub deliveries: {:#?}\nserver logs:\n{}",
                self.hub
                    .requests()
                    .iter()
                    .map(|r| format!("{} {}?{} -> {:?}", r.method, r.path, r.query, r.status))
                    .collect::<Vec<_>>(),
                self.hub
                    .deliveries()
                    .iter()
                    .map(|d| (&d.event, &d.action, d.status))
                    .collect::<Vec<_>>(),
                self.world.server.logs()
            )
        })
    }

    /// Everything the agents of run `run` said (their transcript, as text).
    pub async fn transcript_of_run(&self, id: i64, run: i64) -> String {
        self.world
            .logs(id)
            .await
            .iter()
            .filter(|e| e["run"] == run)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The pr-stage runs of a task, oldest first: their ids.
    pub fn pr_runs(detail: &Value) -> Vec<i64> {
        detail["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["stage"] == "pr")
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }

    /// A non-technical task run to `awaiting_merge` (its checks green).
    pub async fn task_awaiting_merge(&self, title: &str) -> i64 {
        let id = self.world.new_task(title, false).await;
        self.world.wait_state(id, "awaiting_merge").await;
        id
    }

    /// The issue comments Atelier posted (its replies) on PR `pr`.
    pub fn replies(&self, pr: u64) -> Vec<fakehub::CommentSnapshot> {
        self.hub
            .issue_comments(OWNER, REPO, pr)
            .into_iter()
            .chain(self.hub.review_comments(OWNER, REPO, pr))
            .filter(|c| c.author == fakehub::PAT_LOGIN)
            .collect()
    }
}

/// Every file under `dir` (recursively, symlinks not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// Scenarios for the stages before the pull request: plan, one implement run, a ready review.
pub fn quick_stages() -> Vec<(&'static str, Value)> {
    vec![
        ("plan", plan_scenario()),
        (
            "implement",
            json!({"runs": [[
                {"do": "write", "path": "greeting.txt", "content": "hello\n"},
                {"do": "check", "item": "Add greeting.txt"},
                {"do": "check", "item": "Add farewell.txt"},
                {"do": "run", "command": "git add -A && git commit -qm 'Add a greeting'"}
            ]]}),
        ),
        (
            "review",
            json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]}),
        ),
        ("pr", pr_scenario()),
    ]
}

/// [`quick_stages`] whose later pr runs (CI fixes, comments) each commit a fix.
pub fn fixing_stages() -> Vec<(&'static str, Value)> {
    let mut stages = quick_stages();
    stages[3] = (
        "pr",
        json!({"runs": [
            [{"do": "signal", "args": ["pr-done"]}],
            [
                {"do": "echo_input"},
                {"do": "write", "path": "src/fixed.txt", "content": "fixed\n"},
                {"do": "run", "command": "git add -A && git commit -qm 'Fix the build'"},
                {"do": "signal", "args": ["pr-done"]}
            ]
        ]}),
    );
    stages
}

/// How long a test may wait for something slow to happen (a hang's timeout, a retry).
pub const LONG: Duration = Duration::from_secs(120);
