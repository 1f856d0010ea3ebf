//! The hub's data rendered as GitHub's JSON: users, repositories, pull requests, comments,
//! reviews, reactions, check runs, jobs and statuses. REST answers and webhook payloads share
//! these builders, so both have GitHub's shapes (checked against GitHub's OpenAPI description
//! by `tests/openapi.rs`).

use crate::state::{CheckRun, Comment, Pull, Reaction, Repo, Review, Status};
use base64::Engine as _;
use serde_json::{Value, json};

/// The server's two roots: `http://127.0.0.1:PORT` and `…/api/v3`.
pub(crate) struct Urls {
    pub web: String,
    pub api: String,
}

impl Urls {
    pub fn of(hub: &crate::state::Hub) -> Urls {
        Urls {
            web: hub.web_url(),
            api: hub.api_url(),
        }
    }

    fn repo_api(&self, r: &Repo) -> String {
        format!("{}/repos/{}/{}", self.api, r.owner, r.name)
    }

    fn repo_web(&self, r: &Repo) -> String {
        format!("{}/{}/{}", self.web, r.owner, r.name)
    }
}

/// GitHub's global node id: a base64 string naming the type and the id.
pub(crate) fn node_id(kind: &str, id: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("0{kind}:{id}"))
}

/// A stable id for a login.
pub(crate) fn user_id(login: &str) -> u64 {
    login.bytes().fold(1_469_598_103u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211) % 90_000_000
    }) + 10_000_000
}

pub(crate) fn user(u: &Urls, login: &str) -> Value {
    let id = user_id(login);
    let is_bot = login.ends_with("[bot]");
    let api = format!("{}/users/{}", u.api, login.replace("[bot]", "%5Bbot%5D"));
    json!({
        "login": login,
        "id": id,
        "node_id": node_id(if is_bot { "Bot" } else { "User" }, id),
        "avatar_url": format!("{}/avatars/u/{id}?v=4", u.web),
        "gravatar_id": "",
        "url": api,
        "html_url": format!("{}/{}", u.web, login.replace("[bot]", "")),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": if is_bot { "Bot" } else { "User" },
        "user_view_type": "public",
        "site_admin": false,
    })
}

pub(crate) fn repo(u: &Urls, r: &Repo) -> Value {
    let api = u.repo_api(r);
    let web = u.repo_web(r);
    let host = u.web.trim_start_matches("http://");
    let mut v = json!({
        "id": r.id,
        "node_id": node_id("Repository", r.id),
        "name": r.name,
        "full_name": r.full_name(),
        "private": true,
        "owner": user(u, &r.owner),
        "html_url": web,
        "description": null,
        "fork": false,
        "url": api,
        "clone_url": format!("{web}.git"),
        "git_url": format!("git://{host}/{}.git", r.full_name()),
        "ssh_url": format!("git@{host}:{}.git", r.full_name()),
        "svn_url": web,
        "mirror_url": null,
        "homepage": null,
        "language": null,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "size": 1,
        "default_branch": r.default_branch,
        "open_issues": open_pulls(r),
        "open_issues_count": open_pulls(r),
        "is_template": false,
        "topics": [],
        "has_issues": true,
        "has_projects": false,
        "has_wiki": false,
        "has_pages": false,
        "has_downloads": true,
        "has_discussions": false,
        "archived": false,
        "disabled": false,
        "visibility": "private",
        "license": null,
        "pushed_at": r.created_at,
        "created_at": r.created_at,
        "updated_at": r.created_at,
        "allow_forking": false,
        "web_commit_signoff_required": false,
        "permissions": {"admin": false, "maintain": false, "push": true, "triage": true, "pull": true},
        "allow_merge_commit": true,
        "allow_squash_merge": true,
        "allow_rebase_merge": true,
        "allow_auto_merge": false,
        "delete_branch_on_merge": false,
        "network_count": 0,
        "subscribers_count": 0,
    });
    let templates = [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ];
    if let Some(map) = v.as_object_mut() {
        for (key, tail) in templates {
            map.insert(key.into(), json!(format!("{api}{tail}")));
        }
    }
    v
}

fn open_pulls(r: &Repo) -> usize {
    r.pulls.iter().filter(|p| p.state == "open").count()
}

/// Mergeability as the PR endpoint reports it: `mergeable` and `mergeable_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mergeability {
    pub mergeable: Option<bool>,
}

impl Mergeability {
    pub fn state(self) -> &'static str {
        match self.mergeable {
            Some(true) => "clean",
            Some(false) => "dirty",
            None => "unknown",
        }
    }
}

