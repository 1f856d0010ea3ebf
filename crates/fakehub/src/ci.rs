//! Scripted CI. When a PR is opened or its head moves, each [`CiScript`](crate::CiScript) of the
//! repository runs for the new head: the PR's Nth distinct head gets the script's Nth outcome
//! (the last repeats). A check-run script is a GitHub Actions job (check run id = job id) that
//! starts in progress and completes after `ci_delay`; a status script is a commit status, pending
//! then final. Each step sends its webhooks.

use crate::state::{CheckRun, Failure, Hub, Status};
use crate::{CiKind, CiOutcome, clock, webhooks};
use std::sync::Arc;

/// Starts CI for the current head of PR `pr`.
pub(crate) fn start(hub: &Arc<Hub>, owner: &str, repo: &str, pr: u64) {
    let Some((runs, statuses)) = hub.with(|s| {
        let r = s.find_repo(owner, repo)?;
        let pull = r.find_pull(pr)?.clone();
        let scripts = r.ci.clone();
        let nth = pull
            .heads
            .iter()
            .position(|h| *h == pull.head_sha)
            .unwrap_or(0);
        let (run_id, suite_id) = (s.next_id(), s.next_id());
        let now = clock::now();
        let mut runs = Vec::new();
        let mut statuses = Vec::new();
        for script in scripts {
            let outcome = script
                .outcomes
                .get(nth.min(script.outcomes.len().saturating_sub(1)))
                .cloned()
                .unwrap_or(CiOutcome::Pass);
            let id = s.next_id();
            match script.kind {
                CiKind::CheckRun => runs.push((
                    CheckRun {
                        id,
                        run_id,
                        suite_id,
                        name: script.name.clone(),
                        head_sha: pull.head_sha.clone(),
                        head_ref: pull.head_ref.clone(),
                        pr,
                        status: "in_progress".into(),
                        conclusion: None,
                        started_at: now.clone(),
                        completed_at: None,
                        failure: None,
                    },
                    outcome,
                )),
                CiKind::Status => statuses.push((
                    Status {
                        id,
                        sha: pull.head_sha.clone(),
                        context: script.name.clone(),
                        state: "pending".into(),
                        description: "In progress".into(),
                        created_at: now.clone(),
                        updated_at: now.clone(),
                    },
                    outcome,
                    pull.head_ref.clone(),
                )),
            }
        }
        let r = s.find_repo_mut(owner, repo)?;
        r.check_runs.extend(runs.iter().map(|(c, _)| c.clone()));
        r.statuses
            .extend(statuses.iter().map(|(st, _, _)| st.clone()));
        Some((runs, statuses))
    }) else {
        return;
    };
    for (run, _) in &runs {
        webhooks::check_run(hub, owner, repo, run, "created");
    }
    for (st, _, branch) in &statuses {
        webhooks::status(hub, owner, repo, st, std::slice::from_ref(branch));
    }
    let (hub, owner, repo) = (hub.clone(), owner.to_string(), repo.to_string());
    tokio::spawn(async move {
        if !hub.opts.ci_delay.is_zero() {
            tokio::time::sleep(hub.opts.ci_delay).await;
        }
        finish(&hub, &owner, &repo, runs, statuses);
    });
}

type Runs = Vec<(CheckRun, CiOutcome)>;
type Statuses = Vec<(Status, CiOutcome, String)>;

fn finish(hub: &Hub, owner: &str, repo: &str, runs: Runs, statuses: Statuses) {
    let now = clock::now();
    let mut finished = Vec::new();
    let mut pending = false;
    for (mut run, outcome) in runs {
        let (conclusion, failure) = match outcome {
            CiOutcome::Pending => {
                pending = true;
                continue;
            }
            CiOutcome::Pass => ("success", None),
            CiOutcome::Fail {
                failing_step,
                log,
                annotations,
            } => (
                "failure",
                Some(Failure {
                    step: failing_step,
                    log,
                    annotations,
                }),
            ),
        };
        run.status = "completed".into();
        run.conclusion = Some(conclusion.into());
        run.completed_at = Some(now.clone());
        run.failure = failure;
        hub.with(|s| {
            if let Some(stored) = s
                .find_repo_mut(owner, repo)
                .and_then(|r| r.check_runs.iter_mut().find(|c| c.id == run.id))
            {
                *stored = run.clone();
            }
        });
        webhooks::check_run(hub, owner, repo, &run, "completed");
        finished.push(run);
    }
    if !pending {
        webhooks::suite_completed(hub, owner, repo, &finished);
    }
    for (mut st, outcome, branch) in statuses {
        let (state, description) = match outcome {
            CiOutcome::Pending => continue,
            CiOutcome::Pass => ("success", "Passed".to_string()),
            CiOutcome::Fail { failing_step, .. } => ("failure", format!("{failing_step} failed")),
        };
        st.id = hub.with(|s| s.next_id());
        st.state = state.into();
        st.description = description;
        st.updated_at = now.clone();
        hub.with(|s| {
            if let Some(r) = s.find_repo_mut(owner, repo) {
                r.statuses.push(st.clone());
            }
        });
        webhooks::status(hub, owner, repo, &st, std::slice::from_ref(&branch));
    }
}

/// The GitHub Actions log of a job: timestamped lines, each step in a `##[group]Run …` /
/// `##[endgroup]` header followed by its output, errors as `##[error]…`.
pub(crate) fn job_log(run: &CheckRun) -> String {
    let at = run.started_at.replace('Z', ".0000000Z");
    let mut lines: Vec<String> = vec![
        "##[group]Run actions/checkout@v4".into(),
        "with:".into(),
        "  fetch-depth: 1".into(),
        "##[endgroup]".into(),
        "Syncing repository".into(),
        "##[group]Run cargo build --workspace".into(),
        "cargo build --workspace".into(),
        "shell: /usr/bin/bash -e {0}".into(),
        "##[endgroup]".into(),
        "    Finished `dev` profile [unoptimized + debuginfo] target(s)".into(),
    ];
    match &run.failure {
        Some(f) => {
            lines.push(format!("##[group]Run {}", f.step));
            lines.push(f.step.clone());
            lines.push("shell: /usr/bin/bash -e {0}".into());
            lines.push("##[endgroup]".into());
            lines.extend(f.log.lines().map(str::to_string));
            for (path, line, message) in &f.annotations {
                lines.push(format!("##[error]{path}:{line}: {message}"));
            }
            lines.push("##[error]Process completed with exit code 1.".into());
        }
        None => {
            lines.push(format!("##[group]Run {}", run.name));
            lines.push("##[endgroup]".into());
            lines.push("ok".into());
        }
    }
    lines.push("Cleaning up orphan processes".into());
    lines.iter().map(|l| format!("{at} {l}\n")).collect()
}
