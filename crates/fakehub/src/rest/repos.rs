//! Repository-level endpoints: the repository itself, a branch's required status checks, and
//! the GitHub App installation tokens (`POST /app/installations/{id}/access_tokens`, which takes
//! an app JWT instead of a token).

use super::{Reply, Shared, error, need_repo, ok, respond};
use crate::shapes::{self, Urls};
use crate::{auth, clock};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::json;

pub(super) async fn get_repo(state: Shared, Path((owner, repo)): Path<(String, String)>) -> Reply {
    let hub = state.0;
    need_repo(&hub, &owner, &repo)?;
    let urls = Urls::of(&hub);
    let mut full = hub.with(|s| shapes::repo(&urls, s.repo(&owner, &repo)));
    // The full repository shows what is only ever null here.
    full["temp_clone_token"] = json!(null);
    full["template_repository"] = json!(null);
    ok(full)
}

pub(super) async fn required_checks(
    state: Shared,
    Path((owner, repo, branch)): Path<(String, String, String)>,
) -> Reply {
    let hub = state.0;
    need_repo(&hub, &owner, &repo)?;
    let Some(checks) = hub.with(|s| s.repo(&owner, &repo).required_checks.get(&branch).cloned())
    else {
        return Err(error(StatusCode::NOT_FOUND, "Branch not protected"));
    };
    let url = format!(
        "{}/repos/{owner}/{repo}/branches/{branch}/protection/required_status_checks",
        hub.api_url()
    );
    let list: Vec<_> = checks
        .iter()
        .map(|c| json!({"context": c, "app_id": null}))
        .collect();
    ok(json!({
        "url": url,
        "strict": false,
        "contexts": checks,
        "contexts_url": format!("{url}/contexts"),
        "checks": list,
    }))
}

pub(super) async fn access_token(
    state: Shared,
    Path(installation): Path<u64>,
    headers: HeaderMap,
) -> Reply {
    let hub = state.0;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ttl = hub.opts.installation_token_ttl.as_secs();
    let issued = hub.with(|s| {
        let (_, installation_id) = auth::verify_jwt(s, authorization)?;
        if installation_id != installation {
            return Err("not this app's installation".to_string());
        }
        let token = auth::new_installation_token();
        let expires = clock::now_secs() + ttl;
        s.installation_tokens.insert(token.clone(), expires);
        s.tokens_issued += 1;
        Ok((token, expires))
    });
    match issued {
        Ok((token, expires)) => Ok(respond(
            StatusCode::CREATED,
            json!({
                "token": token,
                "expires_at": clock::format(expires),
                "permissions": {
                    "actions": "read", "checks": "read", "contents": "write", "issues": "write",
                    "metadata": "read", "pull_requests": "write", "statuses": "read",
                },
                "repository_selection": "all",
            }),
        )),
        Err(why) if why == "not this app's installation" => Err(super::not_found()),
        Err(why) => Err(error(
            StatusCode::UNAUTHORIZED,
            &format!("A JSON web token could not be decoded ({why})"),
        )),
    }
}
