//! The GitHub forge end to end: the real `atelier serve` with scripted agents, a project added
//! with `atelier project add --forge github`, and a fake GitHub (`fakehub`) on 127.0.0.1 that
//! serves the REST API, git over HTTP, scripted CI and signed webhooks.
//!
//! Timing: the project polls GitHub every second (`poll_secs: 1`, server tick 200 ms) so a missed
//! webhook costs at most about a second; comment batching windows are scaled down from the
//! default 30 s to 3 s, with the test's comments about 1 s apart (the same ratio of "within the
//! window" as two comments 10 s apart under the default). Nothing sleeps for a fixed time to
//! let something happen: every wait is for a condition, with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[path = "support/github.rs"]
mod gh;
mod support;

use fakehub::{Auth, Fault, FaultKind};
use gh::*;
use serde_json::{Value, json};
use std::path::Path;
use support::*;

const TOKEN: &str = "ghp_e2eTestToken0123456789abcdefABCDEF";

fn state_of(detail: &Value) -> &str {
    detail["task"]["state"]["state"].as_str().unwrap_or("?")
}

/// Whether `ancestor` is an ancestor of `of` in the git repository at `repo`.
fn is_ancestor(repo: &Path, ancestor: &str, of: &str) -> bool {
    std::process::Command::new("git")
        .args(["merge-base", "--is-ancestor", ancestor, of])
        .current_dir(repo)
        .status()
        .unwrap()
        .success()
}

