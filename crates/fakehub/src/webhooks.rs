//! Webhook deliveries: events are built, signed (`X-Hub-Signature-256`) and recorded under the
//! state lock, then POSTed in order by one worker task, so the handler that caused an event never
//! waits for Atelier. Payload builders for each event live here; the objects inside them come
//! from [`crate::shapes`].

use crate::shapes::{self, Urls};
use crate::state::{CheckRun, Comment, Hub, Pull, Repo, Review, State, Status};
use crate::{Delivery, clock};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The hook id GitHub would give the one webhook.
const HOOK_ID: &str = "4242";

/// A delivery waiting for the worker.
pub(crate) struct Job {
    index: usize,
}

/// A recorded delivery and what is needed to send it again.
pub(crate) struct Recorded {
    pub delivery: Delivery,
    url: String,
    raw: Vec<u8>,
    signature: String,
}

pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Records and queues `event` for `owner/repo` when a webhook is set and enabled; `build` makes
/// the event's own fields (`repository`, `sender` and `installation` are added).
fn emit(
    hub: &Hub,
    owner: &str,
    repo: &str,
    event: &str,
    sender: &str,
    build: impl FnOnce(&Urls, &Repo) -> Value,
) {
    let urls = Urls::of(hub);
    let mut state = hub.lock();
    let Some(hook) = state.webhook.as_ref().filter(|_| state.webhooks_enabled) else {
        return;
    };
    let (url, secret) = (hook.url.clone(), hook.secret.clone());
    let Some(r) = state.find_repo(owner, repo) else {
        return;
    };
    let mut body = build(&urls, r);
    if let Some(map) = body.as_object_mut() {
        map.insert("repository".into(), repository(&urls, r));
        map.insert("sender".into(), shapes::user(&urls, sender));
        if let Some(id) = state.installation_id() {
            map.insert(
                "installation".into(),
                json!({"id": id, "node_id": shapes::node_id("Installation", id)}),
            );
        }
    }
    record(&mut state, hub, event, body, &url, &secret);
}

fn record(state: &mut State, hub: &Hub, event: &str, body: Value, url: &str, secret: &str) {
    let raw = serde_json::to_vec(&body).unwrap_or_default();
    let signature = sign(secret, &raw);
    let delivery = Delivery {
        id: uuid::Uuid::new_v4().to_string(),
        event: event.to_string(),
        action: body["action"].as_str().map(str::to_string),
        status: None,
        body,
    };
    state.deliveries.push(Recorded {
        delivery,
        url: url.to_string(),
        raw,
        signature,
    });
    let _ = hub.hooks.send(Job {
        index: state.deliveries.len() - 1,
    });
}

/// The repository as webhooks carry it.
fn repository(u: &Urls, r: &Repo) -> Value {
    let mut v = shapes::repo(u, r);
    if let Some(map) = v.as_object_mut() {
        for key in ["network_count", "subscribers_count"] {
            map.remove(key);
        }
        map.insert("custom_properties".into(), json!({}));
    }
    v
}

/// Sends queued deliveries one after another, recording Atelier's answers.
pub(crate) async fn worker(hub: Arc<Hub>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let Some((url, event, id, raw, signature)) = hub.with(|s| {
            s.deliveries.get(job.index).map(|d| {
                (
                    d.url.clone(),
                    d.delivery.event.clone(),
                    d.delivery.id.clone(),
                    d.raw.clone(),
                    d.signature.clone(),
                )
            })
        }) else {
            continue;
        };
        let status = post(&hub, &url, &event, &raw, Some(&signature), &id).await;
        hub.with(|s| {
            if let Some(d) = s.deliveries.get_mut(job.index) {
                d.delivery.status = status;
            }
        });
    }
}

async fn post(
    hub: &Hub,
    url: &str,
    event: &str,
    body: &[u8],
    signature: Option<&str>,
    delivery_id: &str,
) -> Option<u16> {
    let mut req = hub
        .http
        .post(url)
        .timeout(std::time::Duration::from_secs(10))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery_id)
        .header("X-GitHub-Hook-ID", HOOK_ID)
        .header("X-GitHub-Hook-Installation-Target-Type", "repository")
        .header("User-Agent", "GitHub-Hookshot/fake")
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("X-Hub-Signature-256", sig);
    }
    req.send().await.ok().map(|r| r.status().as_u16())
}

