//! The real agent CLIs (Claude Code, Codex, OpenCode, installed by `scripts/test` into `.tools/`)
//! driven by the real server through whole pipelines against Atelier's own model simulator, fully
//! offline. Without the CLIs the tests that need them are compiled as ignored (shown as skipped)
//! outside CI, and fail under `CI=true` (`build.rs`); the crashing-CLI test needs none and always
//! runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use simulator::Simulator;
use std::path::{Path, PathBuf};
use support::*;
use testkit::ServerProcess;

/// The agent CLIs' paths and `serve` flags (fails when one is not installed).
fn agent_clis() -> Vec<(&'static str, PathBuf)> {
    ["claude-code", "codex", "opencode"]
        .into_iter()
        .map(agent_cli)
        .collect()
}

/// A simulator, a server that knows the CLIs, and a sample repository.
struct Lab {
    world: World,
    sim: Simulator,
    sim_scenarios: PathBuf,
}

impl Lab {
    async fn start(scenarios: &[(&str, Value)], server_args: &[&str], env: &[(&str, &str)]) -> Lab {
        let clis = agent_clis();
        let mut args: Vec<String> = server_args.iter().map(|s| s.to_string()).collect();
        for (flag, path) in &clis {
            args.push(flag.to_string());
            args.push(path.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let world = World::start_with_env(&[], &args, env).await;
        let sim_scenarios = world.dir.path().join("sim-scenarios");
        write_scenarios(&sim_scenarios, scenarios);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(listener, sim_scenarios.clone()).await;
        Lab {
            world,
            sim,
            sim_scenarios,
        }
    }

    /// The role of one stage on `harness`, pointed at the simulator.
    fn role(&self, harness: &str) -> Value {
        simulated_role(harness, &self.sim.url())
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

/// One task through the whole pipeline on the given harnesses, to merged.
async fn pipeline_on(harnesses: [&str; 4]) {
    let lab = Lab::start(&sim_pipeline(), &["--merge-poll-ms", "200"], &[]).await;
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
    lab.world.wait_until_pr(id).await;
    let remote = lab.world.dir.path().join("lab/remote.git");
    let log = testkit::git(&remote, &["log", "--format=%s", branch]).unwrap();
    assert!(log.lines().any(|l| l == "Add hello.txt"), "{log}");
    let (status, body) = lab.world.action(id, "merge", json!({})).await;
    assert_eq!(status, 200, "{body}");
    lab.world.wait_state(id, "done").await;
    drop(lab.sim_scenarios);
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_runs_a_whole_pipeline() {
    pipeline_on(["codex"; 4]).await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_runs_a_whole_pipeline() {
    pipeline_on(["opencode"; 4]).await;
}

impl Lab {
    /// Adds a project where every stage runs `harness` with `role` merged over its default role.
    async fn project_with(&self, name: &str, harness: &str, overrides: Value) -> String {
        let mut role = self.role(harness);
        for (k, v) in overrides.as_object().unwrap() {
            role[k] = v.clone();
        }
        let roles: serde_json::Map<String, Value> = ["plan", "implement", "review", "pr"]
            .iter()
            .map(|s| (s.to_string(), role.clone()))
            .collect();
        let path = self.world.add_repo(name);
        let (status, body) = self
            .server()
            .post(
                "/api/projects",
                &json!({"path": path, "name": name, "settings": {"roles": roles}}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
        name.to_string()
    }
}

fn plan_then(steps: Value) -> Vec<(&'static str, Value)> {
    vec![("plan", json!({"runs": [steps]}))]
}

async fn question_resumes_the_same_session_on(harness: &str) {
    let plan = json!({"runs": [{"turns": [
        [{"do": "question", "text": "Formal or casual greeting?"}],
        [
            {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add a formal greeting\n"},
            {"do": "signal", "args": ["plan-ready"]},
            {"do": "message", "text": "Planned."}
        ]
    ]}]});
    let lab = Lab::start(&[("plan", plan)], &[], &[]).await;
    let project = lab.project_with("q", harness, json!({})).await;
    let id = lab.world.new_task_in(&project, "Greeting", true, 0).await;
    let detail = lab
        .world
        .wait_state_for(id, "needs_input", std::time::Duration::from_secs(90))
        .await;
    assert_eq!(
        detail["task"]["state"]["question"],
        "Formal or casual greeting?"
    );
    let session = detail["runs"][0]["session"].as_str().unwrap().to_string();
    let (status, body) = lab
        .world
        .action(id, "answer", json!({"text": "Formal, please."}))
        .await;
    assert_eq!(status, 200, "{body}");
    let detail = lab
        .world
        .wait_state_for(id, "plan_gate", std::time::Duration::from_secs(90))
        .await;
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["turns"], 2);
    assert_eq!(
        runs[0]["session"],
        session.as_str(),
        "the same harness session resumed"
    );
    // The resumed turn's request carries the whole history: the question and the answer.
    let last = lab
        .sim
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.body.to_string().contains("Formal, please."))
        .unwrap();
    assert!(
        last.body.to_string().contains("Formal or casual greeting?"),
        "history lost: {}",
        last.body
    );
    assert!(
        detail["doc"]
            .as_str()
            .unwrap()
            .contains("- [ ] Add a formal greeting")
    );
    // Token usage over both turns: summed per turn, or the session's running total for harnesses
    // that report cumulative usage (Codex) — never counted twice.
    let usage: Vec<Value> = lab
        .world
        .logs(id)
        .await
        .into_iter()
        .filter(|e| e["event"]["type"] == "usage")
        .map(|e| e["event"].clone())
        .collect();
    assert!(usage.len() >= 2, "usage reports of both turns: {usage:#?}");
    let input: Vec<u64> = usage
        .iter()
        .map(|u| u["input_tokens"].as_u64().unwrap())
        .collect();
    // Codex reports the thread's running totals after a resume (the second report includes the
    // first turn): its decoder must mark them cumulative, or the run would count turn 0 twice.
    assert_eq!(
        usage.iter().any(|u| u["cumulative"] == true),
        harness == "codex",
        "{usage:#?}"
    );
    let expected = if usage.iter().any(|u| u["cumulative"] == true) {
        *input.iter().max().unwrap()
    } else {
        input.iter().sum()
    };
    assert_eq!(
        runs[0]["input_tokens"].as_u64().unwrap(),
        expected,
        "{usage:#?}"
    );
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_question_resumes_the_same_session() {
    question_resumes_the_same_session_on("codex").await;
}

/// A stop while `harness`'s agent (in `session` mode) runs a shell tool kills every process of
/// the run (within `grace_ms` of the graceful interrupt); a resume continues the same session.
/// Returns the lab and the task, for harness-specific checks.
async fn stop_during_a_shell_tool_on(harness: &str, session: &str, grace_ms: &str) -> (Lab, i64) {
    let plan = json!({"runs": [{"turns": [
        [{"do": "run", "command": "echo started > started.txt; sleep 600"}],
        [
            {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Continue\n"},
            {"do": "signal", "args": ["plan-ready"]},
            {"do": "message", "text": "Continued."}
        ]
    ]}]});
    let lab = Lab::start(&[("plan", plan)], &["--stop-grace-ms", grace_ms], &[]).await;
    let project = lab
        .project_with("stop", harness, json!({"session": session}))
        .await;
    let id = lab.world.new_task_in(&project, "Stop me", true, 0).await;
    lab.world.wait_run(id, "plan", "running").await;
    let mark = lab.world.run_mark(id).await;
    let detail = lab.world.detail(id).await;
    let started = lab.world.worktree(&detail).join("started.txt");
    testkit::wait_until(
        "the shell tool to run",
        std::time::Duration::from_secs(90),
        || {
            let running = started.exists();
            async move { running.then_some(()) }
        },
    )
    .await
    .unwrap();
    let (status, body) = lab.world.action(id, "stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let run = lab.world.wait_run(id, "plan", "stopped").await;
    assert_eq!(
        processes_of_run(&mark),
        Vec::<u32>::new(),
        "a process of the stopped run survived"
    );
    let detail = lab.world.detail(id).await;
    assert_eq!(
        detail["task"]["state"],
        json!({"state": "stopped", "stage": "plan"})
    );
    assert_eq!(
        run_summary(&detail),
        pairs(&[("plan", "stopped")]),
        "no chaining"
    );
    let session = run["session"]
        .as_str()
        .expect("the stopped run has a session")
        .to_string();

    // Resume continues the same harness session.
    let (status, body) = lab.world.action(id, "resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let detail = lab
        .world
        .wait_state_for(id, "plan_gate", std::time::Duration::from_secs(90))
        .await;
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(
        runs[1]["session"],
        session.as_str(),
        "resume continued the stopped session"
    );
    (lab, id)
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_stop_kills_every_process_and_resume_continues() {
    stop_during_a_shell_tool_on("codex", "one-shot", "1000").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_long_lived_stop_kills_every_process_and_resume_continues() {
    stop_during_a_shell_tool_on("codex", "long-lived", "1000").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_stop_kills_every_process_and_resume_continues() {
    stop_during_a_shell_tool_on("opencode", "one-shot", "1000").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn a_dead_model_endpoint_waits_and_continues_when_it_returns() {
    let plan = json!({"runs": [[
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Something\n"},
        {"do": "signal", "args": ["plan-ready"]},
        {"do": "message", "text": "Planned."}
    ]]});
    let lab = Lab::start(
        &[("plan", plan)],
        &["--retry-base-ms", "300", "--retry-cap-ms", "1500"],
        &[],
    )
    .await;
    // A port nothing listens on (until the endpoint "comes back" below).
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let down = format!("http://127.0.0.1:{port}/v1");
    let project = lab
        .project_with("down", "codex", json!({"base_url": down}))
        .await;
    let id = lab
        .world
        .new_task_in(&project, "Endpoint down", true, 0)
        .await;
    let detail = lab
        .world
        .wait_state_for(id, "waiting", std::time::Duration::from_secs(60))
        .await;
    let state = &detail["task"]["state"];
    assert_eq!(state["stage"], "plan");
    let first = &detail["runs"][0];
    assert_eq!(
        first["status"], "failed",
        "recorded as failed, never as completed: {first}"
    );
    assert!(!first["reason"].as_str().unwrap().is_empty());
    // No review round and no run-cap slot consumed.
    assert_eq!(detail["task"]["review_rounds"], 0);
    assert_eq!(detail["task"]["runs_started"], 1);

    // Let it fail a second time, then bring the endpoint back on the same port.
    lab.world.wait_run(id, "plan", "failed").await;
    testkit::wait_until(
        "a second failed attempt",
        std::time::Duration::from_secs(60),
        || {
            let world = &lab.world;
            async move {
                let detail = world.detail(id).await;
                let failed = detail["runs"]
                    .as_array()?
                    .iter()
                    .filter(|r| r["status"] == "failed")
                    .count();
                (failed >= 2).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let back = Simulator::start(listener, lab.sim_scenarios.clone()).await;
    let detail = lab
        .world
        .wait_state_for(id, "plan_gate", std::time::Duration::from_secs(60))
        .await;
    assert_eq!(detail["task"]["runs_started"], 1, "retries are not counted");
    let last = detail["runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "completed");
    assert!(!back.requests().is_empty());
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn a_rate_limit_is_retried_without_consuming_a_review_round() {
    let scenarios = [
        (
            "plan",
            json!({"runs": [[{"do": "signal", "args": ["plan-ready"]}, {"do": "message", "text": "ok"}]]}),
        ),
        (
            "implement",
            json!({"runs": [[{"do": "write", "path": "a.txt", "content": "a\n"}, {"do": "run", "command": "git add -A && git commit -qm a"}]]}),
        ),
        (
            "review",
            json!({"runs": [[
                {"do": "http_error", "status": 429, "times": 1},
                {"do": "signal", "args": ["verdict", "ready"]},
                {"do": "message", "text": "ok"}
            ]]}),
        ),
        (
            "pr",
            json!({"runs": [[{"do": "signal", "args": ["pr-done"]}, {"do": "message", "text": "ok"}]]}),
        ),
    ];
    let lab = Lab::start(&scenarios, &["--retry-base-ms", "200"], &[]).await;
    let project = lab.project_with("limited", "codex", json!({})).await;
    let id = lab
        .world
        .new_task_in(&project, "Rate limited", false, 0)
        .await;
    let detail = lab
        .world
        .wait_state_for(id, "awaiting_merge", std::time::Duration::from_secs(120))
        .await;
    assert_eq!(
        detail["task"]["review_rounds"], 0,
        "the 429 cost no review round"
    );
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("review", "failed"),
            ("review", "completed"),
            ("pr", "completed")
        ])
    );
    assert_eq!(
        detail["task"]["runs_started"], 4,
        "the retry took no run slot"
    );
    assert!(
        detail["runs"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("429"),
        "{}",
        detail["runs"][2]
    );
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn a_stalled_model_is_detected() {
    let lab = Lab::start(
        &plan_then(json!([{"do": "stall"}])),
        &["--stall-secs", "2"],
        &[],
    )
    .await;
    let project = lab.project_with("stall", "codex", json!({})).await;
    let id = lab.world.new_task_in(&project, "Stalls", true, 0).await;
    let detail = lab
        .world
        .wait_state_for(id, "blocked", std::time::Duration::from_secs(60))
        .await;
    let reason = detail["task"]["state"]["reason"]["detail"]
        .as_str()
        .unwrap();
    assert!(
        reason.starts_with("stalled: the agent emitted nothing for 2.0 s"),
        "{reason}"
    );
    let mark = lab.world.run_mark(id).await;
    assert_eq!(processes_of_run(&mark), Vec::<u32>::new());
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn garbage_from_the_model_ends_in_a_clear_state() {
    let lab = Lab::start(
        &plan_then(json!([{"do": "garbage"}])),
        &["--retry-base-ms", "60000"],
        &[],
    )
    .await;
    let project = lab.project_with("garbage", "codex", json!({})).await;
    let id = lab.world.new_task_in(&project, "Garbage", true, 0).await;
    let server = lab.server();
    let detail = testkit::wait_until(
        "the run to fail",
        std::time::Duration::from_secs(60),
        || async move {
            let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
            (detail["runs"][0]["status"] == "failed").then_some(detail)
        },
    )
    .await
    .unwrap();
    let reason = detail["runs"][0]["reason"].as_str().unwrap();
    assert!(!reason.is_empty());
    let state = detail["task"]["state"]["state"].as_str().unwrap();
    assert!(state == "waiting" || state == "blocked", "{detail:#}");
}

/// Needs no real CLI (a shell script stands in for a crashing Codex), so it always runs.
#[tokio::test]
async fn a_crashing_cli_fails_the_run_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let crashing = dir.path().join("codex");
    // It answers the version check (`project add` asks every role's CLI), then crashes mid-turn.
    std::fs::write(
        &crashing,
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then echo 'codex-cli 0.169.0'; exit 0; fi\n\
         echo '{\"type\":\"thread.started\",\"thread_id\":\"t-1\"}'\n\
         echo 'panic: out of cheese' >&2\n\
         exit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &crashing,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let world = World::start_with_env(&[], &["--codex-bin", crashing.to_str().unwrap()], &[]).await;
    let roles: serde_json::Map<String, Value> = ["plan", "implement", "review", "pr"]
        .iter()
        .map(|s| {
            (
                s.to_string(),
                // The owner (the administrator) has no credentials of their own: the role's.
                json!({"harness": "codex", "model": "gpt-5.5", "env": {"OPENAI_API_KEY": "unused"}}),
            )
        })
        .collect();
    let path = world.add_repo("crash");
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": path, "name": "crash", "settings": {"roles": roles}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = world.new_task_in("crash", "Crash", true, 0).await;
    let detail = world.wait_state(id, "blocked").await;
    let reason = detail["task"]["state"]["reason"]["detail"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("crashed (exit code 3)") && reason.contains("out of cheese"),
        "{reason}"
    );
    assert_eq!(detail["runs"][0]["session"], "t-1");
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn the_agent_environment_holds_no_server_secret() {
    let plan = json!([
        {"do": "run", "command": "env > agent-env.txt"},
        {"do": "signal", "args": ["plan-ready"]},
        {"do": "message", "text": "ok"}
    ]);
    let lab = Lab::start(
        &plan_then(plan),
        &[],
        &[("ATELIER_SECRET_CANARY", "canary-5b2e")],
    )
    .await;
    let project = lab.project_with("env", "codex", json!({})).await;
    let id = lab.world.new_task_in(&project, "Env", true, 0).await;
    let detail = lab
        .world
        .wait_state_for(id, "plan_gate", std::time::Duration::from_secs(60))
        .await;
    let env = std::fs::read_to_string(lab.world.worktree(&detail).join("agent-env.txt")).unwrap();
    assert!(
        !env.contains("canary-5b2e"),
        "a server secret reached the agent's shell tool"
    );
    assert!(
        !env.contains(lab.server().token()),
        "the API token reached the agent"
    );
    assert!(env.contains("ATELIER_RUN_TOKEN="));
    // What Codex itself sent: our model, our context.
    let request = lab
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path.contains("responses"))
        .unwrap();
    assert_eq!(request.model(), Some("gpt-5.5"));
    assert!(request.body.to_string().contains("Atelier-Stage: plan #0"));
    let _unused: &Path = lab.world.dir.path();
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_runs_a_whole_pipeline() {
    pipeline_on(["claude-code"; 4]).await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn a_mixed_pipeline_runs_each_role_on_its_own_harness() {
    // Claude plans, Codex implements, OpenCode reviews, Claude opens the pull request.
    pipeline_on(["claude-code", "codex", "opencode", "claude-code"]).await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_question_resumes_the_same_session() {
    question_resumes_the_same_session_on("claude-code").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_stop_kills_every_process_and_resume_continues() {
    stop_during_a_shell_tool_on("claude-code", "one-shot", "1000").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn project_views_do_not_show_role_credentials() {
    let lab = Lab::start(&sim_pipeline(), &[], &[]).await;
    lab.project("secret", ["claude-code", "codex", "opencode", "codex"])
        .await;
    let projects = lab.server().get("/api/projects").await.unwrap();
    let text = projects.to_string();
    assert!(
        !text.contains("sk-ant-simulated") && !text.contains("\"simulated\""),
        "{text}"
    );
    assert!(text.contains("(redacted)"));
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn a_model_of_another_harness_is_refused_before_anything_starts() {
    let lab = Lab::start(&sim_pipeline(), &[], &[]).await;
    let mut roles = serde_json::Map::new();
    for stage in ["plan", "implement", "review", "pr"] {
        roles.insert(stage.into(), lab.role("codex"));
    }
    roles.insert(
        "implement".into(),
        json!({"harness": "codex", "model": "claude-sonnet-4-5"}),
    );
    let path = lab.world.add_repo("wrong");
    let (status, body) = lab
        .server()
        .post(
            "/api/projects",
            &json!({"path": path, "name": "wrong", "settings": {"roles": roles}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("roles.implement") && error.contains("claude-sonnet-4-5"),
        "{error}"
    );
    // Every CLI has a long-lived session mode; a session mode none has is refused.
    for harness in ["claude-code", "codex", "opencode"] {
        let mut role = lab.role(harness);
        role["session"] = json!("forever");
        roles.insert("implement".into(), role);
        let (status, body) = lab
            .server()
            .post(
                "/api/projects",
                &json!({"path": path, "name": "wrong", "settings": {"roles": roles}}),
            )
            .await
            .unwrap();
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("session") && error.contains("forever") && error.contains("long-lived"),
            "{error}"
        );
    }
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_question_resumes_the_same_session() {
    question_resumes_the_same_session_on("opencode").await;
}

/// The `full` pipeline on the real CLIs: each stage's agent on its own harness — QA on OpenCode
/// keeping evidence in the task's attachments, refine on Claude Code committing after the
/// review — to a pull request whose evidence bundle links the QA files.
#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn a_full_pipeline_runs_qa_and_refine_on_the_real_clis() {
    let mut scenarios = sim_pipeline();
    scenarios.push((
        "qa",
        json!({"runs": [[
            {"do": "run", "command": "mkdir -p \"$(dirname \"$ATELIER_TASK_DOC\")/attachments\" && cat hello.txt > \"$(dirname \"$ATELIER_TASK_DOC\")/attachments/qa-1.txt\""},
            {"do": "signal", "args": ["qa", "pass"]},
            {"do": "message", "text": "Every scenario passed."}
        ]]}),
    ));
    scenarios.push((
        "refine",
        json!({"runs": [[
            {"do": "write", "path": "hello.txt", "content": "hello from the agent, refined\n"},
            {"do": "run", "command": "git commit -qam 'Refine hello.txt'"},
            {"do": "signal", "args": ["refine-done"]},
            {"do": "message", "text": "Refined."}
        ]]}),
    ));
    let lab = Lab::start(&scenarios, &[], &[]).await;
    let mut roles = serde_json::Map::new();
    for (stage, harness) in [
        ("plan", "claude-code"),
        ("implement", "codex"),
        ("review", "claude-code"),
        ("qa", "opencode"),
        ("refine", "claude-code"),
        ("pr", "codex"),
    ] {
        roles.insert(stage.into(), lab.role(harness));
    }
    let path = lab.world.add_repo("lab");
    let (status, body) = lab
        .server()
        .post(
            "/api/projects",
            &json!({"path": path, "name": "lab", "settings": {"roles": roles}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    // Not technical: the plan gate passes by itself.
    let (status, body) = lab
        .server()
        .post(
            "/api/tasks",
            &json!({"project": "lab", "title": "Say hello", "body": "Add hello.txt.",
                    "technical": false, "pipeline": "full"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let detail = lab
        .world
        .wait_state_for(id, "awaiting_merge", std::time::Duration::from_secs(180))
        .await;
    assert_eq!(detail["task"]["pipeline"], "full");
    let stages: Vec<&str> = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["plan", "implement", "review", "qa", "refine", "pr"],
        "{detail:#}"
    );
    let harnesses: Vec<&str> = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["harness"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        harnesses,
        [
            "claude-code",
            "codex",
            "claude-code",
            "opencode",
            "claude-code",
            "codex"
        ]
    );
    // The stage line of each new stage reached its model.
    let requests = lab.sim.requests();
    for stage in ["qa #0", "refine #0"] {
        let line = format!("Atelier-Stage: {stage}");
        assert!(
            requests.iter().any(|r| r.body.to_string().contains(&line)),
            "no request carried `{line}`"
        );
    }
    // The refiner's commit is what is published (no second review), with the QA evidence.
    lab.world.wait_until_pr(id).await;
    let branch = detail["task"]["branch"].as_str().unwrap();
    let remote = lab.world.dir.path().join("lab/remote.git");
    let log = testkit::git(&remote, &["log", "--format=%s", branch]).unwrap();
    assert_eq!(log.lines().next(), Some("Refine hello.txt"), "{log}");
    let (status, evidence) = lab
        .world
        .get_text(&format!("/api/tasks/{id}/attachments/evidence.md"))
        .await;
    assert_eq!(status, 200, "{evidence}");
    assert!(
        evidence.contains(&format!("/api/tasks/{id}/attachments/qa-1.txt")),
        "{evidence}"
    );
    let (status, qa) = lab
        .world
        .get_text(&format!("/api/tasks/{id}/attachments/qa-1.txt"))
        .await;
    assert_eq!(status, 200, "{qa}");
    assert_eq!(qa, "hello from the agent\n");
}

/// What marks the agent CLI's own process in its command line (an extended regular
/// expression): Claude Code's `claude -p … --output-format stream-json`, Codex's `codex exec …`
/// or `codex app-server …` (the bridge's command line holds the path and arguments as JSON,
/// never with a space between them), OpenCode's long-lived `atelier opencode-bridge` (whose
/// child is `opencode serve`).
fn agent_marker(harness: &str) -> &'static str {
    match harness {
        "claude-code" => "--output-format stream-json",
        "codex" => "/codex (exec|app-server) ",
        "opencode" => "opencode-bridge",
        other => panic!("no marker for {other}"),
    }
}

/// A shell command that writes to `file` the identity (pid and start time, which also tell apart
/// two processes of the same pid in two sandboxes) of every ancestor of the tool's shell whose
/// command line holds `harness`'s [`agent_marker`], nearest first: the last one is the agent CLI
/// itself (Claude Code runs its tools under a helper with its own command line).
fn agent_pid_command(harness: &str, file: &str) -> String {
    format!(
        "p=$$; while [ \"$p\" -gt 1 ]; do if tr '\\0' ' ' < /proc/$p/cmdline | grep -qE -- \
         '{}'; then echo $p:$(cut -d' ' -f22 /proc/$p/stat); fi; \
         p=$(cut -d' ' -f4 /proc/$p/stat); done > {file}",
        agent_marker(harness)
    )
}

/// A plan run that records its CLI's pid, asks a question, and after the answer records the
/// pid again and goes on with more tool calls.
fn question_then_tools(harness: &str) -> Value {
    json!({"runs": [{"turns": [
        [
            {"do": "run", "command": agent_pid_command(harness, "agent-0.pid")},
            {"do": "question", "text": "Formal or casual greeting?"}
        ],
        [
            {"do": "run", "command": agent_pid_command(harness, "agent-1.pid")},
            {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add a formal greeting\n"},
            {"do": "signal", "args": ["plan-ready"]},
            {"do": "message", "text": "Planned."}
        ]
    ]}]})
}

/// Question → answer → more tool calls on `harness` in `session` mode. Returns whether one
/// CLI process served both turns, and the hand-off: the time from the answer's request to the
/// model request that carries it.
async fn question_then_tools_on(harness: &str, session: &str) -> (bool, std::time::Duration) {
    let lab = Lab::start(&[("plan", question_then_tools(harness))], &[], &[]).await;
    let project = lab
        .project_with("q", harness, json!({"session": session}))
        .await;
    let id = lab.world.new_task_in(&project, "Greeting", true, 0).await;
    let detail = lab
        .world
        .wait_state_for(id, "needs_input", std::time::Duration::from_secs(90))
        .await;
    let mark = lab.world.run_mark(id).await;
    let waiting = processes_of_run(&mark);
    // A long-lived agent waits for the answer alive; a one-shot one is gone.
    assert_eq!(waiting.is_empty(), session == "one-shot", "{waiting:?}");
    let worktree = lab.world.worktree(&detail);
    let session_id = detail["runs"][0]["session"].as_str().unwrap().to_string();
    let asked_at = store_now_us();
    let (status, body) = lab
        .world
        .action(id, "answer", json!({"text": "Formal, please."}))
        .await;
    assert_eq!(status, 200, "{body}");
    let detail = lab
        .world
        .wait_state_for(id, "plan_gate", std::time::Duration::from_secs(90))
        .await;
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["turns"], 2);
    assert_eq!(runs[0]["session"], session_id.as_str());
    assert!(
        detail["doc"]
            .as_str()
            .unwrap()
            .contains("- [ ] Add a formal greeting")
    );
    let requests = lab.sim.requests();
    let answered = requests
        .iter()
        .find(|r| r.body.to_string().contains("Formal, please."))
        .unwrap();
    assert!(
        answered
            .body
            .to_string()
            .contains("Formal or casual greeting?")
    );
    let hand_off = std::time::Duration::from_micros(answered.received_at_us - asked_at);
    // Every model request after the answer came from the same conversation, and the turn after
    // it ran more tools (the second pid file) before ending.
    let pid = |n: u32| {
        std::fs::read_to_string(worktree.join(format!("agent-{n}.pid")))
            .unwrap()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    let (first, second) = (pid(0), pid(1));
    assert!(
        !first.is_empty() && !second.is_empty(),
        "{first:?} {second:?}"
    );
    // The run is over: nothing of it is left.
    assert_eq!(processes_of_run(&mark), Vec::<u32>::new());
    let logs = lab.world.logs(id).await;
    let sessions = logs
        .iter()
        .filter(|e| e["event"]["type"] == "session")
        .count();
    // Live text: Claude Code streams it in both modes, Codex's app-server (long-lived) too.
    if harness == "claude-code" || session == "long-lived" {
        let partial = logs.iter().any(|e| e["event"]["type"] == "partial");
        assert!(partial, "live text reached the transcript");
    }
    eprintln!(
        "{harness} {session}: answer → next model request {hand_off:?} (agent pids {first} \
         and {second}, {sessions} session announcement(s))"
    );
    (first == second && sessions == 1, hand_off)
}

fn store_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_long_lived_serves_question_answer_and_more_tools_from_one_process() {
    let (one_process, _) = question_then_tools_on("claude-code", "long-lived").await;
    assert!(one_process, "one Claude Code process served the whole run");
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_one_shot_starts_a_process_per_turn() {
    let (one_process, _) = question_then_tools_on("claude-code", "one-shot").await;
    assert!(!one_process, "one-shot: a new process resumed the session");
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_long_lived_serves_question_answer_and_more_tools_from_one_process() {
    let (one_process, _) = question_then_tools_on("codex", "long-lived").await;
    assert!(one_process, "one codex app-server served the whole run");
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_one_shot_starts_a_process_per_turn() {
    let (one_process, _) = question_then_tools_on("codex", "one-shot").await;
    assert!(
        !one_process,
        "one-shot: a new codex exec resumed the thread"
    );
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_long_lived_stop_while_waiting_for_an_answer_leaves_no_process() {
    stop_while_waiting_for_an_answer("claude-code").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_long_lived_stop_while_waiting_for_an_answer_leaves_no_process() {
    stop_while_waiting_for_an_answer("codex").await;
}

/// A long-lived `harness` agent waits alive for its answer; a stop leaves no process of it.
async fn stop_while_waiting_for_an_answer(harness: &str) {
    let lab = Lab::start(&[("plan", question_then_tools(harness))], &[], &[]).await;
    let project = lab
        .project_with("q", harness, json!({"session": "long-lived"}))
        .await;
    let id = lab.world.new_task_in(&project, "Greeting", true, 0).await;
    lab.world
        .wait_state_for(id, "needs_input", std::time::Duration::from_secs(90))
        .await;
    let mark = lab.world.run_mark(id).await;
    assert_ne!(
        processes_of_run(&mark),
        Vec::<u32>::new(),
        "the agent waits alive"
    );
    let (status, body) = lab.world.action(id, "stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    lab.world.wait_run(id, "plan", "stopped").await;
    testkit::wait_until(
        "the waiting agent to be gone",
        std::time::Duration::from_secs(20),
        || {
            let left = processes_of_run(&mark);
            async move { left.is_empty().then_some(()) }
        },
    )
    .await
    .unwrap();
}

/// A long-lived implementer whose first turn made no progress is nudged, and the nudge goes to
/// the same process (it waited alive while the run's end was recorded), which then commits.
#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_long_lived_nudge_is_written_to_the_same_process() {
    let mut stages = sim_pipeline();
    for (stage, scenario) in &mut stages {
        if *stage == "implement" {
            *scenario = json!({"runs": [{"turns": [
                [
                    {"do": "run", "command": agent_pid_command("claude-code", "agent-0.pid")},
                    {"do": "message", "text": "Looked around; nothing done yet."}
                ],
                [
                    {"do": "run", "command": agent_pid_command("claude-code", "agent-1.pid")},
                    {"do": "write", "path": "hello.txt", "content": "hello from the agent\n"},
                    {"do": "check", "item": "Add hello.txt"},
                    {"do": "run", "command": "git add hello.txt && git commit -qm 'Add hello.txt'"},
                    {"do": "message", "text": "Implemented."}
                ]
            ]}]});
        }
    }
    let lab = Lab::start(&stages, &["--warm-limit", "0"], &[]).await;
    let project = lab.long_lived_project("n", "claude-code").await;
    let id = lab.world.new_task_in(&project, "Greeting", false, 0).await;
    let detail = lab
        .world
        .wait_state_for(id, "awaiting_merge", std::time::Duration::from_secs(120))
        .await;
    let implement: Vec<&Value> = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["stage"] == "implement")
        .collect();
    assert_eq!(implement.len(), 2, "{detail:#}");
    assert_eq!(implement[0]["session"], implement[1]["session"]);
    // The nudge run took the process over, mark included (recovery would find it by it).
    let db = rusqlite::Connection::open(lab.world.data.join("atelier.db")).unwrap();
    let marks: Vec<String> = db
        .prepare("SELECT mark FROM runs WHERE task_id = ?1 AND stage = 'implement' ORDER BY id")
        .unwrap()
        .query_map([id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(marks[0], marks[1]);
    // One process served both runs: the pid files (left uncommitted in the worktree) agree.
    let worktree = lab.world.worktree(&detail);
    let pid = |n: u32| {
        std::fs::read_to_string(worktree.join(format!("agent-{n}.pid")))
            .unwrap()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    assert!(!pid(0).is_empty());
    assert_eq!(
        pid(0),
        pid(1),
        "the nudge was served by the first run's process"
    );
    let logs = lab.world.logs(id).await;
    assert!(
        logs.iter().any(|e| e["event"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("nudge written to the waiting agent"))),
        "{logs:#?}"
    );
    let nudged = lab
        .sim
        .requests()
        .into_iter()
        .find(|r| {
            r.body
                .to_string()
                .contains("Atelier guard: your last turn ended")
        })
        .expect("the nudge reached the model");
    assert!(
        nudged
            .body
            .to_string()
            .contains("Looked around; nothing done yet.")
    );
    assert_eq!(processes_of_run(&marks[0]), Vec::<u32>::new());
}

/// The `AGENTS.md` implement writes and commits while the warm review process idles: Codex reads
/// it when a thread starts.
const FRESH_AGENTS_MD: &str = "Reviewers greet in Latin (9q2z).\n";

/// Implement waits for `release`, then commits (on Codex, an `AGENTS.md` too); review and pr
/// end at once.
fn warm_pipeline(harness: &str, release: &Path) -> Vec<(&'static str, Value)> {
    let mut stages = sim_pipeline();
    for (stage, scenario) in &mut stages {
        if *stage == "implement" {
            let mut steps = vec![
                wait_for_file(release),
                json!({"do": "write", "path": "hello.txt", "content": "hello from the agent\n"}),
            ];
            if harness == "codex" {
                steps.push(json!({"do": "write", "path": "AGENTS.md", "content": FRESH_AGENTS_MD}));
            }
            if harness == "opencode" {
                // An instructions file (`AGENTS.md`, which OpenCode puts into its system
                // prompt) and a project configuration (`opencode.json`, which it reads at boot)
                // naming another one (`NOTES.md`).
                steps.extend([
                    json!({"do": "write", "path": "AGENTS.md", "content": "Greet in Latin (rule 5c2e).\n"}),
                    json!({"do": "write", "path": "NOTES.md", "content": "Sign as Atelier (rule 9d1f).\n"}),
                    json!({"do": "write", "path": "opencode.json", "content": "{\"instructions\": [\"NOTES.md\"]}\n"}),
                ]);
            }
            steps.extend([
                json!({"do": "check", "item": "Add hello.txt"}),
                json!({"do": "run", "command": "git add -A && git commit -qm 'Warm commit 7f3a'"}),
                json!({"do": "message", "text": "Implemented."}),
            ]);
            *scenario = json!({ "runs": [steps] });
        }
    }
    stages
}

impl Lab {
    /// A project whose every role is a long-lived `harness` session, with the test's release
    /// files shown to its agents.
    async fn long_lived_project(&self, name: &str, harness: &str) -> String {
        let mut role = self.role(harness);
        role["session"] = json!("long-lived");
        let roles: serde_json::Map<String, Value> = ["plan", "implement", "review", "pr"]
            .iter()
            .map(|s| (s.to_string(), role.clone()))
            .collect();
        let path = self.world.add_repo(name);
        let (status, body) = self
            .server()
            .post(
                "/api/projects",
                &json!({"path": path, "name": name,
                        "settings": {"roles": roles, "sandbox": gated_sandbox()}}),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
        name.to_string()
    }
}

/// The mark of an idle warm standby process of this server (one no run holds yet: the server
/// lists those in `<data>/warm/`) that has a process running.
fn idle_warm_mark(data: &Path) -> Option<String> {
    std::fs::read_dir(data.join("warm"))
        .ok()?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|mark| !processes_of_run(mark).is_empty())
}

/// Waits for this server's idle warm standby process and returns its mark (the mark of a warm
/// process already handed to its run — a non-technical task's implementer, warmed during plan
/// — does not count).
async fn wait_warm(lab: &Lab) -> String {
    let data = lab.world.data.clone();
    testkit::wait_until(
        "a warm standby process",
        std::time::Duration::from_secs(60),
        || {
            let found = idle_warm_mark(&data);
            async move { found }
        },
    )
    .await
    .unwrap()
}

/// Implement → review on long-lived `harness` sessions, warm (the review process started while
/// implement ran) or cold. Returns the hand-off (implement's last model request → review's
/// first) and review's first model request body.
async fn implement_to_review(harness: &str, warm: bool) -> (std::time::Duration, String) {
    let release = release_file(&format!("warm-release-{harness}-{warm}"));
    let _ = std::fs::remove_file(&release);
    let limit = if warm { "2" } else { "0" };
    let lab = Lab::start(
        &warm_pipeline(harness, &release),
        &["--warm-limit", limit],
        &[],
    )
    .await;
    let project = lab.long_lived_project("w", harness).await;
    let id = lab.world.new_task_in(&project, "Greeting", false, 0).await;
    lab.world.wait_run(id, "implement", "running").await;
    if warm {
        let mark = wait_warm(&lab).await;
        // Let the warm process finish booting, idle, before the commit it must not miss (an
        // OpenCode bridge also warms OpenCode up: its first prompt, failed on the bridge's own
        // endpoint, takes seconds, more under a loaded test run; the bridge notes the worktree's
        // configuration only after that, so a change during the warm-up would be missed).
        let (idle, limit) = if harness == "opencode" {
            (20, 90)
        } else {
            (3, 30)
        };
        testkit::wait_until(
            "the warm process to idle",
            std::time::Duration::from_secs(limit),
            || {
                let processes = if harness == "opencode" {
                    opencode_servers(&mark)
                } else {
                    processes_of_run(&mark)
                };
                let ready = processes.iter().any(|pid| {
                    std::fs::metadata(format!("/proc/{pid}"))
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > std::time::Duration::from_secs(idle))
                });
                async move { ready.then_some(()) }
            },
        )
        .await
        .unwrap();
    }
    std::fs::write(&release, b"").unwrap();
    lab.world
        .wait_state_for(id, "awaiting_merge", std::time::Duration::from_secs(180))
        .await;
    let _ = std::fs::remove_file(&release);
    let detail = lab.world.detail(id).await;
    let db = rusqlite::Connection::open(lab.world.data.join("atelier.db")).unwrap();
    let review_mark: String = db
        .query_row(
            "SELECT mark FROM runs WHERE task_id = ?1 AND stage = 'review'",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(review_mark.starts_with("warm-"), warm, "{detail:#}");
    if harness == "opencode" {
        // Only the role's model was asked (the warm-up went to the bridge's own endpoint).
        let requests = lab.sim.requests();
        assert!(requests.iter().all(|r| r.body["model"] == "sim-model"));
    }
    // The server reports what warm standby did (`GET /api/status`, `atelier doctor`).
    let status = lab.server().get("/api/status").await.unwrap();
    let used = status["warm"]["used"].as_u64().unwrap();
    assert_eq!(used >= 1, warm, "{status:#}");
    assert_eq!(
        status["warm"]["limit"],
        if warm { 2 } else { 0 },
        "{status:#}"
    );
    let requests = lab.sim.requests();
    let first_review = requests
        .iter()
        .position(|r| r.body.to_string().contains("Atelier-Stage: review"))
        .unwrap();
    let last_implement = requests[..first_review]
        .iter()
        .rfind(|r| r.body.to_string().contains("Atelier-Stage: implement"))
        .unwrap();
    let review = &requests[first_review];
    let hand_off =
        std::time::Duration::from_micros(review.received_at_us - last_implement.received_at_us);
    (hand_off, review.body.to_string())
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_warm_standby_takes_the_next_stage_and_sees_the_last_commit() {
    let (warm, body) = implement_to_review("claude-code", true).await;
    // The previous run's commit, made while the warm process idled, is in its first request.
    assert!(body.contains("Warm commit 7f3a"), "{body}");
    assert!(
        body.contains("taken now, not when your process started"),
        "{body}"
    );
    // Claude Code's own snapshot, taken at boot, is not.
    assert!(
        !body.contains("This is the git status at the start of the conversation"),
        "{body}"
    );
    let (cold, cold_body) = implement_to_review("claude-code", false).await;
    assert!(
        cold_body.contains("This is the git status at the start of the conversation"),
        "a cold process keeps Claude Code's own snapshot"
    );
    eprintln!("implement's last model request → review's first: warm {warm:?}, cold {cold:?}");
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_warm_standby_takes_the_next_stage_and_sees_the_last_commit() {
    let (warm, body) = implement_to_review("codex", true).await;
    // The previous run's commit, made while the warm process idled, is in its first request,
    // under the git status taken at the hand-off.
    assert!(body.contains("Warm commit 7f3a"), "{body}");
    assert!(
        body.contains("taken now, not when your process started"),
        "{body}"
    );
    // So is the AGENTS.md that commit added: Codex read it when the thread started, at the
    // hand-off, not when the process booted.
    let agents = FRESH_AGENTS_MD.trim_end();
    assert!(
        body.contains("AGENTS.md instructions") && body.contains(agents),
        "{body}"
    );
    let (cold, cold_body) = implement_to_review("codex", false).await;
    assert!(cold_body.contains(agents), "{cold_body}");
    assert!(!cold_body.contains("taken now, not when your process started"));
    eprintln!(
        "codex: implement's last model request → review's first: warm {warm:?}, cold {cold:?}"
    );
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_warm_standby_ends_with_a_stop_and_after_a_kill9() {
    warm_stop_and_kill9("claude-code", &[]).await;
}

/// Without the sandbox nothing kills the warm process with the server: recovery does, by its
/// mark listed in the data directory.
#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_warm_standby_without_the_sandbox_ends_after_a_kill9() {
    warm_stop_and_kill9("claude-code", &["--sandbox", "none"]).await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_warm_standby_ends_with_a_stop_and_after_a_kill9() {
    warm_stop_and_kill9("codex", &[]).await;
}

/// The bridge and its `codex app-server` both carry the mark: recovery ends both.
#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_warm_standby_without_the_sandbox_ends_after_a_kill9() {
    warm_stop_and_kill9("codex", &["--sandbox", "none"]).await;
}

async fn warm_stop_and_kill9(harness: &str, server_args: &[&str]) {
    let release = release_file(&format!(
        "warm-release-stop-{harness}-{}",
        server_args.len()
    ));
    let _ = std::fs::remove_file(&release);
    let mut lab = Lab::start(&warm_pipeline(harness, &release), server_args, &[]).await;
    let project = lab.long_lived_project("w", harness).await;
    let gone = |mark: String| async move {
        testkit::wait_until(
            "the warm process to be gone",
            std::time::Duration::from_secs(20),
            || {
                let left = processes_of_run(&mark);
                async move { left.is_empty().then_some(()) }
            },
        )
        .await
        .unwrap();
    };
    // An OpenCode bridge starts `opencode serve`: the test waits for it, so that it too must go.
    let serving = |mark: String| async move {
        if harness == "opencode" {
            testkit::wait_until(
                "the warm process's opencode serve",
                std::time::Duration::from_secs(60),
                || {
                    let up = opencode_servers(&mark).len() == 1;
                    async move { up.then_some(()) }
                },
            )
            .await
            .unwrap();
        }
    };
    // A stop while the warm process waits: the task took another path.
    let id = lab.world.new_task_in(&project, "Stopped", false, 0).await;
    lab.world.wait_run(id, "implement", "running").await;
    let mark = wait_warm(&lab).await;
    serving(mark.clone()).await;
    let (status, body) = lab.world.action(id, "stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    gone(mark).await;
    // kill -9 of the server while a warm process waits: gone, also after the restart.
    let id = lab.world.new_task_in(&project, "Crashed", false, 0).await;
    lab.world.wait_run(id, "implement", "running").await;
    let mark = wait_warm(&lab).await;
    serving(mark.clone()).await;
    lab.world.server.kill9().await.unwrap();
    let clis: Vec<String> = agent_clis()
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .chain(server_args.iter().map(|a| a.to_string()))
        .collect();
    let clis: Vec<&str> = clis.iter().map(String::as_str).collect();
    lab.world.restart(&clis, &[]).await;
    gone(mark).await;
}

// ─── OpenCode long-lived sessions: `opencode serve` through the `atelier opencode-bridge` ───────

/// Pids of the run's (or warm process's) `opencode serve`, as `mark` finds them.
fn opencode_servers(mark: &str) -> Vec<u32> {
    processes_of_run(mark)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.get(1) == Some(&&b"serve"[..])
        })
        .collect()
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_long_lived_serves_question_answer_and_more_tools_from_one_process() {
    let (one_process, _) = question_then_tools_on("opencode", "long-lived").await;
    assert!(
        one_process,
        "one bridge (and its opencode serve) served the whole run"
    );
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_long_lived_stop_while_waiting_for_an_answer_leaves_no_process() {
    stop_while_waiting_for_an_answer("opencode").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_warm_standby_takes_the_next_stage_and_sees_the_last_commit() {
    let (warm, body) = implement_to_review("opencode", true).await;
    // The previous run's commit, made while the warm process idled, is in its first request
    // (the hand-off's git status), and so is the instructions file it wrote meanwhile: OpenCode
    // reads those at each request, not at boot.
    assert!(body.contains("Warm commit 7f3a"), "{body}");
    assert!(
        body.contains("taken now, not when your process started"),
        "{body}"
    );
    assert!(body.contains("rule 5c2e"), "{body}");
    // OpenCode reads its configuration at boot: the bridge saw the worktree's change and had
    // OpenCode read it again before the first turn.
    assert!(body.contains("rule 9d1f"), "{body}");
    // Cold long-lived and one-shot hand-offs are measured by `cargo bench -p cli --bench
    // harnesses`; each costs OpenCode's cold start (seconds) here.
    eprintln!(
        "opencode: implement's last model request → review's first: warm {warm:?} (its \
         configuration reloaded: the implementer wrote opencode.json)"
    );
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_warm_standby_ends_with_a_stop_and_after_a_kill9() {
    warm_stop_and_kill9("opencode", &[]).await;
}

/// Without the sandbox nothing kills the warm bridge with the server: it ends when its stdin
/// closes, and recovery kills whatever carries its mark.
#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_warm_standby_without_the_sandbox_ends_after_a_kill9() {
    warm_stop_and_kill9("opencode", &["--sandbox", "none"]).await;
}

/// A stop while a long-lived OpenCode turn runs a shell tool: the bridge aborts the turn through
/// OpenCode's API, nothing of the run survives, and a resume continues the same session in a new
/// bridge (`--session`).
#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_long_lived_stop_during_a_shell_tool_and_resume_continue_the_session() {
    let (lab, id) = stop_during_a_shell_tool_on("opencode", "long-lived", "3000").await;
    // The bridge ended the stopped turn through OpenCode (its abort), within the stop grace.
    let logs = lab.world.logs(id).await;
    assert!(
        logs.iter().any(|e| e["event"]["type"] == "turn_end"
            && e["event"]["error"]
                .as_str()
                .is_some_and(|m| m.contains("Abort"))),
        "{logs:#?}"
    );
    // The resumed turn's request carried the stopped turn's shell call: the same conversation.
    let resumed = lab
        .sim
        .requests()
        .into_iter()
        .find(|r| r.body.to_string().contains("You were stopped by a user"))
        .unwrap();
    assert!(
        resumed.body.to_string().contains("sleep 600"),
        "{}",
        resumed.body
    );
}