/// The whole lifecycle with a CI failure and a conflict on the way: plan gate → approve →
/// implement ⇄ review → PR opened over HTTP with the token → CI fails → a fixing run is told
/// the check, annotation and log → green → the base moves and conflicts → a rebase run →
/// green → merged on GitHub → done, worktree and branch gone.
#[tokio::test]
async fn a_pull_request_goes_from_plan_to_merged_through_a_ci_failure_and_a_conflict() {
    let pr = json!({"runs": [
        [{"do": "run", "command": "git status --short"}, {"do": "signal", "args": ["pr-done"]}],
        [
            {"do": "echo_input"},
            {"do": "write", "path": "src/fixed.txt", "content": "greeting\n"},
            {"do": "run", "command": "git add -A && git commit -qm 'Fix the build'"},
            {"do": "signal", "args": ["pr-done"]}
        ],
        [
            {"do": "echo_input"},
            {"do": "run", "command": "git rebase origin/main || { printf 'hello\\nhi from main\\n' > greeting.txt && git add greeting.txt && GIT_EDITOR=true git rebase --continue; }"},
            {"do": "run", "command": "git log --oneline -5"},
            {"do": "signal", "args": ["pr-done"]}
        ]
    ]});
    let scenarios = vec![
        ("plan", plan_scenario()),
        ("implement", implement_scenario()),
        ("review", review_scenario()),
        ("pr", pr),
    ];
    let gh = Gh::start(&scenarios, fail_then_pass(), TOKEN, json!({}), SERVE, &[]).await;
    let world = &gh.world;

    let id = world.new_task("Add a greeting", true).await;
    world.wait_state(id, "plan_gate").await;
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");

    // The PR is opened on GitHub, over HTTP, with the token: git with Basic auth, REST with it.
    let pull = gh
        .wait_for("the pull request on the hub", || async {
            gh.hub.pulls(OWNER, REPO).into_iter().next()
        })
        .await;
    let requests = gh.hub.requests();
    assert!(
        requests.iter().any(|r| r.path.contains("git-receive-pack")
            && matches!(&r.auth, Auth::Basic { password, .. } if password == TOKEN)),
        "git pushed with Basic auth carrying the token: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.path.starts_with("/api/v3"))
            .all(|r| r.auth == Auth::Token(TOKEN.into())),
        "every REST call carried the token: {requests:#?}"
    );
    assert!(
        pull.body.contains("Add greeting and farewell files") && pull.body.contains("greeting.txt"),
        "the body carries the plan summary and the to-do list: {}",
        pull.body
    );
    let branch = world.detail(id).await["task"]["branch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(pull.head_ref, branch);

    // CI fails: a pr-stage follow-up run is told the check, its annotation and its log.
    let detail = gh.wait_runs_ended(id, "pr", 2).await;
    let fix_run = Gh::pr_runs(&detail)[1];
    let prompt = gh.transcript_of_run(id, fix_run).await;
    for needle in [CHECK, ANNOTATION, LOG_LINE, "src/lib.rs"] {
        assert!(
            prompt.contains(needle),
            "the fixing run's prompt names {needle:?}: {prompt}"
        );
    }
    // Its commit is pushed, CI passes, the task awaits a merge.
    let detail = gh.wait_state(id, "awaiting_merge").await;
    let head = gh.only_pull().head_sha;
    assert_eq!(detail["pull_request"]["head_sha"], head.as_str());
    let bare = gh.hub.bare_path(OWNER, REPO);
    assert!(
        testkit::git(&bare, &["log", "--format=%s", &head])
            .unwrap()
            .contains("Fix the build"),
        "the fix is on the pull request's head"
    );

    // The base moves with a conflicting change: a rebase run, a force push, green again.
    let base = gh
        .hub
        .commit_to_base(
            OWNER,
            REPO,
            "greeting.txt",
            "hi from main\n",
            "Greet from main",
        )
        .await;
    let detail = gh.wait_runs_ended(id, "pr", 3).await;
    let rebase_run = Gh::pr_runs(&detail)[2];
    let prompt = gh.transcript_of_run(id, rebase_run).await;
    assert!(
        prompt.contains("git rebase origin/main"),
        "the rebase run is told to rebase: {prompt}"
    );
    let rebased = gh
        .wait_for("the rebased head on the hub", || async {
            let head = gh.only_pull().head_sha;
            is_ancestor(&bare, &base, &head).then_some(head)
        })
        .await;
    let detail = gh.wait_state(id, "awaiting_merge").await;
    assert_eq!(detail["pull_request"]["head_sha"], rebased.as_str());
    assert_eq!(gh.hub.pulls(OWNER, REPO).len(), 1, "still one pull request");

    // A human merges on GitHub: the webhook (or the poll) makes the task done and cleans up.
    gh.hub.merge(OWNER, REPO, pull.number).await;
    let detail = gh.wait_state(id, "done").await;
    assert_eq!(detail["task"]["state"]["reason"], "merged");
    let worktree = world.worktree(&detail);
    gh.wait_for("the worktree and branch to be removed", || async {
        (!worktree.exists() && !world.repo.branches().contains(&branch)).then_some(())
    })
    .await;
}

/// Forged and unsigned deliveries are refused (401) and recorded as rejected; a replayed
/// delivery is answered `replayed` and changes nothing.
#[tokio::test]
async fn webhooks_that_are_forged_unsigned_or_replayed_are_refused() {
    let gh = Gh::start(&quick_stages(), always_pass(), TOKEN, json!({}), SERVE, &[]).await;
    let id = gh.task_awaiting_merge("Add a greeting").await;
    let pr = gh.pr_number(id).await;

    // A "merged" event made up by someone without the secret, and the same unsigned.
    let opened = gh
        .hub
        .deliveries()
        .into_iter()
        .find(|d| d.event == "pull_request" && d.action.as_deref() == Some("opened"))
        .expect("the opened delivery");
    let mut forged = opened.body.clone();
    forged["action"] = json!("closed");
    forged["pull_request"]["merged"] = json!(true);
    let forged = serde_json::to_vec(&forged).unwrap();
    let bad_mac = format!("sha256={}", "0".repeat(64));
    let status = gh
        .hub
        .deliver_raw("pull_request", &forged, Some(&bad_mac), "forged-1")
        .await;
    assert_eq!(status, 401, "a forged signature is refused");
    let status = gh
        .hub
        .deliver_raw("pull_request", &forged, None, "unsigned-1")
        .await;
    assert_eq!(status, 401, "an unsigned delivery is refused");
    let recorded = gh.recorded_deliveries();
    for delivery in ["forged-1", "unsigned-1"] {
        let (_, event, outcome) = recorded
            .iter()
            .find(|(d, ..)| d.as_deref() == Some(delivery))
            .unwrap_or_else(|| panic!("{delivery} is recorded: {recorded:#?}"));
        assert_eq!(event, "pull_request");
        assert!(outcome.starts_with("rejected: "), "{delivery}: {outcome}");
    }

    // A real delivery sent again (GitHub's "Redeliver", or an attacker replaying it).
    let runs_before = world_runs(&gh, id).await;
    let status = gh.hub.redeliver(&opened.id).await;
    assert_eq!(status, Some(200));
    let recorded = gh.recorded_deliveries();
    let outcomes: Vec<&str> = recorded
        .iter()
        .filter(|(d, ..)| d.as_deref() == Some(opened.id.as_str()))
        .map(|(_, _, o)| o.as_str())
        .collect();
    assert_eq!(outcomes, ["accepted", "replayed"], "{recorded:#?}");
    // Nothing happened twice: still one PR, the same runs, the task still awaits its merge,
    // not merged by the forged event.
    let detail = gh.wait_state(id, "awaiting_merge").await;
    assert_eq!(world_runs(&gh, id).await, runs_before);
    assert_eq!(gh.hub.pulls(OWNER, REPO).len(), 1);
    assert_eq!(gh.hub.pulls(OWNER, REPO)[0].number, pr);
    assert_eq!(detail["pull_request"]["merged"], false);
    let logs = gh.world.server.logs();
    assert!(logs.contains("refused a webhook delivery"), "{logs}");
}

async fn world_runs(gh: &Gh, id: i64) -> Vec<(String, String)> {
    run_summary(&gh.world.detail(id).await)
}
