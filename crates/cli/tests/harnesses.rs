//! The real agent CLIs (Claude Code, Codex, OpenCode, installed by `scripts/test` into `.tools/`)
//! driven by the real server through whole pipelines against Atelier's own model simulator, fully
//! offline. Without the CLIs these tests fail when `CI` is set, and are skipped with a message
//! otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use simulator::Simulator;
use std::path::{Path, PathBuf};
use support::*;
use testkit::ServerProcess;

const HARNESSES: [(&str, &str); 3] = [
    ("claude-code", "ATELIER_CLAUDE_BIN"),
    ("codex", "ATELIER_CODEX_BIN"),
    ("opencode", "ATELIER_OPENCODE_BIN"),
];

/// The agent CLIs' paths, or `None` (after saying why) when they are not installed outside CI.
fn agent_clis() -> Option<Vec<(&'static str, PathBuf)>> {
    let mut found = Vec::new();
    for (harness, var) in HARNESSES {
        match std::env::var_os(var).map(PathBuf::from) {
            Some(path) if path.is_file() => found.push((harness, path)),
            other => {
                let why = match other {
                    Some(path) => format!("{var}={} does not exist", path.display()),
                    None => format!("{var} is not set"),
                };
                let msg = format!(
                    "the {harness} CLI is needed: {why}; run the tests with `scripts/test`, which installs the pinned CLIs into .tools/"
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{msg}");
                }
                eprintln!("skipped: {msg}");
                return None;
            }
        }
    }
    Some(found)
}

/// A simulator, a server that knows the CLIs, and a sample repository.
struct Lab {
    world: World,
    sim: Simulator,
    sim_scenarios: PathBuf,
}

impl Lab {
    async fn start(
        scenarios: &[(&str, Value)],
        server_args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Lab> {
        let clis = agent_clis()?;
        let mut args: Vec<String> = server_args.iter().map(|s| s.to_string()).collect();
        for (harness, path) in &clis {
            let flag = match *harness {
                "claude-code" => "--claude-bin",
                "codex" => "--codex-bin",
                _ => "--opencode-bin",
            };
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let world = World::start_with_env(&[], &args, env).await;
        let sim_scenarios = world.dir.path().join("sim-scenarios");
        write_scenarios(&sim_scenarios, scenarios);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(listener, sim_scenarios.clone()).await;
        Some(Lab {
            world,
            sim,
            sim_scenarios,
        })
    }

    /// The role of one stage on `harness`, pointed at the simulator.
    fn role(&self, harness: &str) -> Value {
        let url = self.sim.url();
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

    /// Adds the project with `plan, implement, review, pr` on these harnesses.
    async fn project(&self, name: &str, harnesses: [&str; 4]) -> String {
        let mut roles = serde_json::Map::new();
        for (stage, harness) in ["plan", "implement", "review", "pr"]
            .into_iter()
            .zip(harnesses)
        {
            roles.insert(stage.into(), self.role(harness));
        }
        let path = self.world.add_repo(name);
        let (status, body) = self
            .world
            .server
            .post(
                "/api/projects",
                &json!({"path": path, "name": name, "settings": {"roles": roles}}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
        name.to_string()
    }

    fn server(&self) -> &ServerProcess {
        &self.world.server
    }
}

fn sim_pipeline() -> Vec<(&'static str, Value)> {
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

/// One task through the whole pipeline on the given harnesses, to merged.
async fn pipeline_on(harnesses: [&str; 4]) {
    let Some(lab) = Lab::start(&sim_pipeline(), &["--merge-poll-ms", "200"], &[]).await else {
        return;
    };
    let project = lab.project("lab", harnesses).await;
    let id = lab.world.new_task_in(&project, "Say hello", false, 0).await;
    let detail = lab
        .world
        .wait_state_for(id, "awaiting_merge", std::time::Duration::from_secs(120))
        .await;
    let worktree = lab.world.worktree(&detail);
    assert_eq!(
        std::fs::read_to_string(worktree.join("hello.txt")).unwrap(),
        "hello from the agent\n"
    );
    assert!(
        detail["doc"]
            .as_str()
            .unwrap()
            .contains("- [x] Add hello.txt"),
        "{detail:#}"
    );
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("pr", "completed")
        ])
    );
    for (run, harness) in detail["runs"].as_array().unwrap().iter().zip(harnesses) {
        assert!(
            run["session"].as_str().is_some_and(|s| !s.is_empty()),
            "{harness} session: {run}"
        );
        assert!(
            run["output_tokens"].as_u64().unwrap() > 0,
            "{harness} tokens: {run}"
        );
    }
    // The signals came through each CLI's own shell tool; the transcript has messages and tools.
    let logs = lab.world.logs(id).await;
    let text = serde_json::to_string(&logs).unwrap();
    for needle in [
        "atelier signal plan-ready",
        "atelier signal verdict ready",
        "atelier signal pr-done",
    ] {
        assert!(
            text.contains(needle),
            "no shell call `{needle}` in the transcript"
        );
    }
    for kind in ["message", "tool_call", "usage", "turn_end", "session"] {
        assert!(
            logs.iter().any(|e| e["event"]["type"] == kind),
            "no {kind} event"
        );
    }
    // Every CLI sent our context: the stage line reached the model of each stage.
    let requests = lab.sim.requests();
    for stage in ["plan #0", "implement #0", "review #0", "pr #0"] {
        let line = format!("Atelier-Stage: {stage}");
        assert!(
            requests.iter().any(|r| r.body.to_string().contains(&line)),
            "no request carried `{line}`"
        );
    }
    let branch = detail["task"]["branch"].as_str().unwrap();
    let remote = lab.world.dir.path().join("lab/remote.git");
    let log = testkit::git(&remote, &["log", "--format=%s", branch]).unwrap();
    assert!(log.lines().any(|l| l == "Add hello.txt"), "{log}");
    let (status, body) = lab.world.action(id, "merge", json!({})).await;
    assert_eq!(status, 200, "{body}");
    lab.world.wait_state(id, "done").await;
    drop(lab.sim_scenarios);
}

#[tokio::test]
async fn codex_runs_a_whole_pipeline() {
    pipeline_on(["codex"; 4]).await;
}

#[tokio::test]
async fn opencode_runs_a_whole_pipeline() {
    pipeline_on(["opencode"; 4]).await;
}
