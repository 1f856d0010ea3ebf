//! CI on GitHub: the check runs (all pages) and commit statuses of a commit, the checks branch
//! protection requires (when the token may read them), and for failed checks what went wrong —
//! the check run's summary and annotations, and for a GitHub Actions job its log trimmed to the
//! failing step. The job log lives behind a redirect to storage that needs no credentials, so
//! the token is never sent there.

use std::collections::HashMap;

use reqwest::{Method, Url};

use super::client::encode_path;
use super::logs::trim_job_log;
use super::{GitHubForge, models};
use crate::{
    Annotation, Check, CheckFailure, CheckKind, CheckState, Checks, ForgeError, PullRequest,
};

/// A check run's state: completed and successful (or neutral, skipped) is passed; completed and
/// failed, timed out, cancelled, needing action or failing to start is failed; anything else
/// (queued, in progress, waiting, stale) is pending.
pub(crate) fn check_run_state(status: &str, conclusion: Option<&str>) -> CheckState {
    if status != "completed" {
        return CheckState::Pending;
    }
    match conclusion {
        Some("success" | "neutral" | "skipped") => CheckState::Passed,
        Some("failure" | "timed_out" | "cancelled" | "action_required" | "startup_failure") => {
            CheckState::Failed
        }
        _ => CheckState::Pending,
    }
}

/// A commit status's state.
pub(crate) fn status_state(state: &str) -> CheckState {
    match state {
        "success" => CheckState::Passed,
        "failure" | "error" => CheckState::Failed,
        _ => CheckState::Pending,
    }
}

pub(super) async fn checks(
    forge: &GitHubForge,
    base: &str,
    head_sha: &str,
) -> Result<Checks, ForgeError> {
    let sha = encode_path(head_sha, false);
    let runs_path = forge.repo_path(&format!("/commits/{sha}/check-runs"));
    let runs = forge
        .client
        .get_all(
            &format!("GET {runs_path}"),
            &runs_path,
            |page: models::CheckRunList| page.check_runs,
        )
        .await?;
    let status_path = forge.repo_path(&format!("/commits/{sha}/status"));
    let statuses = forge
        .client
        .get_all(
            &format!("GET {status_path}"),
            &status_path,
            |page: models::CombinedStatus| page.statuses,
        )
        .await?;

    // The latest (highest id) of each name wins.
    let mut latest: HashMap<(String, bool), (u64, Check)> = HashMap::new();
    let mut keep = |id: u64, check: Check| {
        let key = (check.name.clone(), check.kind == CheckKind::CheckRun);
        match latest.get(&key) {
            Some((seen, _)) if *seen > id => {}
            _ => {
                latest.insert(key, (id, check));
            }
        }
    };
    for run in runs {
        keep(
            run.id,
            Check {
                state: check_run_state(&run.status, run.conclusion.as_deref()),
                name: run.name,
                kind: CheckKind::CheckRun,
                id: Some(run.id),
                url: run.html_url.or(run.details_url),
            },
        );
    }
    for status in statuses {
        keep(
            status.id,
            Check {
                state: status_state(&status.state),
                name: status.context,
                kind: CheckKind::Status,
                id: None,
                url: status.target_url,
            },
        );
    }
    let mut checks: Vec<Check> = latest.into_values().map(|(_, check)| check).collect();
    checks.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(Checks {
        head_sha: head_sha.to_string(),
        checks,
        required: required(forge, base).await?,
    })
}

/// The names of the checks branch protection requires on `base`, or `None` when there is no
/// protection or the token may not read it.
async fn required(forge: &GitHubForge, base: &str) -> Result<Option<Vec<String>>, ForgeError> {
    let path = forge.repo_path(&format!(
        "/branches/{}/protection/required_status_checks",
        encode_path(base, false)
    ));
    let call = format!("GET {path}");
    let resp = forge
        .client
        .call(&call, Method::GET, &forge.client.url(&path), None)
        .await?;
    match resp.status {
        200 => {
            let required: models::RequiredChecks = resp.json(&call)?;
            let mut names = required.contexts;
            for check in required.checks {
                if !names.contains(&check.context) {
                    names.push(check.context);
                }
            }
            Ok(Some(names))
        }
        403 | 404 => Ok(None),
        _ => Err(resp.into_error(&call)),
    }
}

