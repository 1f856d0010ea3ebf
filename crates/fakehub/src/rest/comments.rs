//! Conversation: issue comments on a PR (list with `since` and pages, create, edit), review
//! comments (list, reply in their thread), reviews (list) and reactions on both kinds of
//! comment (201 for a new one, 200 for one the user already left).

use super::{Query, Reply, Shared, body_json, need_repo, not_found, ok, paginate, respond};
use crate::auth::Caller;
use crate::shapes::{self, Urls};
use crate::state::{Comment, Reaction, ReviewPlace};
use crate::{clock, webhooks};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::{Value, json};

type PrPath = Path<(String, String, u64)>;

pub(super) async fn list_issue(
    state: Shared,
    Path((owner, repo, number)): PrPath,
    q: Query,
) -> Reply {
    let hub = state.0;
    need_repo(&hub, &owner, &repo)?;
    let since = q.get("since").and_then(|s| clock::parse(s));
    let urls = Urls::of(&hub);
    let all: Vec<Value> = hub.with(|s| {
        let r = s.repo(&owner, &repo);
        r.issue_comments
            .iter()
            .filter(|c| c.pr == number)
            .filter(|c| since.is_none_or(|t| clock::parse(&c.updated_at).unwrap_or(0) >= t))
            .map(|c| shapes::issue_comment(&urls, r, c))
            .collect()
    });
    let url = format!("{}/repos/{owner}/{repo}/issues/{number}/comments", urls.api);
    let (page, headers) = paginate(&all, &q, &url);
    super::ok_paged(headers, page)
}

/// The `body` of a request, or GitHub's 422.
fn required_body(body: &Bytes) -> Result<String, axum::response::Response> {
    let req = body_json(body)?;
    req["body"].as_str().map(str::to_string).ok_or_else(|| {
        super::validation_failed(
            json!([{"resource": "IssueComment", "code": "missing_field", "field": "body"}]),
        )
    })
}