pub(crate) fn pull(u: &Urls, r: &Repo, p: &Pull, m: Mergeability) -> Value {
    let api = u.repo_api(r);
    let web = u.repo_web(r);
    let url = format!("{api}/pulls/{}", p.number);
    let html = format!("{web}/pull/{}", p.number);
    let issue = format!("{api}/issues/{}", p.number);
    let repo_json = repo(u, r);
    let side = |name: &str, sha: &str| {
        json!({
            "label": format!("{}:{name}", r.owner),
            "ref": name,
            "sha": sha,
            "user": user(u, &r.owner),
            "repo": repo_json,
        })
    };
    let comments = r.issue_comments.iter().filter(|c| c.pr == p.number).count();
    let review_comments = r
        .review_comments
        .iter()
        .filter(|c| c.pr == p.number)
        .count();
    json!({
        "url": url,
        "id": p.id,
        "node_id": node_id("PullRequest", p.id),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": issue,
        "commits_url": format!("{url}/commits"),
        "review_comments_url": format!("{url}/comments"),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{issue}/comments"),
        "statuses_url": format!("{api}/statuses/{}", p.head_sha),
        "number": p.number,
        "state": p.state,
        "locked": false,
        "title": p.title,
        "user": user(u, &p.user),
        "body": p.body,
        "labels": [],
        "milestone": null,
        "active_lock_reason": null,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "closed_at": p.closed_at,
        "merged_at": p.merged_at,
        "merge_commit_sha": p.merge_commit_sha,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": side(&p.head_ref, &p.head_sha),
        "base": side(&p.base_ref, &p.base_sha),
        "_links": {
            "self": {"href": url},
            "html": {"href": html},
            "issue": {"href": issue},
            "comments": {"href": format!("{issue}/comments")},
            "review_comments": {"href": format!("{url}/comments")},
            "review_comment": {"href": format!("{api}/pulls/comments{{/number}}")},
            "commits": {"href": format!("{url}/commits")},
            "statuses": {"href": format!("{api}/statuses/{}", p.head_sha)},
        },
        "author_association": "NONE",
        "auto_merge": null,
        "draft": false,
        "merged": p.merged,
        "mergeable": m.mergeable,
        "rebaseable": m.mergeable,
        "mergeable_state": m.state(),
        "merged_by": if p.merged { user(u, crate::PAT_LOGIN) } else { Value::Null },
        "comments": comments,
        "review_comments": review_comments,
        "maintainer_can_modify": false,
        "commits": 1,
        "additions": 1,
        "deletions": 0,
        "changed_files": 1,
    })
}

pub(crate) fn issue_comment(u: &Urls, r: &Repo, c: &Comment) -> Value {
    let api = u.repo_api(r);
    json!({
        "id": c.id,
        "node_id": node_id("IssueComment", c.id),
        "url": format!("{api}/issues/comments/{}", c.id),
        "html_url": format!("{}/pull/{}#issuecomment-{}", u.repo_web(r), c.pr, c.id),
        "body": c.body,
        "user": user(u, &c.user),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "issue_url": format!("{api}/issues/{}", c.pr),
        "author_association": c.association,
        "performed_via_github_app": null,
        "minimized": null,
        "pin": null,
        "reactions": reaction_rollup(&format!("{api}/issues/comments/{}/reactions", c.id)),
    })
}

fn reaction_rollup(url: &str) -> Value {
    json!({
        "url": url, "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "confused": 0,
        "heart": 0, "hooray": 0, "eyes": 0, "rocket": 0,
    })
}

pub(crate) fn review_comment(u: &Urls, r: &Repo, c: &Comment) -> Value {
    let api = u.repo_api(r);
    let url = format!("{api}/pulls/comments/{}", c.id);
    let html = format!("{}/pull/{}#discussion_r{}", u.repo_web(r), c.pr, c.id);
    let pr_url = format!("{api}/pulls/{}", c.pr);
    let (path, line, commit_id, review_id) = match &c.review {
        Some(place) => (
            place.path.as_str(),
            place.line,
            place.commit_id.as_str(),
            place.review_id,
        ),
        None => ("", 1, "", 0),
    };
    let mut v = json!({
        "url": url,
        "pull_request_review_id": review_id,
        "id": c.id,
        "node_id": node_id("PullRequestReviewComment", c.id),
        "diff_hunk": format!("@@ -{line},1 +{line},1 @@\n+changed"),
        "path": path,
        "position": 1,
        "original_position": 1,
        "commit_id": commit_id,
        "original_commit_id": commit_id,
        "user": user(u, &c.user),
        "body": c.body,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "html_url": html,
        "pull_request_url": pr_url,
        "author_association": c.association,
        "_links": {
            "self": {"href": url},
            "html": {"href": html},
            "pull_request": {"href": pr_url},
        },
        "start_line": null,
        "original_start_line": null,
        "start_side": null,
        "line": line,
        "original_line": line,
        "side": "RIGHT",
        "subject_type": "line",
        "reactions": reaction_rollup(&format!("{url}/reactions")),
    });
    if let (Some(map), Some(parent)) = (v.as_object_mut(), c.in_reply_to) {
        map.insert("in_reply_to_id".into(), json!(parent));
    }
    v
}

