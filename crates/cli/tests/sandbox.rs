//! The agent sandbox end to end (issue 6): a planner on every harness — the scripted agent and
//! the real Claude Code, Codex and OpenCode CLIs against the model simulator — tries to read the
//! server's secrets and other tasks' work, to write outside its worktree, to call the API and to
//! leave a detached process behind to approve later, and fails at each; `--sandbox none` runs
//! agents unconfined and says so; a missing bubblewrap starts no agent and says how to fix it;
//! the data directory is made private.
//!
//! The real-CLI tests fail when `CI` is set and a CLI is missing, and are skipped with a message
//! otherwise (as in `harnesses.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use simulator::Simulator;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;
use testkit::wait_until;

/// Longest wait for a real CLI's whole plan run (a debug build on two shared cores).
const CLI_DEADLINE: Duration = Duration::from_secs(180);

/// The role of one stage on a real CLI, pointed at the simulator at `url`. OpenCode's own guard
/// refuses commands naming paths outside the worktree; it is turned off (as an operator may), so
/// that what stops the agent is the sandbox.
fn cli_role(harness: &str, url: &str) -> Value {
    let mut role = simulated_role(harness, url);
    if harness == "opencode" {
        role["env"]["OPENCODE_PERMISSION"] = json!("{\"external_directory\":\"allow\"}");
    }
    role
}

/// Marker words split by an empty shell string, so the command text itself (which the
/// transcript shows as the tool call) never contains the words its output is searched for.
fn say(word: &str) -> String {
    let (head, tail) = word.split_at(word.len() / 2);
    format!("{head}''{tail}")
}

/// A `run` step that tries `attempt` and prints `LEAKED:<what>` when it succeeded,
/// `DENIED:<what>` when it failed, then the first 200 characters of what it printed.
fn probe(what: &str, attempt: &str) -> Value {
    json!({"do": "run", "command": format!(
        "if out=$( {attempt} 2>&1 ); then echo {leaked}:{what}; else echo {denied}:{what}; fi; printf '%.200s\\n' \"$out\"",
        leaked = say("LEAKED"),
        denied = say("DENIED"),
    )})
}

/// What the attacking planner knows about the machine (paths an agent could guess or learn).
struct Targets {
    data: PathBuf,
    homes: PathBuf,
    victim_id: i64,
    victim_key: String,
    victim_doc: PathBuf,
    victim_worktree: PathBuf,
    victim_repo: PathBuf,
    own_repo: PathBuf,
    /// Another worktree of the attacker's repository (another task's, for git: its entry in
    /// `.git/worktrees/` sits beside the attacker's own).
    neighbour: String,
    /// The server's real `HOME` (holding `.gitconfig`, which agents see, and a secret).
    server_home: PathBuf,
    /// Files that a command planted in git's files would create if the server's git ran it.
    markers: Vec<PathBuf>,
    /// Unique part of the escapee's process name.
    uniq: String,
}

impl Targets {
    fn escapee(&self) -> String {
        format!("atelier-escapee-{}", self.uniq)
    }

    /// Files the writes try to create (or change) outside the worktree.
    fn outside_writes(&self) -> Vec<PathBuf> {
        vec![
            self.own_repo.join("escape-main.txt"),
            self.homes.join("escape-homes.txt"),
            self.data.join("escape-data.txt"),
            self.data.join("tasks/escape-tasks.txt"),
            self.victim_worktree.join("escape-victim.txt"),
            self.victim_repo.join("escape-victim-repo.txt"),
        ]
    }