pub(super) async fn create_issue(
    state: Shared,
    Path((owner, repo, number)): PrPath,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Reply {
    let hub = state.0;
    let text = required_body(&body)?;
    let urls = Urls::of(&hub);
    let (comment, value) = hub
        .with(|s| {
            let id = s.next_id();
            let r = s.find_repo_mut(&owner, &repo)?;
            r.find_pull(number)?;
            let c = Comment::new(id, number, &caller.login, "NONE", &text);
            r.issue_comments.push(c.clone());
            let value = shapes::issue_comment(&urls, r, &c);
            Some((c, value))
        })
        .ok_or_else(not_found)?;
    webhooks::issue_comment(&hub, &owner, &repo, &comment, "created");
    Ok(respond(StatusCode::CREATED, value))
}

pub(super) async fn edit_issue(
    state: Shared,
    Path((owner, repo, id)): PrPath,
    body: Bytes,
) -> Reply {
    let hub = state.0;
    let text = required_body(&body)?;
    let urls = Urls::of(&hub);
    let (comment, old, value) = hub
        .with(|s| {
            let r = s.find_repo_mut(&owner, &repo)?;
            let c = r.issue_comments.iter_mut().find(|c| c.id == id)?;
            let old = std::mem::replace(&mut c.body, text);
            c.updated_at = clock::now();
            let c = c.clone();
            let value = shapes::issue_comment(&urls, r, &c);
            Some((c, old, value))
        })
        .ok_or_else(not_found)?;
    let extra = json!({"changes": {"body": {"from": old}}});
    webhooks::issue_comment_with(&hub, &owner, &repo, &comment, "edited", extra);
    ok(value)
}

pub(super) async fn list_review(
    state: Shared,
    Path((owner, repo, number)): PrPath,
    q: Query,
) -> Reply {
    let hub = state.0;
    need_repo(&hub, &owner, &repo)?;
    let since = q.get("since").and_then(|s| clock::parse(s));
    let urls = Urls::of(&hub);
    let all: Vec<Value> = hub.with(|s| {
        let r = s.repo(&owner, &repo);
        r.review_comments
            .iter()
            .filter(|c| c.pr == number)
            .filter(|c| since.is_none_or(|t| clock::parse(&c.updated_at).unwrap_or(0) >= t))
            .map(|c| shapes::review_comment(&urls, r, c))
            .collect()
    });
    let url = format!("{}/repos/{owner}/{repo}/pulls/{number}/comments", urls.api);
    let (page, headers) = paginate(&all, &q, &url);
    super::ok_paged(headers, page)
}

pub(super) async fn reply(
    state: Shared,
    Path((owner, repo, number, parent)): Path<(String, String, u64, u64)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Reply {
    let hub = state.0;
    let text = required_body(&body)?;
    let urls = Urls::of(&hub);
    let (comment, value) = hub
        .with(|s| {
            let (id, review_id) = (s.next_id(), s.next_id());
            let r = s.find_repo_mut(&owner, &repo)?;
            let parent = r
                .review_comments
                .iter()
                .find(|c| c.id == parent && c.pr == number)?
                .clone();
            let place = parent.review.clone()?;
            let mut c = Comment::new(id, number, &caller.login, "NONE", &text);
            c.in_reply_to = Some(parent.in_reply_to.unwrap_or(parent.id));
            c.review = Some(ReviewPlace { review_id, ..place });
            r.review_comments.push(c.clone());
            let value = shapes::review_comment(&urls, r, &c);
            Some((c, value))
        })
        .ok_or_else(not_found)?;
    webhooks::review_comment(&hub, &owner, &repo, &comment, "created");
    Ok(respond(StatusCode::CREATED, value))
}

pub(super) async fn list_reviews(
    state: Shared,
    Path((owner, repo, number)): PrPath,
    q: Query,
) -> Reply {
    let hub = state.0;
    need_repo(&hub, &owner, &repo)?;
    let urls = Urls::of(&hub);
    let all: Vec<Value> = hub.with(|s| {
        let r = s.repo(&owner, &repo);
        r.reviews
            .iter()
            .filter(|rv| rv.pr == number)
            .map(|rv| shapes::review(&urls, r, rv))
            .collect()
    });
    let url = format!("{}/repos/{owner}/{repo}/pulls/{number}/reviews", urls.api);
    let (page, headers) = paginate(&all, &q, &url);
    super::ok_paged(headers, page)
}

const CONTENTS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

/// Adds `caller`'s reaction to comment `id` of `kind` ("issue" or "review_comment").
fn react(
    hub: &crate::state::Hub,
    owner: &str,
    repo: &str,
    kind: &str,
    id: u64,
    caller: &Caller,
    body: &Bytes,
) -> Reply {
    let req = body_json(body)?;
    let content = req["content"].as_str().unwrap_or_default().to_string();
    if !CONTENTS.contains(&content.as_str()) {
        return Err(super::validation_failed(
            json!([{"resource": "Reaction", "code": "invalid", "field": "content"}]),
        ));
    }
    let urls = Urls::of(hub);
    let (status, reaction) = hub
        .with(|s| {
            let r = s.find_repo(owner, repo)?;
            let exists = match kind {
                "issue" => r.issue_comments.iter().any(|c| c.id == id),
                _ => r.review_comments.iter().any(|c| c.id == id),
            };
            if !exists {
                return None;
            }
            if let Some(old) = s.reactions.iter().find(|re| {
                re.kind == kind
                    && re.comment_id == id
                    && re.user == caller.login
                    && re.content == content
            }) {
                return Some((StatusCode::OK, old.clone()));
            }
            let reaction = Reaction {
                id: s.next_id(),
                kind: kind.to_string(),
                comment_id: id,
                user: caller.login.clone(),
                content,
                created_at: clock::now(),
            };
            s.reactions.push(reaction.clone());
            Some((StatusCode::CREATED, reaction))
        })
        .ok_or_else(not_found)?;
    Ok(respond(status, shapes::reaction(&urls, &reaction)))
}

pub(super) async fn react_issue(
    state: Shared,
    Path((owner, repo, id)): PrPath,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Reply {
    react(&state.0, &owner, &repo, "issue", id, &caller, &body)
}

pub(super) async fn react_review(
    state: Shared,
    Path((owner, repo, id)): PrPath,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Reply {
    react(
        &state.0,
        &owner,
        &repo,
        "review_comment",
        id,
        &caller,
        &body,
    )
}
