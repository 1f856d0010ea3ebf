//! CI as clients read it: check runs and the combined status of a ref, annotations, GitHub
//! Actions jobs (job id = check run id) and their logs (a 302 to a plain-text URL on the same
//! server, like GitHub's redirect to blob storage, which needs no token).

use super::{Query, Reply, Shared, error, need_repo, not_found, ok, respond};
use crate::shapes::{self, Urls};
use crate::state::{CheckRun, Hub};
use crate::{ci, gitops};
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The commit a ref (sha, branch or tag) names in the bare repository.
async fn resolve(hub: &Hub, owner: &str, repo: &str, git_ref: &str) -> Result<String, Response> {
    need_repo(hub, owner, repo)?;
    let is_sha = git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha {
        return Ok(git_ref.to_string());
    }
    gitops::resolve(&hub.git_env(), &hub.bare_path(owner, repo), git_ref)
        .await
        .ok_or_else(|| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("No commit found for SHA: {git_ref}"),
            )
        })
}

pub(super) async fn list_runs(
    state: Shared,
    Path((owner, repo, git_ref)): Path<(String, String, String)>,
    q: Query,
) -> Reply {
    let hub = state.0;
    let sha = resolve(&hub, &owner, &repo, &git_ref).await?;
    let latest_only = q.get("filter").is_none_or(|f| f != "all");
    let urls = Urls::of(&hub);
    let runs: Vec<Value> = hub.with(|s| {
        let r = s.repo(&owner, &repo);
        let mut seen: Vec<&str> = Vec::new();
        r.check_runs
            .iter()
            .rev()
            .filter(|c| c.head_sha == sha)
            .filter(|c| q.get("check_name").is_none_or(|n| *n == c.name))
            .filter(|c| q.get("status").is_none_or(|st| *st == c.status))
            .filter(|c| {
                let first = !seen.contains(&c.name.as_str());
                seen.push(&c.name);
                first || !latest_only
            })
            .map(|c| shapes::check_run(&urls, r, c))
            .collect()
    });
    ok(json!({"total_count": runs.len(), "check_runs": runs}))
}

pub(super) async fn combined_status(
    state: Shared,
    Path((owner, repo, git_ref)): Path<(String, String, String)>,
) -> Reply {
    let hub = state.0;
    let sha = resolve(&hub, &owner, &repo, &git_ref).await?;
    let urls = Urls::of(&hub);
    ok(hub.with(|s| shapes::combined_status(&urls, s.repo(&owner, &repo), &sha)))
}

/// Renders check run `id` of `owner/repo` with `f`, or 404.
fn with_run(
    hub: &Hub,
    owner: &str,
    repo: &str,
    id: u64,
    f: impl FnOnce(&Urls, &crate::state::Repo, &CheckRun) -> Value,
) -> Reply {
    let urls = Urls::of(hub);
    hub.with(|s| {
        let r = s.find_repo(owner, repo)?;
        let run = r.check_runs.iter().find(|c| c.id == id)?;
        Some(f(&urls, r, run))
    })
    .map_or_else(|| Err(not_found()), ok)
}

pub(super) async fn annotations(
    state: Shared,
    Path((owner, repo, id)): Path<(String, String, u64)>,
) -> Reply {
    with_run(&state.0, &owner, &repo, id, shapes::annotations)
}

pub(super) async fn job(
    state: Shared,
    Path((owner, repo, id)): Path<(String, String, u64)>,
) -> Reply {
    with_run(&state.0, &owner, &repo, id, shapes::job)
}

pub(super) async fn job_logs(
    state: Shared,
    Path((owner, repo, id)): Path<(String, String, u64)>,
) -> Reply {
    let hub = state.0;
    let known = hub.with(|s| {
        s.find_repo(&owner, &repo)
            .is_some_and(|r| r.check_runs.iter().any(|c| c.id == id))
    });
    if !known {
        return Err(not_found());
    }
    let location = format!("{}/_fakehub/job-logs/{id}", hub.web_url());
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// The plain-text log behind the redirect (no token needed, as on blob storage).
pub(super) async fn raw_log(state: Shared, Path(id): Path<u64>) -> Response {
    let hub = state.0;
    let run = hub.with(|s| {
        s.repos
            .values()
            .flat_map(|r| &r.check_runs)
            .find(|c| c.id == id)
            .cloned()
    });
    match run {
        Some(run) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            ci::job_log(&run),
        )
            .into_response(),
        None => respond(StatusCode::NOT_FOUND, json!({"message": "BlobNotFound"})),
    }
}