pub(crate) async fn redeliver(hub: &Hub, delivery_id: &str) -> Option<u16> {
    let (url, event, raw, signature) = hub.with(|s| {
        s.deliveries
            .iter()
            .find(|d| d.delivery.id == delivery_id)
            .map(|d| {
                (
                    d.url.clone(),
                    d.delivery.event.clone(),
                    d.raw.clone(),
                    d.signature.clone(),
                )
            })
    })?;
    post(hub, &url, &event, &raw, Some(&signature), delivery_id).await
}

pub(crate) async fn deliver_raw(
    hub: &Hub,
    event: &str,
    body: &[u8],
    signature: Option<&str>,
    delivery_id: &str,
) -> u16 {
    let Some(url) = hub.with(|s| s.webhook.as_ref().map(|w| w.url.clone())) else {
        return 0;
    };
    post(hub, &url, event, body, signature, delivery_id)
        .await
        .unwrap_or(0)
}

/// The mergeability webhooks report: an override, else not yet computed (`null`), as GitHub.
fn hook_mergeability(p: &Pull) -> shapes::Mergeability {
    shapes::Mergeability {
        mergeable: p.mergeable_override,
    }
}

pub(crate) fn pull_request(
    hub: &Hub,
    owner: &str,
    repo: &str,
    p: &Pull,
    action: &str,
    sender: &str,
) {
    pull_request_with(hub, owner, repo, p, action, sender, json!({}));
}

/// `pull_request` with extra fields (`before`/`after` of a synchronize, `changes` of an edit).
pub(crate) fn pull_request_with(
    hub: &Hub,
    owner: &str,
    repo: &str,
    p: &Pull,
    action: &str,
    sender: &str,
    extra: Value,
) {
    emit(hub, owner, repo, "pull_request", sender, |u, r| {
        let mut v = json!({
            "action": action,
            "number": p.number,
            "pull_request": shapes::pull(u, r, p, hook_mergeability(p)),
        });
        merge_into(&mut v, extra);
        v
    });
}

fn merge_into(v: &mut Value, extra: Value) {
    if let (Some(map), Value::Object(more)) = (v.as_object_mut(), extra) {
        map.extend(more);
    }
}

/// The issue side of a PR, as `issue_comment` events carry it.
fn issue(u: &Urls, r: &Repo, p: &Pull) -> Value {
    let api = format!("{}/repos/{}/{}", u.api, r.owner, r.name);
    let html = format!("{}/{}/{}/pull/{}", u.web, r.owner, r.name, p.number);
    let url = format!("{api}/issues/{}", p.number);
    let comments = r.issue_comments.iter().filter(|c| c.pr == p.number).count();
    json!({
        "url": url,
        "repository_url": api,
        "labels_url": format!("{url}/labels{{/name}}"),
        "comments_url": format!("{url}/comments"),
        "events_url": format!("{url}/events"),
        "timeline_url": format!("{url}/timeline"),
        "html_url": html,
        "id": p.id + 1,
        "node_id": shapes::node_id("Issue", p.id + 1),
        "number": p.number,
        "title": p.title,
        "user": shapes::user(u, &p.user),
        "labels": [],
        "state": p.state,
        "locked": false,
        "assignee": null,
        "assignees": [],
        "milestone": null,
        "comments": comments,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "closed_at": p.closed_at,
        "author_association": "NONE",
        "active_lock_reason": null,
        "draft": false,
        "body": p.body,
        "reactions": {
            "url": format!("{url}/reactions"), "total_count": 0, "+1": 0, "-1": 0, "laugh": 0,
            "confused": 0, "heart": 0, "hooray": 0, "eyes": 0, "rocket": 0,
        },
        "performed_via_github_app": null,
        "state_reason": null,
        "pull_request": {
            "url": format!("{api}/pulls/{}", p.number),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "merged_at": p.merged_at,
        },
    })
}

pub(crate) fn issue_comment(hub: &Hub, owner: &str, repo: &str, c: &Comment, action: &str) {
    issue_comment_with(hub, owner, repo, c, action, json!({}));
}

pub(crate) fn issue_comment_with(
    hub: &Hub,
    owner: &str,
    repo: &str,
    c: &Comment,
    action: &str,
    extra: Value,
) {
    emit(hub, owner, repo, "issue_comment", &c.user, |u, r| {
        let issue = r.find_pull(c.pr).map_or(Value::Null, |p| issue(u, r, p));
        let mut v = json!({
            "action": action,
            "issue": issue,
            "comment": shapes::issue_comment(u, r, c),
        });
        merge_into(&mut v, extra);
        v
    });
}