pub(super) async fn failures(
    forge: &GitHubForge,
    pr: &PullRequest,
    failed: &[Check],
) -> Result<Vec<CheckFailure>, ForgeError> {
    let mut out = Vec::new();
    for check in failed {
        let failure = match (check.kind, check.id) {
            (CheckKind::CheckRun, Some(id)) => run_failure(forge, pr, check, id).await?,
            _ => status_failure(forge, pr, check).await?,
        };
        out.push(failure);
    }
    Ok(out)
}

/// Check run `id`: from the (ETag-cached) list of the pull request's head, else on its own;
/// `None` when GitHub no longer has it.
async fn find_run(
    forge: &GitHubForge,
    pr: &PullRequest,
    id: u64,
) -> Result<Option<models::CheckRun>, ForgeError> {
    let sha = encode_path(&pr.head_sha, false);
    let runs_path = forge.repo_path(&format!("/commits/{sha}/check-runs"));
    let runs = forge
        .client
        .get_all(
            &format!("GET {runs_path}"),
            &runs_path,
            |page: models::CheckRunList| page.check_runs,
        )
        .await?;
    if let Some(run) = runs.into_iter().find(|r| r.id == id) {
        return Ok(Some(run));
    }
    let run_path = forge.repo_path(&format!("/check-runs/{id}"));
    let call = format!("GET {run_path}");
    let resp = forge
        .client
        .call(&call, Method::GET, &forge.client.url(&run_path), None)
        .await?;
    match resp.status {
        200 => Ok(Some(resp.json(&call)?)),
        404 => Ok(None),
        _ => Err(resp.into_error(&call)),
    }
}

async fn run_failure(
    forge: &GitHubForge,
    pr: &PullRequest,
    check: &Check,
    id: u64,
) -> Result<CheckFailure, ForgeError> {
    let run = find_run(forge, pr, id).await?;
    let notes_path = forge.repo_path(&format!("/check-runs/{id}/annotations"));
    let annotations = forge
        .client
        .get_all(
            &format!("GET {notes_path}"),
            &notes_path,
            |page: Vec<models::Annotation>| page,
        )
        .await?
        .into_iter()
        .map(|a| Annotation {
            path: a.path,
            start_line: a.start_line,
            end_line: a.end_line.max(a.start_line),
            level: a.annotation_level.unwrap_or_else(|| "failure".to_string()),
            title: a.title.filter(|t| !t.is_empty()),
            message: a.message,
        })
        .collect();
    let summary = run
        .as_ref()
        .and_then(|r| r.output.as_ref())
        .and_then(|o| o.summary.clone().or_else(|| o.title.clone()))
        .filter(|s| !s.trim().is_empty());
    // Actions jobs are check runs whose id is the job id; other apps' runs have no job log.
    let is_actions = run
        .as_ref()
        .and_then(|r| r.app.as_ref())
        .and_then(|a| a.slug.as_deref())
        .is_none_or(|slug| slug == "github-actions");
    let log_excerpt = if is_actions {
        job_log_excerpt(forge, id).await?
    } else {
        None
    };
    Ok(CheckFailure {
        name: check.name.clone(),
        url: check.url.clone().or(run.and_then(|r| r.html_url)),
        summary,
        annotations,
        log_excerpt,
    })
}