pub(crate) fn review(u: &Urls, r: &Repo, rv: &Review) -> Value {
    let html = format!(
        "{}/pull/{}#pullrequestreview-{}",
        u.repo_web(r),
        rv.pr,
        rv.id
    );
    let pr_url = format!("{}/pulls/{}", u.repo_api(r), rv.pr);
    json!({
        "id": rv.id,
        "node_id": node_id("PullRequestReview", rv.id),
        "user": user(u, &rv.user),
        "body": rv.body,
        "state": rv.state,
        "html_url": html,
        "pull_request_url": pr_url,
        "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
        "submitted_at": rv.submitted_at,
        "commit_id": rv.commit_id,
        "author_association": rv.association,
    })
}

pub(crate) fn reaction(u: &Urls, re: &Reaction) -> Value {
    json!({
        "id": re.id,
        "node_id": node_id("Reaction", re.id),
        "user": user(u, &re.user),
        "content": re.content,
        "created_at": re.created_at,
    })
}

/// The GitHub Actions app, as check runs name it.
pub(crate) fn actions_app(u: &Urls) -> Value {
    json!({
        "id": 15368,
        "slug": "github-actions",
        "client_id": "Iv1.0000000000000000",
        "node_id": node_id("Integration", 15368),
        "owner": user(u, "github"),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": format!("{}/apps/github-actions", u.web),
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2019-12-10T19:04:12Z",
        "permissions": {"actions": "write", "checks": "write", "contents": "write", "metadata": "read", "pull_requests": "write", "statuses": "write"},
        "events": ["check_run", "check_suite", "pull_request", "push", "status", "workflow_run"],
    })
}

pub(crate) fn job_html_url(u: &Urls, r: &Repo, c: &CheckRun) -> String {
    format!("{}/actions/runs/{}/job/{}", u.repo_web(r), c.run_id, c.id)
}

/// The PR reference check runs and suites carry.
pub(crate) fn pr_ref(u: &Urls, r: &Repo, p: &Pull) -> Value {
    let repo_ref = json!({"id": r.id, "url": u.repo_api(r), "name": r.name});
    json!({
        "id": p.id,
        "number": p.number,
        "url": format!("{}/pulls/{}", u.repo_api(r), p.number),
        "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": repo_ref},
        "base": {"ref": p.base_ref, "sha": p.base_sha, "repo": repo_ref},
    })
}

pub(crate) fn check_run(u: &Urls, r: &Repo, c: &CheckRun) -> Value {
    let api = u.repo_api(r);
    let html = job_html_url(u, r, c);
    let (title, summary, text) = match (&c.failure, c.conclusion.as_deref()) {
        (Some(f), _) => (
            Some(format!("{} failed", c.name)),
            Some(format!("Step `{}` failed.", f.step)),
            Some(f.log.clone()),
        ),
        (None, Some(conclusion)) => (Some(format!("{} {conclusion}", c.name)), None, None),
        (None, None) => (None, None, None),
    };
    let annotations = c.failure.as_ref().map_or(0, |f| f.annotations.len());
    let pulls: Vec<Value> = r
        .pulls
        .iter()
        .filter(|p| p.number == c.pr && p.state == "open")
        .map(|p| pr_ref(u, r, p))
        .collect();
    json!({
        "id": c.id,
        "head_sha": c.head_sha,
        "node_id": node_id("CheckRun", c.id),
        "external_id": c.id.to_string(),
        "url": format!("{api}/check-runs/{}", c.id),
        "html_url": html,
        "details_url": html,
        "status": c.status,
        "conclusion": c.conclusion,
        "started_at": c.started_at,
        "completed_at": c.completed_at,
        "output": {
            "title": title,
            "summary": summary,
            "text": text,
            "annotations_count": annotations,
            "annotations_url": format!("{api}/check-runs/{}/annotations", c.id),
        },
        "name": c.name,
        "check_suite": {"id": c.suite_id},
        "app": actions_app(u),
        "pull_requests": pulls,
    })
}