pub(crate) fn review(hub: &Hub, owner: &str, repo: &str, rv: &Review) {
    emit(hub, owner, repo, "pull_request_review", &rv.user, |u, r| {
        let pr = r
            .find_pull(rv.pr)
            .map_or(Value::Null, |p| shapes::pull(u, r, p, hook_mergeability(p)));
        json!({"action": "submitted", "review": shapes::review(u, r, rv), "pull_request": pr})
    });
}

pub(crate) fn review_comment(hub: &Hub, owner: &str, repo: &str, c: &Comment, action: &str) {
    emit(
        hub,
        owner,
        repo,
        "pull_request_review_comment",
        &c.user,
        |u, r| {
            let pr = r
                .find_pull(c.pr)
                .map_or(Value::Null, |p| shapes::pull(u, r, p, hook_mergeability(p)));
            json!({"action": action, "comment": shapes::review_comment(u, r, c), "pull_request": pr})
        },
    );
}

/// A commit as the `head_commit` of suites and workflow runs (the hub does not read messages).
fn head_commit(sha: &str, at: &str) -> Value {
    let person = json!({"name": "Fakehub", "email": "fakehub@example.invalid"});
    json!({
        "id": sha, "tree_id": sha, "message": "commit", "timestamp": at,
        "author": person, "committer": person,
    })
}

fn suite(u: &Urls, r: &Repo, runs: &[&CheckRun]) -> Value {
    let first = runs[0];
    let done = runs.iter().all(|c| c.status == "completed");
    let conclusion = done.then(|| {
        if runs
            .iter()
            .any(|c| c.conclusion.as_deref() == Some("failure"))
        {
            "failure"
        } else {
            "success"
        }
    });
    let api = format!("{}/repos/{}/{}", u.api, r.owner, r.name);
    let pulls: Vec<Value> = r
        .pulls
        .iter()
        .filter(|p| p.number == first.pr && p.state == "open")
        .map(|p| shapes::pr_ref(u, r, p))
        .collect();
    let now = clock::now();
    json!({
        "id": first.suite_id,
        "node_id": shapes::node_id("CheckSuite", first.suite_id),
        "head_branch": first.head_ref,
        "head_sha": first.head_sha,
        "status": if done { "completed" } else { "in_progress" },
        "conclusion": conclusion,
        "url": format!("{api}/check-suites/{}", first.suite_id),
        "before": null,
        "after": first.head_sha,
        "pull_requests": pulls,
        "app": shapes::actions_app(u),
        "created_at": first.started_at,
        "updated_at": now,
        "latest_check_runs_count": runs.len(),
        "check_runs_url": format!("{api}/check-suites/{}/check-runs", first.suite_id),
        "head_commit": head_commit(&first.head_sha, &first.started_at),
        "rerequestable": true,
        "runs_rerequestable": true,
    })
}

pub(crate) fn check_run(hub: &Hub, owner: &str, repo: &str, run: &CheckRun, action: &str) {
    emit(hub, owner, repo, "check_run", crate::PAT_LOGIN, |u, r| {
        let mut check_run = shapes::check_run(u, r, run);
        check_run["check_suite"] = suite(u, r, &[run]);
        json!({"action": action, "check_run": check_run})
    });
}

/// `check_suite.completed` and `workflow_run.completed` for one finished run of the workflow.
pub(crate) fn suite_completed(hub: &Hub, owner: &str, repo: &str, runs: &[CheckRun]) {
    if runs.is_empty() {
        return;
    }
    let refs: Vec<&CheckRun> = runs.iter().collect();
    emit(
        hub,
        owner,
        repo,
        "check_suite",
        crate::PAT_LOGIN,
        |u, r| json!({"action": "completed", "check_suite": suite(u, r, &refs)}),
    );
    emit(
        hub,
        owner,
        repo,
        "workflow_run",
        crate::PAT_LOGIN,
        |u, r| workflow_run(u, r, &refs),
    );
}