/// The failing step's part of the job's log, or `None` when the job or its log is not there.
async fn job_log_excerpt(forge: &GitHubForge, job: u64) -> Result<Option<String>, ForgeError> {
    let job_path = forge.repo_path(&format!("/actions/jobs/{job}"));
    let call = format!("GET {job_path}");
    let resp = forge
        .client
        .call(&call, Method::GET, &forge.client.url(&job_path), None)
        .await?;
    if matches!(resp.status, 404 | 410) {
        return Ok(None);
    }
    if !resp.is_success() {
        return Err(resp.into_error(&call));
    }
    let job_info: models::Job = resp.json(&call)?;
    let failed_step = job_info
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.conclusion.as_deref(),
                Some("failure" | "timed_out" | "cancelled")
            )
        })
        .min_by_key(|s| s.number)
        .map(|s| s.name.clone());

    let logs_path = forge.repo_path(&format!("/actions/jobs/{job}/logs"));
    let logs_url = forge.client.url(&logs_path);
    let call = format!("GET {logs_path}");
    let resp = forge
        .client
        .call(&call, Method::GET, &logs_url, None)
        .await?;
    let log = match resp.status {
        200 => resp.text(),
        301 | 302 | 303 | 307 | 308 => {
            let Some(location) = resp.header("location") else {
                return Ok(None);
            };
            let target = Url::parse(&logs_url)
                .and_then(|base| base.join(location))
                .map_err(|err| ForgeError::BadResponse {
                    call: call.clone(),
                    message: format!("unreadable redirect: {err}"),
                })?;
            // The storage URL carries its own signature: no credentials go there.
            let stored = forge
                .client
                .get_anonymous(&format!("GET job {job} log (redirected)"), target.as_str())
                .await?;
            if !stored.is_success() {
                tracing::warn!(job, status = stored.status, "job log could not be fetched");
                return Ok(None);
            }
            stored.text()
        }
        404 | 410 => return Ok(None),
        status => {
            tracing::warn!(job, status, "job log could not be fetched");
            return Ok(None);
        }
    };
    Ok(Some(trim_job_log(&log, failed_step.as_deref())))
}

async fn status_failure(
    forge: &GitHubForge,
    pr: &PullRequest,
    check: &Check,
) -> Result<CheckFailure, ForgeError> {
    let sha = encode_path(&pr.head_sha, false);
    let path = forge.repo_path(&format!("/commits/{sha}/status"));
    let statuses = forge
        .client
        .get_all(
            &format!("GET {path}"),
            &path,
            |page: models::CombinedStatus| page.statuses,
        )
        .await?;
    let status = statuses
        .into_iter()
        .filter(|s| s.context == check.name)
        .max_by_key(|s| s.id);
    Ok(CheckFailure {
        name: check.name.clone(),
        url: check
            .url
            .clone()
            .or_else(|| status.as_ref().and_then(|s| s.target_url.clone())),
        summary: status.and_then(|s| s.description).filter(|d| !d.is_empty()),
        annotations: Vec::new(),
        log_excerpt: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_run_states() {
        let cases = [
            ("completed", Some("success"), CheckState::Passed),
            ("completed", Some("neutral"), CheckState::Passed),
            ("completed", Some("skipped"), CheckState::Passed),
            ("completed", Some("failure"), CheckState::Failed),
            ("completed", Some("timed_out"), CheckState::Failed),
            ("completed", Some("cancelled"), CheckState::Failed),
            ("completed", Some("action_required"), CheckState::Failed),
            ("completed", Some("startup_failure"), CheckState::Failed),
            ("completed", Some("stale"), CheckState::Pending),
            ("completed", None, CheckState::Pending),
            ("queued", None, CheckState::Pending),
            ("in_progress", None, CheckState::Pending),
            ("in_progress", Some("failure"), CheckState::Pending),
        ];
        for (status, conclusion, expected) in cases {
            assert_eq!(
                check_run_state(status, conclusion),
                expected,
                "{status} {conclusion:?}"
            );
        }
    }

    #[test]
    fn status_states() {
        assert_eq!(status_state("success"), CheckState::Passed);
        assert_eq!(status_state("failure"), CheckState::Failed);
        assert_eq!(status_state("error"), CheckState::Failed);
        assert_eq!(status_state("pending"), CheckState::Pending);
    }
}