    /// The read probes, by name.
    fn reads(&self) -> Vec<(String, String)> {
        let d = self.data.display();
        let h = self.homes.display();
        let k = &self.victim_key;
        vec![
            ("api-token".into(), format!("cat {d}/api-token")),
            ("server-json".into(), format!("cat {d}/server.json")),
            ("database".into(), format!("cat {d}/atelier.db")),
            ("database-wal".into(), format!("cat {d}/atelier.db-wal")),
            (
                // The own doc folder's parents exist (empty) inside: anything else is a leak.
                "data-dir-listing".into(),
                format!("test -n \"$(ls -A {d} | grep -vx tasks)\""),
            ),
            (
                "other-task-doc".into(),
                format!("cat {}", self.victim_doc.display()),
            ),
            (
                "sibling-doc-folders".into(),
                format!("test -n \"$(ls -A {d}/tasks | grep -vx \"$(basename \"$HOME\")\")\""),
            ),
            (
                "other-task-worktree".into(),
                format!("cat {}/victim-secret.txt", self.victim_worktree.display()),
            ),
            (
                "other-repo".into(),
                format!("cat {}/README.md", self.victim_repo.display()),
            ),
            ("other-home".into(), format!("ls -A {h}/{k}")),
            (
                "homes-listing".into(),
                format!("test -n \"$(ls -A {h} | grep -vx \"$(basename \"$HOME\")\")\""),
            ),
            (
                // The server's own git runs the repository's hooks and honours its config
                // outside the sandbox: neither may be changed from inside.
                "git-hook".into(),
                format!(
                    "echo 'touch /tmp/pwned' > {}/.git/hooks/post-checkout",
                    self.own_repo.display()
                ),
            ),
            (
                "git-config".into(),
                format!(
                    "git config --file {}/.git/config core.fsmonitor 'touch /tmp/pwned'",
                    self.own_repo.display()
                ),
            ),
            (
                // The server's git runs in this worktree (the diff it shows, the hand-off's
                // status): a `.git` pointer to a git folder whose config names an fsmonitor
                // would make it run that as the server.
                "git-pointer".into(),
                format!(
                    "cd \"$ATELIER_WORKTREE\" && git init -q .evil && git -C .evil config core.fsmonitor \"touch {}\" && printf 'gitdir: %s/.evil/.git\\n' \"$PWD\" > .git",
                    self.markers[0].display()
                ),
            ),
            (
                // The same through the worktree entry's `commondir`.
                "git-commondir".into(),
                format!(
                    "cd \"$ATELIER_WORKTREE\" && git init -q --bare .evil-common && git -C .evil-common config core.fsmonitor \"touch {}\" && echo \"$PWD/.evil-common\" > \"$(git rev-parse --git-dir)/commondir\"",
                    self.markers[1].display()
                ),
            ),
            (
                // Lists the server's git reads line by line and quotes in its errors: linked to
                // a file, they would print it whole.
                "git-alternates".into(),
                format!(
                    "ln -sfn {}/api-token {}/.git/objects/info/alternates",
                    self.data.display(),
                    self.own_repo.display()
                ),
            ),
            (
                "git-grafts".into(),
                format!(
                    "ln -sfn {}/api-token {}/.git/info/grafts",
                    self.data.display(),
                    self.own_repo.display()
                ),
            ),
            (
                // Another task's entry: its `gitdir` tells git (and the server) where it is.
                "other-worktree-entry".into(),
                format!(
                    "echo /tmp > {}/.git/worktrees/{}/gitdir",
                    self.own_repo.display(),
                    self.neighbour
                ),
            ),
            (
                "server-home".into(),
                format!("cat {}/secret.txt", self.server_home.display()),
            ),
            (
                // Only the operator's git identity is shown of the server's home.
                "server-home-listing".into(),
                format!(
                    "test -n \"$(ls -A {} | grep -vx .gitconfig)\"",
                    self.server_home.display()
                ),
            ),
            (
                // Root's capabilities inside would open every way out (mount, open_by_handle_at).
                "capabilities".into(),
                "! grep -q '^CapEff:[[:space:]]*0*$' /proc/self/status".into(),
            ),
        ]
    }

