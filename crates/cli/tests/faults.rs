//! Faulty agents, bad input and signal security, end to end through the real server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use support::*;

/// A project named `name` on its own repository whose planner plays `plan`.
async fn project_with_plan(world: &World, name: &str, plan: Value) -> String {
    let scenarios = world.dir.path().join(format!("{name}-scenarios"));
    write_scenarios(&scenarios, &[("plan", plan)]);
    let dir = world.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let repo = testkit::sample_repo(&dir).unwrap();
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": repo.path, "name": name, "settings": {"roles": world.roles(&scenarios)}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    name.to_string()
}

fn block_detail(detail: &Value) -> String {
    assert_eq!(detail["task"]["state"]["state"], "blocked", "{detail:#}");
    assert_eq!(
        detail["task"]["state"]["reason"]["code"], "run_failed",
        "{detail:#}"
    );
    detail["task"]["state"]["reason"]["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn crashing_hanging_and_garbage_agents_fail_clearly_while_others_go_on() {
    let world = World::start(&[("plan", plan_scenario())], &["--stall-secs", "1"]).await;
    let crash = project_with_plan(
        &world,
        "crash",
        json!({"runs": [[{"do": "message", "text": "about to crash"}, {"do": "crash", "code": 3, "stderr": "segfault in the agent"}]]}),
    )
    .await;
    let hang = project_with_plan(
        &world,
        "hang",
        json!({"runs": [{"turns": [
            [{"do": "message", "text": "thinking hard"}, {"do": "hang"}],
            [{"do": "echo_input"}, {"do": "hang"}]
        ]}]}),
    )
    .await;
    let garbage = project_with_plan(
        &world,
        "garbage",
        json!({"runs": [[{"do": "garbage", "lines": 3}, {"do": "crash", "code": 0}]]}),
    )
    .await;
    let crash_task = world.new_task_in(&crash, "Crashes", true, 0).await;
    let hang_task = world.new_task_in(&hang, "Hangs", true, 0).await;
    let garbage_task = world.new_task_in(&garbage, "Garbage", true, 0).await;
    let healthy = world.new_task("Healthy", true).await;

    let reason = block_detail(&world.wait_state(crash_task, "blocked").await);
    assert!(
        reason.starts_with("the agent crashed (exit code 3) before ending its turn"),
        "{reason}"
    );
    assert!(reason.contains("segfault in the agent"), "{reason}");

    let detail = world.wait_state(hang_task, "blocked").await;
    let reason = block_detail(&detail);
    assert!(
        reason.starts_with("stalled: the agent emitted nothing for 1.0 s"),
        "{reason}"
    );
    // The first stall was interrupted and resumed once (same session); the second one failed.
    assert_eq!(
        run_summary(&detail),
        pairs(&[("plan", "failed"), ("plan", "failed")])
    );
    assert_eq!(detail["runs"][1]["session"], detail["runs"][0]["session"]);
    assert!(
        reason.ends_with("it had stalled before, so it was not resumed again"),
        "{reason}"
    );
    // The continued session was told about the stall (not about a server restart).
    let logs = world.logs(hang_task).await;
    let second_run = &detail["runs"][1]["id"];
    assert!(
        logs.iter().any(|e| &e["run"] == second_run
            && e["event"]["text"].as_str().is_some_and(
                |t| t.contains("You produced no output for a long time and were interrupted")
            )),
        "the stall message reached the agent: {logs:#?}"
    );
    let mark = world.run_mark(hang_task).await;
    assert_eq!(processes_of_run(&mark), Vec::<u32>::new());

    let reason = block_detail(&world.wait_state(garbage_task, "blocked").await);
    assert_eq!(
        reason,
        "the agent exited without ending its turn; 3 output line(s) were unreadable (see the transcript)"
    );
    let logs = world.logs(garbage_task).await;
    let unreadable = logs
        .iter()
        .filter(|e| {
            e["event"]["type"] == "error"
                && e["event"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("unreadable agent output")
        })
        .count();
    assert_eq!(unreadable, 3);

    // The server kept serving the healthy task.
    world.wait_state(healthy, "plan_gate").await;
    // A failed run can be resumed: it runs (and fails) again.
    let (status, body) = world.action(crash_task, "resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let detail = world.wait_state(crash_task, "blocked").await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[("plan", "failed"), ("plan", "failed")])
    );
}

#[tokio::test]
async fn a_stage_timeout_fails_the_run() {
    let slow = json!({"runs": [[{"do": "burst", "count": 100000, "per_second": 20}]]});
    let world = World::start(&[("plan", slow)], &["--stage-timeout-secs", "1"]).await;
    let id = world.new_task("Too slow", true).await;
    let reason = block_detail(&world.wait_state(id, "blocked").await);
    assert_eq!(reason, "timed out: the plan stage ran longer than 1 s");
}

#[tokio::test]
async fn a_flooding_agent_still_meets_its_stage_timeout() {
    // Messages as fast as the agent can write them, far longer than the timeout: the
    // supervisor's timers come before the agent's output, so a flood cannot hold them off.
    let flood = json!({"runs": [[{"do": "burst", "count": 1_000_000_000u64}]]});
    let world = World::start(&[("plan", flood)], &["--stage-timeout-secs", "1"]).await;
    let id = world.new_task("Floods", true).await;
    let reason = block_detail(&world.wait_state(id, "blocked").await);
    assert_eq!(reason, "timed out: the plan stage ran longer than 1 s");
}

#[tokio::test]
async fn unsafe_titles_make_safe_names_and_run_nothing() {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    let titles = [
        ("$(touch pwned) `touch pwned2`", "touch-pwned-touch-pwned2"),
        ("\"quotes\" and 'single'", "quotes-and-single"),
        ("../../etc/passwd", "etc-passwd"),
        ("a/b\\c; rm -rf ~", "a-b-c-rm-rf"),
        ("Ünïcødé ☕ title", "n-c-d-title"),
    ];
    let worktrees = world.dir.path().join("app-worktrees");
    for (title, slug) in titles {
        let id = world.new_task(title, true).await;
        let detail = world.detail(id).await;
        assert_eq!(detail["task"]["title"], title);
        assert_eq!(detail["task"]["branch"], format!("atelier/{id}-{slug}"));
        let worktree = world.worktree(&detail);
        assert_eq!(worktree, worktrees.join(format!("{id}-{slug}")));
        assert!(worktree.is_dir());
        world.wait_state(id, "plan_gate").await;
    }
    let found = std::process::Command::new("find")
        .args([world.dir.path().to_str().unwrap(), "-name", "pwned*"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&found.stdout),
        "",
        "no title was ever run by a shell"
    );
    assert!(!std::path::Path::new("/etc/passwd-worktrees").exists());
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_leaves_nothing_behind() {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    let not_git = world.dir.path().join("plain");
    std::fs::create_dir_all(&not_git).unwrap();
    let (status, body) = world
        .server
        .post("/api/projects", &json!({"path": not_git, "name": "plain"}))
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is not a git work tree"),
        "{body}"
    );
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": world.dir.path().join("missing"), "name": "missing"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("missing"),
        "{body}"
    );
    let projects = world.server.get("/api/projects").await.unwrap();
    assert_eq!(
        projects.as_array().unwrap().len(),
        1,
        "only the valid project exists: {projects}"
    );

    let (status, body) = world
        .server
        .post(
            "/api/tasks",
            &json!({"project": "nope", "title": "T", "body": "b"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no project `nope`"),
        "{body}"
    );
    let (status, body) = world
        .server
        .post(
            "/api/tasks",
            &json!({"project": "app", "title": "  ", "body": "b"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let (status, body) = world
        .server
        .post(
            "/api/tasks",
            &json!({"project": "app", "title": "T", "body": ""}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let tasks = world.server.get("/api/tasks").await.unwrap();
    assert_eq!(tasks, json!([]), "no task was half-created");
    assert!(
        !world.dir.path().join("app-worktrees").exists()
            || std::fs::read_dir(world.dir.path().join("app-worktrees"))
                .unwrap()
                .next()
                .is_none()
    );

    // A failing setup hook rolls the task back: no task, no worktree, no branch.
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": world.add_repo("hooked"), "name": "hooked", "settings": {"roles": world.roles(&world.scenarios), "setup_hook": "echo preparing; exit 7"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = world
        .server
        .post(
            "/api/tasks",
            &json!({"project": "hooked", "title": "Hook fails", "body": "b"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("preparing"),
        "the hook's output is shown: {error}"
    );
    assert_eq!(world.server.get("/api/tasks").await.unwrap(), json!([]));
    let hooked = world.dir.path().join("hooked");
    assert!(
        !testkit::git(&hooked.join("app"), &["branch", "--list", "atelier/*"])
            .unwrap()
            .contains("atelier/")
    );

    // A role may not replace what Atelier sets for every agent.
    let mut roles = world.roles(&world.scenarios);
    roles["plan"]["env"] = json!({"ATELIER_RUN_MARK": "escape"});
    let (status, body) = world
        .server
        .post("/api/projects", &json!({"path": world.add_repo("reserved"), "name": "reserved", "settings": {"roles": roles}}))
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("`ATELIER_RUN_MARK` is set by Atelier"),
        "{body}"
    );

    // Unknown routes' ids and bad JSON.
    let (status, _) = world.action(999, "approve", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn signals_need_the_live_runs_own_token_and_agents_get_no_server_secret() {
    let plan = json!({"runs": [[
        {"do": "run", "command": "env > agent-env.txt; printf %s \"$ATELIER_RUN_TOKEN\" > run-token.txt"},
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Something\n"},
        {"do": "signal", "args": ["verdict", "ready"]},
        {"do": "signal", "args": ["plan-ready"]}
    ]]});
    let world = World::start_with_env(
        &[("plan", plan)],
        &[],
        &[("ATELIER_SECRET_CANARY", "canary-8c1f")],
    )
    .await;
    let a = world.new_task("Task A", true).await;
    let b = world.new_task("Task B", true).await;
    let detail_a = world.wait_state(a, "plan_gate").await;
    world.wait_state(b, "plan_gate").await;
    let worktree = world.worktree(&detail_a);

    // The agent's environment: Atelier's context, nothing of the server's.
    let env = std::fs::read_to_string(worktree.join("agent-env.txt")).unwrap();
    assert!(
        !env.contains("canary-8c1f"),
        "a server secret leaked: {env}"
    );
    assert!(!env.contains(world.server.token()), "the API token leaked");
    for var in [
        "ATELIER_URL=",
        "ATELIER_RUN_TOKEN=",
        "ATELIER_TASK_ID=",
        "ATELIER_TASK_DOC=",
        "ATELIER_PORT=",
    ] {
        assert!(env.contains(var), "{var} missing from {env}");
    }
    // The planner's wrong-stage signal was refused and changed nothing; plan-ready went through.
    let logs = world.logs(a).await;
    assert!(
        logs.iter()
            .any(|e| e["event"].to_string().contains("does not take this signal")),
        "{logs:#?}"
    );

    let token = std::fs::read_to_string(worktree.join("run-token.txt")).unwrap();
    let signal = |task: i64, token: &str| {
        let client = world.server.client().with_token(token);
        async move {
            client
                .post(
                    "/api/signal",
                    &json!({"task": task, "signal": {"kind": "plan-ready"}}),
                )
                .await
                .unwrap()
        }
    };
    // The run has ended: its token is refused.
    let (status, body) = signal(a, &token).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("has ended"),
        "{body}"
    );
    // For another task.
    let (status, body) = signal(b, &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("another task"),
        "{body}"
    );
    // A wrong token, and the API token used as a run token.
    let (status, _) = signal(a, "atr_wrong").await;
    assert_eq!(status, 401);
    let (status, _) = signal(a, world.server.token()).await;
    assert_eq!(status, 401);
    // The run token does not open the API.
    let (status, _) = world
        .server
        .client()
        .with_token(&token)
        .request(reqwest::Method::GET, "/api/tasks", None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    // Nothing changed.
    let detail = world.detail(a).await;
    assert_eq!(detail["task"]["state"]["state"], "plan_gate");
    assert_eq!(run_summary(&detail), pairs(&[("plan", "completed")]));
}

/// An agent killed in the middle of `git commit` leaves `index.lock` in its worktree's git
/// folder, and every later git command there fails on it. The next run in that worktree finds
/// no process working in the worktree, removes the stale lock and commits: the task reaches its
/// pull request instead of blocking on "no commits ahead".
#[tokio::test]
async fn a_stale_index_lock_is_removed_before_the_next_run() {
    let (world, id, worktree, lock) = at_the_plan_gate(
        "Stale lock",
        "git add -A && git commit -qm 'Greeting and farewell'",
    )
    .await;
    std::fs::write(&lock, "").unwrap();

    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    the_next_run_removed_the_lock_and_committed(&world, id, &worktree, &lock).await;
}

/// The same with a real `git commit` killed by SIGKILL while it holds the lock: git holds
/// `index.lock` until the commit message's editor returns, and this editor never does; the test
/// kills that git, the task is stopped and resumed, and the next run removes the lock and commits.
#[tokio::test]
async fn a_git_commit_killed_while_holding_the_index_lock_does_not_block_the_next_run() {
    let release = release_file("killed-commit-never");
    // The first run's commit is killed (the test kills it) and the run then waits until it
    // is stopped; a later run, whichever script it plays, commits normally. `commit -a` holds
    // `index.lock` until the commit is written (a plain commit releases it before the editor).
    // git appends the message file to the editor's command line: `tail -f` on it blocks (its
    // output closed, so nothing holds the step's pipes once git is gone).
    let killed_once = "\"$HOME/killed-once\"";
    let commit = format!(
        "if [ -e {killed_once} ]; then git add -A && git commit -qm 'Greeting and farewell'; \
         else touch {killed_once}; git add -A && GIT_EDITOR='exec >/dev/null 2>&1 </dev/null; exec tail -f' git commit -a -q; \
         while [ ! -e '{}' ]; do sleep 0.02; done; fi",
        release.display()
    );
    let (world, id, worktree, lock) = at_the_plan_gate("Killed commit", &commit).await;
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");

    // The editor's parent is the `git commit` holding the lock: kill it as `kill -9` would.
    let message_file = format!(
        "{}/COMMIT_EDITMSG",
        worktree.file_name().unwrap().to_str().unwrap()
    );
    let git = testkit::wait_until("git commit to wait for its editor", DEADLINE, || {
        let message_file = message_file.clone();
        let lock = lock.clone();
        async move {
            let editor = processes().into_iter().find(|(_, cmdline)| {
                cmdline.len() == 3
                    && cmdline[..2] == ["tail", "-f"]
                    && cmdline[2].ends_with(&message_file)
            })?;
            let git = parent_of(editor.0)?;
            let cmdline = cmdline_of(git)?;
            (cmdline.first().is_some_and(|p| p == "git")
                && cmdline.iter().any(|a| a == "commit")
                && lock.exists())
            .then_some(git)
        }
    })
    .await;
    let git = match git {
        Ok(git) => git,
        Err(err) => panic!(
            "{err}\ntranscript: {:#}\nprocesses: {:?}",
            json!(world.logs(id).await),
            processes()
                .into_iter()
                .filter(|(_, c)| c.first().is_some_and(|p| p == "git" || p == "tail"))
                .collect::<Vec<_>>()
        ),
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &git.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Gone, or a zombie (no command line) until its shell reaps it.
    testkit::wait_until("the killed git to be gone", DEADLINE, || async move {
        cmdline_of(git).is_none_or(|c| c.is_empty()).then_some(())
    })
    .await
    .unwrap();
    assert!(lock.exists(), "the killed commit left its lock behind");

    let (status, body) = world.action(id, "stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_state(id, "stopped").await;
    world.wait_run(id, "implement", "stopped").await;
    let (status, body) = world.action(id, "resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    the_next_run_removed_the_lock_and_committed(&world, id, &worktree, &lock).await;
}

/// A task titled `title` at its plan gate, whose implementer writes and checks off the plan's
/// two files and commits them with `commit`; with its worktree and that worktree's `index.lock`.
async fn at_the_plan_gate(
    title: &str,
    commit: &str,
) -> (World, i64, std::path::PathBuf, std::path::PathBuf) {
    let implement = json!({"runs": [[
        {"do": "write", "path": "greeting.txt", "content": "hello\n"},
        {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
        {"do": "check", "item": "Add greeting.txt"},
        {"do": "check", "item": "Add farewell.txt"},
        {"do": "run", "command": commit}
    ]]});
    let review = json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]});
    let world = World::start(
        &[
            ("plan", plan_scenario()),
            ("implement", implement),
            ("review", review),
            ("pr", pr_scenario()),
        ],
        &[],
    )
    .await;
    let id = world.new_task(title, true).await;
    let detail = world.wait_state(id, "plan_gate").await;
    let worktree = world.worktree(&detail);
    let lock = index_lock_of(&world, &worktree);
    (world, id, worktree, lock)
}

/// The worktree's `index.lock`, in the repository's `.git/worktrees/<name>` folder.
fn index_lock_of(world: &World, worktree: &std::path::Path) -> std::path::PathBuf {
    let lock = testkit::git(
        worktree,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "index.lock",
        ],
    )
    .unwrap();
    let lock = std::path::PathBuf::from(lock.trim());
    assert_eq!(
        lock,
        world
            .repo
            .path
            .join(".git/worktrees")
            .join(worktree.file_name().unwrap())
            .join("index.lock")
    );
    lock
}

/// Waits for the task to reach its pull request (or block): it must have, with the lock gone,
/// the implementer's commit on the branch and the removal logged.
async fn the_next_run_removed_the_lock_and_committed(
    world: &World,
    id: i64,
    worktree: &std::path::Path,
    lock: &std::path::Path,
) {
    let server = &world.server;
    let state = testkit::wait_until(
        "the task to reach its pull request or block",
        DEADLINE,
        || async move {
            let detail = server.get(&format!("/api/tasks/{id}")).await.ok()?;
            let state = detail["task"]["state"]["state"].as_str()?.to_string();
            ["awaiting_merge", "blocked"]
                .contains(&state.as_str())
                .then_some(detail["task"]["state"].clone())
        },
    )
    .await;
    let state = match state {
        Ok(state) => state,
        Err(err) => panic!(
            "{err}\ndetail: {:#}\nserver logs:\n{}",
            world.detail(id).await,
            server.logs()
        ),
    };
    assert_eq!(
        state,
        json!({"state": "awaiting_merge"}),
        "{}",
        server.logs()
    );
    assert!(!lock.exists(), "the stale lock is gone");
    let subject = testkit::git(worktree, &["log", "-1", "--format=%s"]).unwrap();
    assert_eq!(subject.trim(), "Greeting and farewell");
    let logs = server.logs();
    assert!(
        logs.contains("removed a stale index.lock whose writer is gone"),
        "the removal is logged:\n{logs}"
    );
}

/// Every process's pid and command line (arguments split).
fn processes() -> Vec<(u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, cmdline_of(pid)?)))
        .collect()
}

fn cmdline_of(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// A bidirectional override character (U+202E) would make a title display in another order
/// than it is stored: the title is refused with a message naming the character.
#[tokio::test]
async fn a_title_with_a_bidi_override_is_refused() {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    let (status, body) = world
        .server
        .post(
            "/api/tasks",
            &json!({"project": "app", "title": "Fix invoice\u{202E}fdp.exe", "body": "b"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "the task title contains the bidirectional control character U+202E, which reorders how \
         text is displayed: remove it"
    );
    assert_eq!(world.server.get("/api/tasks").await.unwrap(), json!([]));
    assert_eq!(
        std::fs::read_dir(world.dir.path().join("app-worktrees"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "nothing was made"
    );
}

#[tokio::test]
async fn role_credentials_are_sealed_at_rest_and_reach_only_their_run() {
    let secret = "sk-canary-4411-sealed";
    let plan = json!({"runs": [[
        {"do": "run", "command": "printf %s \"$ROLE_SECRET\" > role-secret.txt"},
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Something\n"},
        {"do": "signal", "args": ["plan-ready"]}
    ]]});
    let world = World::start(&[("plan", plan)], &[]).await;
    let mut roles = world.roles(&world.scenarios);
    roles["plan"]["env"] = json!({"ROLE_SECRET": secret});
    let project = world
        .add_project_from_scratch("sealed", json!({"roles": roles}))
        .await;
    let id = world.new_task_in(&project, "Use the secret", true, 0).await;
    let detail = world.wait_state(id, "plan_gate").await;

    // The run that needs it got the value in clear.
    let got = std::fs::read_to_string(world.worktree(&detail).join("role-secret.txt")).unwrap();
    assert_eq!(got, secret);
    // Nothing the server stores or shows holds it in clear.
    for file in ["atelier.db", "atelier.db-wal"] {
        let bytes = std::fs::read(world.data.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{file} holds the credential in clear"
        );
    }
    let projects = world.server.get("/api/projects").await.unwrap();
    assert!(!projects.to_string().contains(secret), "{projects}");
    let key = std::fs::metadata(world.data.join("secret.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
}

/// Runs `atelier doctor` against the world's server.
fn doctor(world: &World) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["doctor", "--url", world.server.url(), "--token"])
        .arg(world.server.token())
        .env_remove("ATELIER_DATA_DIR")
        .output()
        .unwrap()
}

#[tokio::test]
async fn doctor_shows_whether_agents_are_confined() {
    let world = World::start(&[], &[]).await;
    let out = doctor(&world);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("sandbox: bubblewrap: every agent runs in its own sandbox"),
        "{text}"
    );
    // The checks, one a line: no role needs a real CLI (the project's agents are scripted), so
    // a missing Claude Code (the default role's) is a warning and a missing Codex is fine.
    let lines: Vec<&str> = text.lines().collect();
    let data = world.data.display().to_string();
    for (prefix, needle) in [
        (
            "WARN claude-code CLI: ",
            "npm install -g @anthropic-ai/claude-code@2.1.330",
        ),
        ("ok   codex CLI: ", "no role uses it"),
        (
            "ok   opencode CLI: ",
            "`npm install -g opencode-ai@1.18.33`",
        ),
        ("ok   sandbox: ", "bubblewrap ready"),
        ("ok   data directory: ", &format!("{data} (mode 700)")),
        ("ok   git: ", "git version"),
        ("ok   forge of app: ", "remote `origin` answers"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(prefix) && l.contains(needle)),
            "`{prefix}…{needle}…` in:\n{text}"
        );
    }

    let world = World::start(&[], &["--bwrap", "/nonexistent/bwrap"]).await;
    let out = doctor(&world);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("NOT READY"), "{text}");
    assert!(text.contains("apt-get install bubblewrap"), "{text}");

    let world = World::start(&[], &["--sandbox", "none"]).await;
    let out = doctor(&world);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OFF (--sandbox=none)"), "{text}");
}

#[tokio::test]
async fn doctor_names_the_version_of_each_cli_a_role_needs_and_fails_on_a_missing_one() {
    let tools = tempfile::tempdir().unwrap();
    let codex = fake_agent_cli(tools.path(), "codex", "codex-cli 0.169.0");
    let world = World::start(&[], &["--codex-bin", codex.to_str().unwrap()]).await;
    let role = json!({"harness": "codex", "model": "gpt-5.5"});
    world
        .add_project_from_scratch(
            "coded",
            json!({"roles": {"plan": role, "implement": role, "review": role, "pr": role}}),
        )
        .await;
    let out = doctor(&world);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = format!("ok   codex CLI: codex-cli 0.169.0 (`{}`)", codex.display());
    assert!(text.lines().any(|l| l == line), "`{line}` in:\n{text}");

    // The CLI disappears: the project's roles need it, so doctor fails and says what to do.
    std::fs::remove_file(&codex).unwrap();
    let out = doctor(&world);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = format!(
        "FAIL codex CLI: the Codex CLI (`{}`, harness `codex`) cannot start: No such file or \
         directory (os error 2). Install it with `npm install -g @openai/codex@0.169.0` and give \
         its path to the server with `atelier serve --codex-bin PATH` (or ATELIER_CODEX_BIN=PATH)",
        codex.display()
    );
    assert!(text.lines().any(|l| l == line), "`{line}` in:\n{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed checks: codex CLI"), "{err}");
}