pub(crate) fn annotations(u: &Urls, r: &Repo, c: &CheckRun) -> Value {
    let list: Vec<Value> = c
        .failure
        .iter()
        .flat_map(|f| &f.annotations)
        .map(|(path, line, message)| {
            json!({
                "path": path,
                "start_line": line,
                "end_line": line,
                "start_column": null,
                "end_column": null,
                "annotation_level": "failure",
                "title": format!("{}: {path}#L{line}", c.name),
                "message": message,
                "raw_details": null,
                "blob_href": format!("{}/blob/{}/{path}", u.repo_web(r), c.head_sha),
            })
        })
        .collect();
    Value::Array(list)
}

/// The steps of a job: two passing steps, the scripted one, and the job's wrap-up.
pub(crate) fn job_steps(c: &CheckRun) -> Vec<(String, &'static str, Option<&'static str>)> {
    let done = c.status == "completed";
    let (main, main_status, main_conclusion) = match (&c.failure, done) {
        (Some(f), _) => (f.step.clone(), "completed", Some("failure")),
        (None, true) => (format!("Run {}", c.name), "completed", Some("success")),
        (None, false) => (format!("Run {}", c.name), "in_progress", None),
    };
    let after = match (done, c.failure.is_some()) {
        (false, _) => ("queued", None),
        (true, true) => ("completed", Some("skipped")),
        (true, false) => ("completed", Some("success")),
    };
    vec![
        ("Set up job".into(), "completed", Some("success")),
        (
            "Run actions/checkout@v4".into(),
            "completed",
            Some("success"),
        ),
        (main, main_status, main_conclusion),
        ("Complete job".into(), after.0, after.1),
    ]
}

pub(crate) fn job(u: &Urls, r: &Repo, c: &CheckRun) -> Value {
    let api = u.repo_api(r);
    let steps: Vec<Value> = job_steps(c)
        .into_iter()
        .enumerate()
        .map(|(i, (name, status, conclusion))| {
            let started = status != "queued";
            json!({
                "name": name,
                "status": status,
                "conclusion": conclusion,
                "number": i + 1,
                "started_at": started.then(|| c.started_at.clone()),
                "completed_at": if status == "completed" { c.completed_at.clone().or_else(|| Some(c.started_at.clone())) } else { None },
            })
        })
        .collect();
    json!({
        "id": c.id,
        "run_id": c.run_id,
        "run_url": format!("{api}/actions/runs/{}", c.run_id),
        "run_attempt": 1,
        "node_id": node_id("CheckRun", c.id),
        "head_sha": c.head_sha,
        "url": format!("{api}/actions/jobs/{}", c.id),
        "html_url": job_html_url(u, r, c),
        "status": c.status,
        "conclusion": c.conclusion,
        "created_at": c.started_at,
        "started_at": c.started_at,
        "completed_at": c.completed_at,
        "name": c.name,
        "steps": steps,
        "check_run_url": format!("{api}/check-runs/{}", c.id),
        "labels": ["ubuntu-latest"],
        "runner_id": 1,
        "runner_name": "GitHub Actions 1",
        "runner_group_id": 2,
        "runner_group_name": "GitHub Actions",
        "workflow_name": "CI",
        "head_branch": c.head_ref,
    })
}

pub(crate) fn status(u: &Urls, r: &Repo, s: &Status) -> Value {
    json!({
        "url": format!("{}/statuses/{}", u.repo_api(r), s.sha),
        "avatar_url": format!("{}/avatars/u/1?v=4", u.web),
        "id": s.id,
        "node_id": node_id("StatusContext", s.id),
        "state": s.state,
        "description": s.description,
        "target_url": format!("{}/ci/{}", u.repo_web(r), s.id),
        "context": s.context,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    })
}

/// The combined status of `sha`: the latest status per context.
pub(crate) fn combined_status(u: &Urls, r: &Repo, sha: &str) -> Value {
    let mut latest: Vec<&Status> = Vec::new();
    for s in r.statuses.iter().rev().filter(|s| s.sha == sha) {
        if !latest.iter().any(|l| l.context == s.context) {
            latest.push(s);
        }
    }
    let state = if latest
        .iter()
        .any(|s| s.state == "failure" || s.state == "error")
    {
        "failure"
    } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    };
    let statuses: Vec<Value> = latest.iter().map(|s| status(u, r, s)).collect();
    let mut repo_min = repo(u, r);
    if let Some(map) = repo_min.as_object_mut() {
        for key in ["permissions", "network_count", "subscribers_count"] {
            map.remove(key);
        }
    }
    json!({
        "state": state,
        "statuses": statuses,
        "sha": sha,
        "total_count": latest.len(),
        "repository": repo_min,
        "commit_url": format!("{}/commits/{sha}", u.repo_api(r)),
        "url": format!("{}/commits/{sha}/status", u.repo_api(r)),
    })
}