    /// The API probes, by name: with the run token (only signals take it), and without any.
    fn api_calls(&self) -> Vec<(String, String)> {
        let v = self.victim_id;
        vec![
            (
                "approve-other-task-with-run-token".into(),
                format!("atelier task approve {v} --token \"$ATELIER_RUN_TOKEN\""),
            ),
            (
                "approve-own-task-with-run-token".into(),
                "atelier task approve \"$ATELIER_TASK_ID\" --token \"$ATELIER_RUN_TOKEN\"".into(),
            ),
            (
                "list-tasks-with-run-token".into(),
                "atelier task list --token \"$ATELIER_RUN_TOKEN\"".into(),
            ),
            (
                "approve-other-task-without-token".into(),
                format!("atelier task approve {v}"),
            ),
        ]
    }

    fn probe_names(&self) -> Vec<String> {
        self.reads()
            .into_iter()
            .chain(self.api_calls())
            .map(|(name, _)| name)
            .collect()
    }

    /// The attacking plan: every probe, the writes, a detached escapee that would approve the
    /// plan once the run is over, then `plan-ready`.
    fn scenario(&self) -> Value {
        let mut steps: Vec<Value> = self
            .reads()
            .into_iter()
            .chain(self.api_calls())
            .map(|(name, attempt)| probe(&name, &attempt))
            .collect();
        let writes: Vec<String> = self
            .outside_writes()
            .iter()
            .map(|p| format!("echo escaped > {} 2>/dev/null;", p.display()))
            .chain([
                "echo escaped > \"$HOME/../escape-home-parent.txt\" 2>/dev/null;".to_string(),
                format!("echo escaped >> {} 2>/dev/null;", self.victim_doc.display()),
                "echo attempted".to_string(),
            ])
            .collect();
        steps.push(json!({"do": "run", "command": writes.join(" ")}));
        // The escapee's name is put together by the shell, so no command line but the escapee's
        // own carries it; it sleeps, then notes that it woke (in the worktree, seen from
        // outside) and approves its task with the run token. It is looked for with the shell's
        // own pattern matching (`escape[e]` matches the name, not the looking shell's command
        // line): a CLI's shell may put its own `grep` in front of the system's.
        let (head, tail) = ("atelier-escapee", &self.uniq);
        steps.push(json!({"do": "run", "command": format!(
            "n={head}; env -i setsid bash -c \"(exec -a $n-{tail} sleep 120); echo woke > '$PWD/escapee-woke'; '$(command -v atelier)' task approve $ATELIER_TASK_ID --url $ATELIER_URL --token $ATELIER_RUN_TOKEN\" </dev/null >\"$PWD/escapee.log\" 2>&1 & \
             found() {{ for f in /proc/[0-9]*/cmdline; do case \"$(tr '\\0' ' ' 2>/dev/null <\"$f\")\" in *atelier-escape[e]-{tail}*) return 0;; esac; done; return 1; }}; \
             i=0; until found || [ $i -ge 200 ]; do i=$((i+1)); sleep 0.05; done; \
             if found; then echo {started}; else echo not found; cat escapee.log; fi",
            started = say("ESCAPEE-STARTED"),
        )}));
        // What an agent does with git in its worktree still works with the git folder shown
        // as it is: commit, branch and delete it, stash and pop, rebase.
        steps.push(json!({"do": "run", "command": format!(
            "cd \"$ATELIER_WORKTREE\" && echo one > work.txt && git add work.txt && git commit -qm one \
             && git checkout -q -b scratch && git checkout -q - && git branch -q -D scratch \
             && echo two >> work.txt && git stash -q && git stash pop -q && git commit -qam two \
             && git rebase -q HEAD~1 --exec true && echo {}",
            say("GIT-WORKFLOW-OK")
        )}));
        steps.extend([
            json!({"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Nothing\n"}),
            json!({"do": "signal", "args": ["plan-ready"]}),
            json!({"do": "message", "text": "Planned."}),
        ]);
        json!({"runs": [steps]})
    }
}