fn workflow_run(u: &Urls, r: &Repo, runs: &[&CheckRun]) -> Value {
    let s = suite(u, r, runs);
    let first = runs[0];
    let api = format!("{}/repos/{}/{}", u.api, r.owner, r.name);
    let web = format!("{}/{}/{}", u.web, r.owner, r.name);
    let run_url = format!("{api}/actions/runs/{}", first.run_id);
    let workflow_id = 161_335u64;
    let actor = shapes::user(u, crate::PAT_LOGIN);
    let repo = repository(u, r);
    let workflow_url = format!("{api}/actions/workflows/{workflow_id}");
    json!({
        "action": "completed",
        "workflow": {
            "id": workflow_id,
            "node_id": shapes::node_id("Workflow", workflow_id),
            "name": "CI",
            "path": ".github/workflows/ci.yml",
            "state": "active",
            "created_at": r.created_at,
            "updated_at": r.created_at,
            "url": workflow_url,
            "html_url": format!("{web}/blob/{}/.github/workflows/ci.yml", r.default_branch),
            "badge_url": format!("{web}/workflows/CI/badge.svg"),
        },
        "workflow_run": {
            "id": first.run_id,
            "name": "CI",
            "node_id": shapes::node_id("WorkflowRun", first.run_id),
            "head_branch": first.head_ref,
            "head_sha": first.head_sha,
            "path": ".github/workflows/ci.yml",
            "display_title": "CI",
            "run_number": first.run_id,
            "event": "pull_request",
            "status": "completed",
            "conclusion": s["conclusion"],
            "workflow_id": workflow_id,
            "check_suite_id": first.suite_id,
            "check_suite_node_id": shapes::node_id("CheckSuite", first.suite_id),
            "url": run_url,
            "html_url": format!("{web}/actions/runs/{}", first.run_id),
            "pull_requests": s["pull_requests"],
            "created_at": first.started_at,
            "updated_at": clock::now(),
            "actor": actor,
            "triggering_actor": actor,
            "run_attempt": 1,
            "referenced_workflows": [],
            "run_started_at": first.started_at,
            "jobs_url": format!("{run_url}/jobs"),
            "logs_url": format!("{run_url}/logs"),
            "check_suite_url": format!("{api}/check-suites/{}", first.suite_id),
            "artifacts_url": format!("{run_url}/artifacts"),
            "cancel_url": format!("{run_url}/cancel"),
            "rerun_url": format!("{run_url}/rerun"),
            "previous_attempt_url": null,
            "workflow_url": workflow_url,
            "head_commit": {
                "id": first.head_sha, "tree_id": first.head_sha, "message": "commit",
                "timestamp": first.started_at,
                "author": {"name": "Fakehub", "email": "fakehub@example.invalid"},
                "committer": {"name": "Fakehub", "email": "fakehub@example.invalid"},
            },
            "repository": repo,
            "head_repository": repo,
        },
    })
}

pub(crate) fn status(hub: &Hub, owner: &str, repo: &str, st: &Status, branches: &[String]) {
    emit(hub, owner, repo, "status", crate::PAT_LOGIN, |u, r| {
        let api = format!("{}/repos/{}/{}", u.api, r.owner, r.name);
        let web = format!("{}/{}/{}", u.web, r.owner, r.name);
        let person =
            json!({"name": "Fakehub", "email": "fakehub@example.invalid", "date": st.created_at});
        let commit_url = format!("{api}/commits/{}", st.sha);
        let branches: Vec<Value> = branches
            .iter()
            .map(|b| json!({"name": b, "commit": {"sha": st.sha, "url": commit_url}, "protected": r.required_checks.contains_key(b)}))
            .collect();
        let json_status = shapes::status(u, r, st);
        json!({
            "id": st.id,
            "sha": st.sha,
            "name": r.full_name(),
            "target_url": json_status["target_url"],
            "avatar_url": json_status["avatar_url"],
            "context": st.context,
            "description": st.description,
            "state": st.state,
            "commit": {
                "sha": st.sha,
                "node_id": shapes::node_id("Commit", st.id),
                "commit": {
                    "author": person, "committer": person, "message": "commit",
                    "tree": {"sha": st.sha, "url": format!("{api}/git/trees/{}", st.sha)},
                    "url": format!("{api}/git/commits/{}", st.sha),
                    "comment_count": 0,
                    "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
                },
                "url": commit_url,
                "html_url": format!("{web}/commit/{}", st.sha),
                "comments_url": format!("{commit_url}/comments"),
                "author": null,
                "committer": null,
                "parents": [],
            },
            "branches": branches,
            "created_at": st.created_at,
            "updated_at": st.updated_at,
        })
    });
}
