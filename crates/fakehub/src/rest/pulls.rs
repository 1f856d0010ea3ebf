//! Pull requests: list (by `head`, `base`, `state`), create (with GitHub's 422s for a duplicate
//! head or no commits ahead), get (with mergeability computed from the bare repository unless
//! overridden) and update (title, body, open/closed).

use super::{
    Query, Reply, Shared, body_json, need_repo, not_found, ok, respond, validation_failed,
};
use crate::auth::Caller;
use crate::shapes::{self, Mergeability, Urls};
use crate::state::{Hub, Pull};
use crate::{ci, clock, gitops, webhooks};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

pub(super) async fn list(
    state: Shared,
    Path((owner, repo)): Path<(String, String)>,
    q: Query,
) -> Reply {
    let hub = state.0;
    need_repo(&hub, &owner, &repo)?;
    let wanted = q.get("state").map_or("open", String::as_str).to_string();
    let head = q
        .get("head")
        .map(|h| h.split_once(':').map_or(h.as_str(), |(_, b)| b).to_string());
    let base = q.get("base").cloned();
    let urls = Urls::of(&hub);
    let all: Vec<Value> = hub.with(|s| {
        let r = s.repo(&owner, &repo);
        r.pulls
            .iter()
            .rev()
            .filter(|p| wanted == "all" || p.state == wanted)
            .filter(|p| head.as_ref().is_none_or(|h| *h == p.head_ref))
            .filter(|p| base.as_ref().is_none_or(|b| *b == p.base_ref))
            .map(|p| shapes::pull(&urls, r, p, override_only(p)))
            .collect()
    });
    let url = format!("{}/repos/{owner}/{repo}/pulls", urls.api);
    let (page, headers) = super::paginate(&all, &q, &url);
    super::ok_paged(headers, page)
}

fn override_only(p: &Pull) -> Mergeability {
    Mergeability {
        mergeable: p.mergeable_override,
    }
}

pub(super) async fn create(
    state: Shared,
    Path((owner, repo)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Reply {
    let hub = state.0;
    need_repo(&hub, &owner, &repo)?;
    let req = body_json(&body)?;
    let field = |k: &str| req[k].as_str().map(str::to_string);
    let (Some(title), Some(head), Some(base)) = (field("title"), field("head"), field("base"))
    else {
        return Err(validation_failed(
            json!([{"resource": "PullRequest", "code": "missing_field", "field": "title/head/base"}]),
        ));
    };
    let head_branch = head
        .split_once(':')
        .map_or(head.as_str(), |(_, b)| b)
        .to_string();
    let env = hub.git_env();
    let bare = hub.bare_path(&owner, &repo);
    let Some(head_sha) = gitops::resolve(&env, &bare, &format!("refs/heads/{head_branch}")).await
    else {
        return Err(validation_failed(
            json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
        ));
    };
    let Some(base_sha) = gitops::resolve(&env, &bare, &format!("refs/heads/{base}")).await else {
        return Err(validation_failed(
            json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
        ));
    };
    if gitops::ahead(&env, &bare, &base_sha, &head_sha).await == 0 {
        return Err(validation_failed(json!([{
            "resource": "PullRequest", "code": "custom",
            "message": format!("No commits between {base} and {head_branch}"),
        }])));
    }
    let created = hub.with(|s| {
        let id = s.next_id();
        let r = s.repo_mut(&owner, &repo);
        if r.pulls
            .iter()
            .any(|p| p.state == "open" && p.head_ref == head_branch)
        {
            return Err(validation_failed(json!([{
                "resource": "PullRequest", "code": "custom",
                "message": format!("A pull request already exists for {owner}:{head_branch}."),
            }])));
        }
        let now = clock::now();
        let pull = Pull {
            id,
            number: r.pulls.len() as u64 + 1,
            title,
            body: field("body").unwrap_or_default(),
            user: caller.login.clone(),
            head_ref: head_branch.clone(),
            head_sha: head_sha.clone(),
            base_ref: base.clone(),
            base_sha,
            state: "open".into(),
            merged: false,
            merged_at: None,
            closed_at: None,
            merge_commit_sha: None,
            created_at: now.clone(),
            updated_at: now,
            mergeable_override: None,
            heads: vec![head_sha],
        };
        r.pulls.push(pull.clone());
        Ok(pull)
    })?;
    webhooks::pull_request(&hub, &owner, &repo, &created, "opened", &caller.login);
    ci::start(&hub, &owner, &repo, created.number);
    let urls = Urls::of(&hub);
    let value = hub.with(|s| {
        shapes::pull(
            &urls,
            s.repo(&owner, &repo),
            &created,
            override_only(&created),
        )
    });
    Ok(respond(StatusCode::CREATED, value))
}

/// The PR as `GET /pulls/{n}` shows it: fresh base sha and computed mergeability.
async fn render(hub: &Arc<Hub>, owner: &str, repo: &str, number: u64) -> Reply {
    let Some(pull) = hub.with(|s| s.find_repo(owner, repo)?.find_pull(number).cloned()) else {
        return Err(not_found());
    };
    let env = hub.git_env();
    let bare = hub.bare_path(owner, repo);
    let mut m = override_only(&pull);
    if pull.state == "open" {
        if let Some(base_sha) =
            gitops::resolve(&env, &bare, &format!("refs/heads/{}", pull.base_ref)).await
        {
            hub.with(|s| {
                if let Some(p) = s
                    .find_repo_mut(owner, repo)
                    .and_then(|r| r.pulls.iter_mut().find(|p| p.number == number))
                {
                    p.base_sha = base_sha;
                }
            });
        }
        if m.mergeable.is_none() {
            m.mergeable = gitops::mergeable(&env, &bare, &pull.base_ref, &pull.head_sha).await;
        }
    }
    let urls = Urls::of(hub);
    let value = hub.with(|s| {
        let r = s.repo(owner, repo);
        shapes::pull(&urls, r, r.pull(number), m)
    });
    ok(value)
}

pub(super) async fn get(
    state: Shared,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Reply {
    render(&state.0, &owner, &repo, number).await
}

pub(super) async fn update(
    state: Shared,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Reply {
    let hub = state.0;
    let req = body_json(&body)?;
    let changed = hub.with(|s| {
        let p = s
            .find_repo_mut(&owner, &repo)?
            .pulls
            .iter_mut()
            .find(|p| p.number == number)?;
        let mut changes = serde_json::Map::new();
        if let Some(title) = req["title"].as_str().filter(|t| *t != p.title) {
            changes.insert("title".into(), json!({"from": p.title}));
            p.title = title.to_string();
        }
        if let Some(body) = req["body"].as_str().filter(|b| *b != p.body) {
            changes.insert("body".into(), json!({"from": p.body}));
            p.body = body.to_string();
        }
        if !changes.is_empty() {
            p.updated_at = clock::now();
        }
        let action = match req["state"].as_str() {
            Some("closed") if p.state == "open" => Some("closed"),
            Some("open") if p.state == "closed" && !p.merged => Some("reopened"),
            _ => None,
        };
        if let Some(action) = action {
            p.set_state(if action == "closed" { "closed" } else { "open" });
        }
        Some((p.clone(), changes, action))
    });
    let Some((pull, changes, action)) = changed else {
        return Err(not_found());
    };
    if !changes.is_empty() {
        let extra = json!({"changes": changes});
        webhooks::pull_request_with(&hub, &owner, &repo, &pull, "edited", &caller.login, extra);
    }
    if let Some(action) = action {
        webhooks::pull_request(&hub, &owner, &repo, &pull, action, &caller.login);
    }
    render(&hub, &owner, &repo, number).await
}