/// Pids whose command line contains `needle` (zombies have none).
fn processes_named(needle: &str) -> Vec<u32> {
    let own = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

/// One planner on `harness` attacks from inside its run; every attempt fails.
async fn attack_on(harness: &str) {
    let mut server_args: Vec<String> = Vec::new();
    if harness != "scripted" {
        let (flag, path) = agent_cli(harness);
        server_args.extend([flag.to_string(), path.display().to_string()]);
    }
    let args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    // The server's own home: the operator's git identity (shown to agents) and a secret.
    let server_home = tempfile::tempdir().unwrap();
    std::fs::write(
        server_home.path().join(".gitconfig"),
        "[user]\n\tname = Operator\n\temail = operator@atelier.invalid\n",
    )
    .unwrap();
    std::fs::write(
        server_home.path().join("secret.txt"),
        "server home secret\n",
    )
    .unwrap();
    let home = server_home.path().to_str().unwrap();
    // The victim: a scripted task of another project, waiting at its plan gate.
    let world = World::start_with_env(&[("plan", plan_scenario())], &args, &[("HOME", home)]).await;
    let victim = world.new_task("Victim", true).await;
    let victim_detail = world.wait_state(victim, "plan_gate").await;
    let victim_worktree = world.worktree(&victim_detail);
    std::fs::write(victim_worktree.join("victim-secret.txt"), "victim secret\n").unwrap();
    let victim_doc = PathBuf::from(victim_detail["task"]["doc_path"].as_str().unwrap());
    let victim_doc_before = std::fs::read_to_string(&victim_doc).unwrap();

    let own_repo = world.add_repo("attacker");
    let neighbour = "neighbour";
    testkit::git(
        &own_repo,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            "neighbour",
            world.dir.path().join(neighbour).to_str().unwrap(),
        ],
    )
    .unwrap();
    let neighbour_gitdir = own_repo.join(".git/worktrees/neighbour/gitdir");
    let neighbour_before = std::fs::read_to_string(&neighbour_gitdir).unwrap();
    let markers: Vec<PathBuf> = ["pointer", "commondir"]
        .iter()
        .map(|name| world.dir.path().join(format!("fsmonitor-ran-{name}")))
        .collect();
    let targets = Targets {
        data: world.data.clone(),
        homes: world.homes(),
        victim_id: victim,
        victim_key: victim_detail["task"]["key"].as_str().unwrap().to_string(),
        victim_doc: victim_doc.clone(),
        victim_worktree: victim_worktree.clone(),
        victim_repo: world.repo.path.clone(),
        own_repo: own_repo.clone(),
        neighbour: neighbour.to_string(),
        server_home: server_home.path().to_path_buf(),
        markers: markers.clone(),
        uniq: format!("{}-{harness}", std::process::id()),
    };
    let attack_dir = world.dir.path().join("attack-scenarios");
    write_scenarios(&attack_dir, &[("plan", targets.scenario())]);
    let mut sim = None;
    let roles = if harness == "scripted" {
        world.roles(&attack_dir)
    } else {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let simulator = Simulator::start(listener, attack_dir.clone()).await;
        let role = cli_role(harness, &simulator.url());
        sim = Some(simulator);
        json!({"plan": role, "implement": role, "review": role, "pr": role})
    };
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": own_repo, "name": "attacker", "settings": {"roles": roles}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let attacker = world.new_task_in("attacker", "Attack", true, 0).await;

    // The run ends with its plan-ready signal: the task waits at the plan gate.
    let server = &world.server;
    let waited = wait_until(
        &format!("task {attacker} at its plan gate"),
        CLI_DEADLINE,
        || async move {
            let detail = server.get(&format!("/api/tasks/{attacker}")).await.ok()?;
            (detail["task"]["state"]["state"] == "plan_gate").then_some(detail)
        },
    )
    .await;
    let detail = match waited {
        Ok(detail) => detail,
        Err(err) => {
            let events: Vec<String> = world
                .logs(attacker)
                .await
                .iter()
                .map(|e| e["event"].to_string())
                .collect();
            panic!(
                "{err}\nlast detail: {:#}\n{harness} transcript:\n{}\nserver logs:\n{}",
                world.detail(attacker).await,
                events.join("\n"),
                world.server.logs()
            )
        }
    };
    let worktree = world.worktree(&detail);
    let logs = world.logs(attacker).await;
    let text = serde_json::to_string(&logs).unwrap();
    let report = || {
        format!(
            "{harness} transcript:\n{}\nserver logs:\n{}",
            logs.iter()
                .map(|e| e["event"].to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            world.server.logs()
        )
    };

    // Every attempt ran and failed.
    let leaked: Vec<&str> = text
        .split("LEAKED:")
        .skip(1)
        .map(|rest| rest.split(['\\', '"']).next().unwrap_or(rest))
        .collect();
    assert!(leaked.is_empty(), "leaked: {leaked:?}\n{}", report());
    for name in targets.probe_names() {
        assert!(
            text.contains(&format!("DENIED:{name}")),
            "no DENIED:{name}\n{}",
            report()
        );
    }
    assert!(text.contains("ESCAPEE-STARTED"), "{}", report());
    assert!(text.contains("GIT-WORKFLOW-OK"), "{}", report());
    assert!(
        !text.contains(world.server.token()),
        "the API token reached the agent"
    );
    assert!(
        !text.contains("victim secret"),
        "the other task's file was read"
    );
    // The API refused the run token as an API credential (not merely unreachable).
    assert!(
        text.contains("401"),
        "no 401 in the transcript\n{}",
        report()
    );

    // Nothing was written outside the worktree.
    for path in targets.outside_writes() {
        assert!(!path.exists(), "{} was written", path.display());
    }
    let homes_parent = world.homes().join("escape-home-parent.txt");
    assert!(
        !homes_parent.exists(),
        "{} was written",
        homes_parent.display()
    );
    assert_eq!(
        std::fs::read_to_string(&victim_doc).unwrap(),
        victim_doc_before
    );
    assert_eq!(
        std::fs::read_to_string(&neighbour_gitdir).unwrap(),
        neighbour_before
    );
    assert!(
        !text.contains("server home secret"),
        "the server's home was read"
    );

    // The server's git runs in the attacked worktree (the diff a member looks at) and runs
    // nothing planted there: the page shows the worktree's own changes.
    people::create_user(&world, "watcher", true).await;
    people::add_member(&world, "attacker", "watcher", "member").await;
    let (cookie, _) = people::sign_in(&world, "watcher").await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = http
        .get(format!("{}/tasks/{attacker}/diff", world.server.url()))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("escapee.log"), "{page}");
    for marker in &markers {
        assert!(
            !marker.exists(),
            "{} was run by the server",
            marker.display()
        );
    }

    // The detached escapee ended with the run, before it woke: it never approves anything.
    let name = targets.escapee();
    wait_until(
        &format!("the escapee {name} to be gone"),
        Duration::from_secs(30),
        || {
            let name = name.clone();
            async move { processes_named(&name).is_empty().then_some(()) }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}: {:?}\n{}", processes_named(&name), report()));
    assert!(
        !worktree.join("escapee-woke").exists(),
        "the escapee outlived its run"
    );
    for (id, want) in [(attacker, "plan_gate"), (victim, "plan_gate")] {
        let detail = world.detail(id).await;
        assert_eq!(detail["task"]["state"]["state"], want, "task {id}");
        assert_eq!(
            run_summary(&detail),
            pairs(&[("plan", "completed")]),
            "task {id}"
        );
    }
    drop(sim);
}

#[tokio::test]
async fn a_scripted_agent_cannot_escape_its_sandbox() {
    attack_on("scripted").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn claude_code_cannot_escape_its_sandbox() {
    attack_on("claude-code").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn codex_cannot_escape_its_sandbox() {
    attack_on("codex").await;
}

#[tokio::test]
#[cfg_attr(
    agent_clis_missing,
    ignore = "needs the real agent CLIs: run scripts/test, which installs them and sets ATELIER_*_BIN"
)]
async fn opencode_cannot_escape_its_sandbox() {
    attack_on("opencode").await;
}

#[tokio::test]
async fn without_the_sandbox_agents_see_the_data_dir_and_the_server_warns() {
    let world = World::start(&[], &["--sandbox", "none"]).await;
    let plan = json!({"runs": [[
        {"do": "run", "command": format!(
            "test -e {}/atelier.db && echo {}", world.data.display(), say("SEES-THE-DATA-DIR")
        )},
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Something\n"},
        {"do": "signal", "args": ["plan-ready"]}
    ]]});
    write_scenarios(&world.scenarios, &[("plan", plan)]);
    let id = world.new_task("Unconfined", true).await;
    world.wait_state(id, "plan_gate").await;
    let text = serde_json::to_string(&world.logs(id).await).unwrap();
    assert!(text.contains("SEES-THE-DATA-DIR"), "{text}");
    let logs = world.server.logs();
    assert!(logs.contains("the agent sandbox is off"), "{logs}");
}

#[tokio::test]
async fn without_bubblewrap_no_agent_starts_and_the_reason_says_how_to_fix_it() {
    let plan = json!({"runs": [[
        {"do": "write", "path": "agent-started.txt", "content": "started\n"},
        {"do": "signal", "args": ["plan-ready"]}
    ]]});
    let world = World::start_with_env(
        &[("plan", plan)],
        &[],
        &[("ATELIER_BWRAP", "/nonexistent/bwrap")],
    )
    .await;
    let id = world.new_task("No bwrap", true).await;
    let detail = world.wait_state(id, "blocked").await;
    let reason = &detail["task"]["state"]["reason"];
    assert_eq!(reason["code"], "run_failed", "{detail:#}");
    let text = reason["detail"].as_str().unwrap();
    for needle in [
        "`/nonexistent/bwrap`",
        "apt-get install bubblewrap",
        "--sandbox=none",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    assert_eq!(run_summary(&detail), pairs(&[("plan", "failed")]));
    let run_reason = detail["runs"][0]["reason"].as_str().unwrap();
    assert!(
        run_reason.contains("apt-get install bubblewrap"),
        "{run_reason}"
    );
    assert!(
        !world.worktree(&detail).join("agent-started.txt").exists(),
        "an agent started"
    );
    // The transcript is only the task's end: not one event of an agent.
    assert_eq!(
        world.logs(id).await,
        vec![json!({"item": "end", "state": detail["task"]["state"]})]
    );
    let logs = world.server.logs();
    assert!(logs.contains("no agent can start"), "{logs}");
}

/// Every file and folder under `dir` that has a group or other permission bit, with its mode.
fn shared_entries(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                pending.push(entry.path());
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                found.push((entry.path(), mode));
            }
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_dir_and_agent_homes_are_private_to_the_server_user() {
    // A data directory an older version (or a careless operator) left readable by everyone.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = data.join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o775)).unwrap();
    for file in [data.join("notes.txt"), old.join("leftover.txt")] {
        std::fs::write(&file, "world-readable\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    assert_eq!(shared_entries(&data).len(), 3);

    let repo = testkit::sample_repo(dir.path()).unwrap();
    let scenarios = dir.path().join("scenarios");
    write_scenarios(&scenarios, &[("plan", plan_scenario())]);
    let server = testkit::ServerProcess::start(Path::new(BIN), &data, &[], &[])
        .await
        .unwrap();
    let mut world = World {
        dir,
        repo,
        scenarios,
        data: data.clone(),
        server,
        project: String::new(),
    };
    world.project = world
        .add_project(&world.repo.path.clone(), "app", json!({}))
        .await;

    assert_eq!(mode(&data), 0o700);
    assert_eq!(shared_entries(&data), Vec::<(PathBuf, u32)>::new());
    assert_eq!(mode(&old.join("leftover.txt")), 0o600);
    let logs = world.server.logs();
    assert!(
        logs.contains("the data directory was mode 755; tightened to 700"),
        "{logs}"
    );

    // After a task ran: its doc, the database and everything else new is private too.
    let id = world.new_task("Private", true).await;
    let detail = world.wait_state(id, "plan_gate").await;
    let key = detail["task"]["key"].as_str().unwrap();
    assert!(data.join("tasks").join(key).join("task.md").is_file());
    assert_eq!(mode(&data), 0o700);
    assert_eq!(shared_entries(&data), Vec::<(PathBuf, u32)>::new());
    assert_eq!(mode(&world.homes()), 0o700);
    assert_eq!(mode(&world.homes().join(key)), 0o700);
}

/// The project's setup hook runs in the task's sandbox too: it cannot read the server's
/// `api-token` nor write outside the worktree, and its log says so.
#[tokio::test]
async fn the_setup_hook_is_confined_too() {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    // In the data directory and the project's main work tree (neither exists inside), and
    // beside them (the test's folder, under `/tmp`: inside, that path leads into the
    // sandbox's private `/tmp`, so the write "succeeds" there and nothing changes outside).
    let outside = [
        world.data.join("hook-escape.txt"),
        world.repo.path.join("hook-escape.txt"),
        world.dir.path().join("hook-escape.txt"),
    ];
    let attempt = |what: &str, command: String| {
        format!(
            "if {command}; then echo {}:{what}; else echo {}:{what}; fi;",
            say("LEAKED"),
            say("DENIED")
        )
    };
    let mut hook = attempt(
        "hook-token",
        format!("cat {}/api-token", world.data.display()),
    );
    for (i, path) in outside.iter().take(2).enumerate() {
        hook.push_str(&attempt(
            &format!("hook-write-{i}"),
            format!("echo escaped > {}", path.display()),
        ));
    }
    hook.push_str(&format!(
        " echo escaped > {} 2>/dev/null;",
        outside[2].display()
    ));
    hook.push_str(" echo confined > hook-ran.txt; exit 0");
    let repo = world.add_repo("hooked");
    let settings = json!({"roles": world.roles(&world.scenarios), "setup_hook": hook});
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": repo, "name": "hooked", "settings": settings}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = world.new_task_in("hooked", "Hooked", true, 0).await;
    let detail = world.wait_state(id, "plan_gate").await;
    assert!(world.worktree(&detail).join("hook-ran.txt").is_file());
    let doc = PathBuf::from(detail["task"]["doc_path"].as_str().unwrap());
    let log = std::fs::read_to_string(doc.with_file_name("setup.log")).unwrap();
    assert!(!log.contains("LEAKED"), "{log}");
    for what in ["hook-token", "hook-write-0", "hook-write-1"] {
        assert!(log.contains(&format!("DENIED:{what}")), "{what}: {log}");
    }
    assert!(
        !log.contains(world.server.token()),
        "the hook read the api-token"
    );
    for path in &outside {
        assert!(!path.exists(), "{} was written", path.display());
    }
}

/// The server's own git runs confined too (`git::confine`). A planner links its repository's
/// `origin/main` reflog to the data directory's `api-token`; the server then fetches the moved
/// `main` for the next task's workspace, which, unconfined, appends a line to the token. That
/// task's planner links `packed-refs` to the token too; the next fetch, unconfined, quotes the
/// token in git's error, which lands in the new task's `setup.log` — a file its agent reads.
/// Confined, the token is untouched and quoted nowhere, and every task still starts.
#[tokio::test]
async fn the_servers_git_writes_and_quotes_nothing_through_links_a_planner_planted() {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    let repo = world.add_repo("planted");
    let token = world.data.join("api-token");
    let git_dir = repo.join(".git");
    let reflog = git_dir.join("logs/refs/remotes/origin/main");
    let packed_refs = git_dir.join("packed-refs");
    // The second planner finds this file (shown to agents read-only) and plants the second link.
    let second_link = release_file("plant-packed-refs");
    let plant = |link: &Path, only_if: Option<&Path>| {
        let command = format!(
            "mkdir -p {dir} && ln -sfn {token} {link} && echo {planted}",
            dir = link.parent().unwrap().display(),
            token = token.display(),
            link = link.display(),
            planted = say("PLANTED"),
        );
        let command = match only_if {
            Some(file) => format!("if [ -e {} ]; then {command}; fi", file.display()),
            None => command,
        };
        json!({"do": "run", "command": command})
    };
    let mut steps = vec![
        plant(&reflog, None),
        plant(&packed_refs, Some(&second_link)),
    ];
    steps.extend(
        plan_scenario()["runs"][0]
            .as_array()
            .unwrap()
            .iter()
            .cloned(),
    );
    let scenarios = world.dir.path().join("planting-scenarios");
    write_scenarios(&scenarios, &[("plan", json!({ "runs": [steps] }))]);
    // The release files shown read-only to agents (`gated_sandbox`), the planting roles.
    world
        .add_project(&repo, "planted", json!({"roles": world.roles(&scenarios)}))
        .await;
    let meta = std::fs::metadata(&token).unwrap();
    let before = (meta.ino(), std::fs::read(&token).unwrap());
    let untouched = |when: &str| {
        let meta = std::fs::metadata(&token).unwrap();
        assert_eq!(
            (meta.ino(), std::fs::read(&token).unwrap()),
            before,
            "{when}: the server's git wrote the api-token through a planted link"
        );
    };
    // `main` moves on the remote: the next task's workspace fetches it.
    let remote = world.dir.path().join("planted/remote.git");
    let advance = |n: u32| {
        let other = world.dir.path().join(format!("planted-other-{n}"));
        testkit::git(
            world.dir.path(),
            &[
                "clone",
                "--quiet",
                remote.to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        )
        .unwrap();
        testkit::set_identity(&other).unwrap();
        testkit::commit_file(&other, &format!("more-{n}.txt"), "more\n", "More").unwrap();
        testkit::git(&other, &["push", "--quiet", "origin", "main"]).unwrap();
    };

    let first = world
        .new_task_in("planted", "Plant a reflog link", true, 0)
        .await;
    world.wait_state(first, "plan_gate").await;
    assert!(std::fs::symlink_metadata(&reflog).unwrap().is_symlink());
    advance(1);
    std::fs::write(&second_link, "").unwrap();
    let second = world
        .new_task_in("planted", "Plant packed-refs", true, 0)
        .await;
    world.wait_state(second, "plan_gate").await;
    untouched("after the fetch through the reflog link");
    assert!(
        std::fs::symlink_metadata(&packed_refs)
            .unwrap()
            .is_symlink()
    );
    advance(2);
    let third = world
        .new_task_in("planted", "After the links", true, 0)
        .await;
    let detail = world.wait_state(third, "plan_gate").await;
    untouched("after the fetch through both links");

    let secret = world.server.token();
    let setup_log =
        PathBuf::from(detail["task"]["doc_path"].as_str().unwrap()).with_file_name("setup.log");
    let setup_log = std::fs::read_to_string(setup_log).unwrap_or_default();
    assert!(
        !setup_log.contains(secret),
        "its setup.log quotes the api-token: {setup_log}"
    );
    assert!(
        !world.server.logs().contains(secret),
        "the server's log quotes the api-token"
    );
    for task in [first, second, third] {
        let seen = format!(
            "{}{}",
            world.detail(task).await,
            serde_json::to_string(&world.logs(task).await).unwrap()
        );
        assert!(!seen.contains(secret), "task {task} shows the api-token");
    }
}
