//! The fake GitHub over real HTTP and real git: REST round trips, credentials, faults, git smart
//! HTTP, scripted CI with signed webhooks, mergeability and the humans' side of a PR.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use fakehub::{
    Auth, CiKind, CiOutcome, CiScript, Fault, FaultKind, Options, TEST_APP_PRIVATE_KEY,
    TEST_APP_PUBLIC_KEY,
};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use support::{DEADLINE, SECRET, TOKEN, World, expected_signature, git, send};

#[tokio::test]
async fn pull_requests_round_trip_with_etags_and_credentials() {
    let w = World::start().await;
    let n = w.open_pr().await;

    let (status, dup) = w
        .post(
            "/repos/acme/app/pulls",
            json!({"title": "again", "head": "feature", "base": "main"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        dup["errors"][0]["message"],
        "A pull request already exists for acme:feature."
    );
    let (status, none) = w
        .post(
            "/repos/acme/app/pulls",
            json!({"title": "nothing", "head": "main", "base": "main"}),
        )
        .await;
    assert_eq!(status, 422, "{none}");

    let (status, list) = w
        .get("/repos/acme/app/pulls?head=acme:feature&state=all")
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["number"], n);
    let (_, other) = w.get("/repos/acme/app/pulls?head=acme:nope").await;
    assert_eq!(other, json!([]));

    let (status, pr) = w.get(&format!("/repos/acme/app/pulls/{n}")).await;
    assert_eq!(status, 200);
    assert_eq!(pr["state"], "open");
    assert_eq!(pr["merged"], false);
    assert_eq!(pr["mergeable"], true);
    assert_eq!(pr["mergeable_state"], "clean");
    assert_eq!(pr["head"]["ref"], "feature");
    assert_eq!(pr["base"]["ref"], "main");
    assert_eq!(pr["user"]["login"], fakehub::PAT_LOGIN);
    assert_eq!(
        pr["head"]["sha"].as_str().unwrap(),
        w.hub.pulls("acme", "app")[0].head_sha
    );

    let (status, patched) = w
        .patch(
            &format!("/repos/acme/app/pulls/{n}"),
            json!({"body": "New body"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["body"], "New body");
    assert_eq!(w.hub.pulls("acme", "app")[0].body, "New body");

    // ETag → 304 with no body, not counted against the rate limit.
    let path = format!("/repos/acme/app/pulls/{n}");
    let first = w.req(Method::GET, &path).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let remaining = first.headers()["x-ratelimit-remaining"].clone();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-reset",
        "x-ratelimit-used",
        "x-github-request-id",
    ] {
        assert!(first.headers().contains_key(h), "{h}");
    }
    assert_eq!(first.headers()["x-ratelimit-resource"], "core");
    let again = w
        .req(Method::GET, &path)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["x-ratelimit-remaining"], remaining);
    assert!(again.bytes().await.unwrap().is_empty());

    // Credentials.
    let (status, body) = send(w.http.get(w.url(&path))).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Bad credentials");
    let (status, _) = send(
        w.http
            .get(w.url(&path))
            .header("Authorization", "token wrong"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        w.http
            .get(w.url(&path))
            .header("Authorization", format!("token {TOKEN}")),
    )
    .await;
    assert_eq!(status, 200);
    let recorded = w.hub.requests();
    assert!(
        recorded
            .iter()
            .any(|r| r.auth == Auth::Token("wrong".into()) && r.status == Some(401))
    );

    let (status, body) = w.get("/repos/acme/app/no/such/thing").await;
    assert_eq!((status, body["message"].as_str()), (404, Some("Not Found")));
}

#[tokio::test]
async fn faults_answer_before_routing() {
    let w = World::start().await;
    let fault = |kind| Fault {
        method: Some("GET".into()),
        path_contains: "/repos/acme/app".into(),
        times: 1,
        kind,
    };
    w.hub.fail_next(fault(FaultKind::RateLimited {
        retry_after_secs: 7,
    }));
    let resp = w.req(Method::GET, "/repos/acme/app").send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");

    w.hub.fail_next(fault(FaultKind::SecondaryLimit {
        retry_after_secs: 3,
    }));
    let resp = w.req(Method::GET, "/repos/acme/app").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("You have exceeded a secondary rate limit")
    );

    w.hub.fail_next(fault(FaultKind::PrimaryLimitExhausted {
        reset_in_secs: 60,
    }));
    let resp = w.req(Method::GET, "/repos/acme/app").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let reset: u64 = resp.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > 1_700_000_000);

    w.hub.fail_next(Fault {
        method: None,
        path_contains: "/pulls".into(),
        times: 2,
        kind: FaultKind::Status {
            code: 502,
            body: "{\"message\":\"Server Error\"}".into(),
        },
    });
    for _ in 0..2 {
        assert_eq!(w.get("/repos/acme/app/pulls").await.0, 502);
    }
    assert_eq!(w.get("/repos/acme/app/pulls").await.0, 200);

    w.hub.fail_next(fault(FaultKind::Hang));
    let err = w
        .req(Method::GET, "/repos/acme/app")
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(w.get("/repos/acme/app").await.0, 200);
    let hung = w.hub.requests();
    assert!(
        hung.iter()
            .any(|r| r.path == "/api/v3/repos/acme/app" && r.status.is_none())
    );
}

fn app_jwt(app_id: u64, iat_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"iat": now + iat_offset - 30, "exp": now + iat_offset + 540, "iss": app_id.to_string()});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(TEST_APP_PRIVATE_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

#[tokio::test]
async fn installation_tokens_come_from_app_jwts_and_expire() {
    let w = World::start_with(Options {
        installation_token_ttl: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    w.hub.register_app(77, TEST_APP_PUBLIC_KEY, 990);
    let url = w.url("/app/installations/990/access_tokens");

    let (status, _) = send(w.http.post(&url).bearer_auth(app_jwt(77, 3600))).await;
    assert_eq!(status, 401, "a JWT from the future is refused");
    let (status, _) = send(w.http.post(&url).bearer_auth(TOKEN)).await;
    assert_eq!(status, 401, "a token is no JWT");
    let (status, body) = send(w.http.post(&url).bearer_auth(app_jwt(77, 0))).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ghs_"));
    assert_eq!(body["repository_selection"], "all");
    assert_eq!(w.hub.installation_tokens_issued(), 1);
    assert!(
        w.hub
            .requests()
            .iter()
            .any(|r| r.auth == Auth::AppJwt { app_id: 77 })
    );

    let (status, repo) = send(w.http.get(w.url("/repos/acme/app")).bearer_auth(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(repo["full_name"], "acme/app");
    // The token also works for git.
    let url = w
        .hub
        .clone_url("acme", "app")
        .replace("http://", &format!("http://x-access-token:{token}@"));
    git(w.dir.path(), &["ls-remote", &url]).await;

    testkit::wait_until("the installation token to expire", DEADLINE, || async {
        let (status, _) = send(w.http.get(w.url("/repos/acme/app")).bearer_auth(&token)).await;
        (status == 401).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn git_over_http_needs_a_token_and_a_push_moves_the_pr() {
    let w = World::start().await;
    w.hub.script_ci(
        "acme",
        "app",
        vec![CiScript {
            name: "tests".into(),
            kind: CiKind::CheckRun,
            outcomes: vec![CiOutcome::Pass],
        }],
    );
    let n = w.open_pr().await;

    let anonymous = w.hub.clone_url("acme", "app");
    let target = w.dir.path().join("anon");
    let err = support::try_git(
        w.dir.path(),
        &["clone", "--quiet", &anonymous, target.to_str().unwrap()],
    )
    .await
    .unwrap_err();
    // Git asks for a username (prompts are off): the hub answered 401 with a Basic challenge.
    assert!(format!("{err:#}").contains("Username"), "{err:#}");
    assert!(
        w.hub
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/info/refs") && r.status == Some(401))
    );

    let clone = w.clone("clone").await;
    git(&clone, &["checkout", "--quiet", "feature"]).await;
    let sha = support::commit(&clone, "src/more.txt", "more\n", "More").await;
    git(&clone, &["push", "--quiet", "origin", "feature"]).await;

    let pulls = w.hub.pulls("acme", "app");
    assert_eq!(pulls[0].head_sha, sha);
    let sync = w
        .delivery("pull_request", Some("synchronize"), |b| {
            b["after"] == sha.as_str()
        })
        .await;
    assert_eq!(sync.body["number"], n);
    assert_eq!(sync.body["pull_request"]["head"]["sha"], sha.as_str());
    let (_, runs) = w
        .get(&format!("/repos/acme/app/commits/{sha}/check-runs"))
        .await;
    assert_eq!(runs["total_count"], 1);
    assert_eq!(runs["check_runs"][0]["name"], "tests");
    let bare_sha =
        testkit::git(&w.hub.bare_path("acme", "app"), &["rev-parse", "feature"]).unwrap();
    assert_eq!(bare_sha.trim(), sha);
}

#[tokio::test]
async fn scripted_ci_fails_then_passes_with_signed_webhooks() {
    let w = World::start().await;
    w.hub.register_app(77, TEST_APP_PUBLIC_KEY, 990);
    w.hub.script_ci(
        "acme",
        "app",
        vec![
            CiScript {
                name: "tests".into(),
                kind: CiKind::CheckRun,
                outcomes: vec![
                    CiOutcome::Fail {
                        failing_step: "cargo test".into(),
                        log: "test adds ... FAILED\nassertion failed: 2 == 3".into(),
                        annotations: vec![("src/lib.rs".into(), 12, "assertion failed".into())],
                    },
                    CiOutcome::Pass,
                ],
            },
            CiScript {
                name: "lint".into(),
                kind: CiKind::Status,
                outcomes: vec![CiOutcome::Pass],
            },
        ],
    );
    w.hub.set_required_checks(
        "acme",
        "app",
        "main",
        Some(vec!["tests".into(), "lint".into()]),
    );
    let n = w.open_pr().await;
    let head = w.hub.pulls("acme", "app")[0].head_sha.clone();

    let done = w
        .delivery("check_run", Some("completed"), |b| {
            b["check_run"]["head_sha"] == head.as_str()
        })
        .await;
    assert_eq!(done.body["check_run"]["conclusion"], "failure");
    assert_eq!(done.body["check_run"]["pull_requests"][0]["number"], n);
    assert_eq!(done.body["installation"]["id"], 990);
    let (_, runs) = w
        .get(&format!("/repos/acme/app/commits/{head}/check-runs"))
        .await;
    let run = &runs["check_runs"][0];
    assert_eq!(
        (run["status"].as_str(), run["conclusion"].as_str()),
        (Some("completed"), Some("failure"))
    );
    assert_eq!(run["app"]["slug"], "github-actions");
    let id = run["id"].as_u64().unwrap();

    let (_, notes) = w
        .get(&format!("/repos/acme/app/check-runs/{id}/annotations"))
        .await;
    assert_eq!(notes[0]["path"], "src/lib.rs");
    assert_eq!(notes[0]["start_line"], 12);
    assert_eq!(notes[0]["message"], "assertion failed");

    let (_, job) = w.get(&format!("/repos/acme/app/actions/jobs/{id}")).await;
    assert_eq!(job["conclusion"], "failure");
    let failed: Vec<_> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["conclusion"] == "failure")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "cargo test");

    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let logs_path = format!("/repos/acme/app/actions/jobs/{id}/logs");
    let resp = no_redirect
        .get(w.url(&logs_path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let log = reqwest::get(&location).await.unwrap().text().await.unwrap();
    assert!(log.contains("##[group]Run cargo test"), "{log}");
    assert!(log.contains("assertion failed: 2 == 3"), "{log}");
    assert!(log.contains("##[error]"), "{log}");
    assert!(
        log.lines()
            .all(|l| l.as_bytes()[..4].iter().all(u8::is_ascii_digit)),
        "{log}"
    );

    let (_, combined) = w
        .get(&format!("/repos/acme/app/commits/{head}/status"))
        .await;
    assert_eq!(combined["state"], "success");
    assert_eq!(combined["statuses"][0]["context"], "lint");
    let (_, required) = w
        .get("/repos/acme/app/branches/main/protection/required_status_checks")
        .await;
    assert_eq!(required["contexts"], json!(["tests", "lint"]));
    let (status, _) = w
        .get("/repos/acme/app/branches/feature/protection/required_status_checks")
        .await;
    assert_eq!(status, 404);

    // The second head passes.
    let clone = w.clone("clone").await;
    git(&clone, &["checkout", "--quiet", "feature"]).await;
    let fixed = support::commit(
        &clone,
        "src/lib.txt",
        "one\ntwo\nthree\nfour\nfive\n",
        "Fix",
    )
    .await;
    git(&clone, &["push", "--quiet", "origin", "feature"]).await;
    let done = w
        .delivery("check_run", Some("completed"), |b| {
            b["check_run"]["head_sha"] == fixed.as_str()
        })
        .await;
    assert_eq!(done.body["check_run"]["conclusion"], "success");
    w.delivery("check_suite", Some("completed"), |b| {
        b["check_suite"]["head_sha"] == fixed.as_str()
    })
    .await;
    w.delivery("workflow_run", Some("completed"), |b| {
        b["workflow_run"]["head_sha"] == fixed.as_str()
    })
    .await;
    w.delivery("status", None, |b| {
        b["sha"] == fixed.as_str() && b["state"] == "success"
    })
    .await;

    // Every delivery reached the receiver, signed with the secret.
    let deliveries = w.hub.deliveries();
    let received = w.hooks.received();
    assert_eq!(received.len(), deliveries.len());
    for (d, r) in deliveries.iter().zip(&received) {
        assert_eq!(d.status, Some(200));
        assert_eq!(
            (d.event.as_str(), d.id.as_str()),
            (r.event.as_str(), r.delivery.as_str())
        );
        assert_eq!(
            r.signature.as_deref(),
            Some(expected_signature(SECRET, &r.body).as_str())
        );
        assert_eq!(r.user_agent, "GitHub-Hookshot/fake");
        assert!(!r.hook_id.is_empty());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap(),
            d.body
        );
    }

    // Redelivery repeats id, body and signature; raw deliveries carry what they are given.
    let first = &received[0];
    assert_eq!(w.hub.redeliver(&first.delivery).await, Some(200));
    let again = w.hooks.received().last().unwrap().clone();
    assert_eq!(
        (&again.delivery, &again.body, &again.signature),
        (&first.delivery, &first.body, &first.signature)
    );
    assert_eq!(
        w.hub.deliver_raw("ping", b"{}", None, "forged-1").await,
        200
    );
    assert_eq!(w.hooks.received().last().unwrap().signature, None);
}

#[tokio::test]
async fn a_conflicting_base_commit_makes_the_pr_dirty() {
    let w = World::start().await;
    let n = w.open_pr().await;
    let path = format!("/repos/acme/app/pulls/{n}");
    assert_eq!(w.get(&path).await.1["mergeable_state"], "clean");

    let sha = w
        .hub
        .commit_to_base(
            "acme",
            "app",
            "src/lib.txt",
            "one\n2\nthree\nFOUR\n",
            "Conflict",
        )
        .await;
    let (_, pr) = w.get(&path).await;
    assert_eq!(pr["mergeable"], false);
    assert_eq!(pr["mergeable_state"], "dirty");
    assert_eq!(pr["base"]["sha"], sha.as_str());

    w.hub.set_mergeable("acme", "app", n, Some(true));
    assert_eq!(w.get(&path).await.1["mergeable_state"], "clean");
    w.hub.set_mergeable("acme", "app", n, None);
    assert_eq!(w.get(&path).await.1["mergeable"], false);
}

#[tokio::test]
async fn humans_comment_review_react_and_merge() {
    let w = World::start().await;
    let n = w.open_pr().await;
    let c1 = w
        .hub
        .comment("acme", "app", n, "alice", "MEMBER", "Please rename it");
    w.delivery("issue_comment", Some("created"), |b| {
        b["comment"]["id"] == c1
    })
    .await;
    let rv = w
        .hub
        .review("acme", "app", n, "alice", "MEMBER", "Looks fine");
    w.delivery("pull_request_review", Some("submitted"), |b| {
        b["review"]["id"] == rv
    })
    .await;
    let rc = w.hub.review_comment(
        "acme",
        "app",
        n,
        "alice",
        "MEMBER",
        "src/lib.txt",
        4,
        "Why four?",
    );
    w.delivery("pull_request_review_comment", Some("created"), |b| {
        b["comment"]["id"] == rc
    })
    .await;

    // The bot answers through REST.
    let (status, reply) = w
        .post(
            &format!("/repos/acme/app/issues/{n}/comments"),
            json!({"body": "On it"}),
        )
        .await;
    assert_eq!(status, 201);
    let reply_id = reply["id"].as_u64().unwrap();
    let (status, edited) = w
        .patch(
            &format!("/repos/acme/app/issues/comments/{reply_id}"),
            json!({"body": "Done"}),
        )
        .await;
    assert_eq!((status, edited["body"].as_str()), (200, Some("Done")));
    let (status, thread) = w
        .post(
            &format!("/repos/acme/app/pulls/{n}/comments/{rc}/replies"),
            json!({"body": "Because"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(thread["in_reply_to_id"], rc);
    for (path, id) in [("issues", c1), ("pulls", rc)] {
        let url = format!("/repos/acme/app/{path}/comments/{id}/reactions");
        assert_eq!(w.post(&url, json!({"content": "eyes"})).await.0, 201);
        assert_eq!(w.post(&url, json!({"content": "eyes"})).await.0, 200);
    }
    assert_eq!(
        w.hub.reactions("issue", c1),
        vec![(fakehub::PAT_LOGIN.to_string(), "eyes".to_string())]
    );
    assert_eq!(w.hub.reactions("review_comment", rc).len(), 1);

    let comments = w.hub.issue_comments("acme", "app", n);
    assert_eq!(
        comments.iter().map(|c| c.body.as_str()).collect::<Vec<_>>(),
        ["Please rename it", "Done"]
    );
    let review_comments = w.hub.review_comments("acme", "app", n);
    assert_eq!(review_comments[1].in_reply_to, Some(rc));

    // Pages and `since`.
    let resp = w
        .req(
            Method::GET,
            &format!("/repos/acme/app/issues/{n}/comments?per_page=1"),
        )
        .send()
        .await
        .unwrap();
    let link = resp.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("rel=\"next\"") && link.contains("page=2"),
        "{link}"
    );
    let (_, page2) = w
        .get(&format!(
            "/repos/acme/app/issues/{n}/comments?per_page=1&page=2"
        ))
        .await;
    assert_eq!(page2[0]["body"], "Done");
    let (_, later) = w
        .get(&format!(
            "/repos/acme/app/issues/{n}/comments?since=2999-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(later, json!([]));
    let (_, reviews) = w.get(&format!("/repos/acme/app/pulls/{n}/reviews")).await;
    assert_eq!(reviews[0]["state"], "COMMENTED");
    assert_eq!(reviews[0]["user"]["login"], "alice");
    let (_, listed) = w.get(&format!("/repos/acme/app/pulls/{n}/comments")).await;
    assert_eq!(listed[0]["path"], "src/lib.txt");
    assert_eq!(listed[0]["line"], 4);

    w.hub.close("acme", "app", n);
    w.delivery("pull_request", Some("closed"), |b| {
        b["pull_request"]["merged"] == false
    })
    .await;
    w.hub.reopen("acme", "app", n);
    w.delivery("pull_request", Some("reopened"), |_| true).await;
    w.hub.merge("acme", "app", n).await;
    let merged = w
        .delivery("pull_request", Some("closed"), |b| {
            b["pull_request"]["merged"] == true
        })
        .await;
    assert!(merged.body["pull_request"]["merge_commit_sha"].is_string());
    let pr = &w.hub.pulls("acme", "app")[0];
    assert_eq!((pr.state.as_str(), pr.merged), ("closed", true));
    let (_, got) = w.get(&format!("/repos/acme/app/pulls/{n}")).await;
    assert_eq!(
        (got["merged"].as_bool(), got["state"].as_str()),
        (Some(true), Some("closed"))
    );
    let log = testkit::git(
        &w.hub.bare_path("acme", "app"),
        &["log", "--format=%s", "main"],
    )
    .unwrap();
    assert!(
        log.starts_with(&format!("Merge pull request #{n}")),
        "{log}"
    );
}

#[tokio::test]
async fn pending_ci_stays_in_progress() {
    let w = World::start_with(Options {
        ci_delay: Duration::from_millis(50),
        ..Options::default()
    })
    .await;
    let pending = |kind| CiScript {
        name: "slow".into(),
        kind,
        outcomes: vec![CiOutcome::Pending],
    };
    w.hub.script_ci(
        "acme",
        "app",
        vec![pending(CiKind::CheckRun), pending(CiKind::Status)],
    );
    w.open_pr().await;
    let head = w.hub.pulls("acme", "app")[0].head_sha.clone();
    w.delivery("check_run", Some("created"), |_| true).await;
    w.delivery("status", None, |b| b["state"] == "pending")
        .await;
    let (_, runs) = w
        .get(&format!("/repos/acme/app/commits/{head}/check-runs"))
        .await;
    assert_eq!(runs["check_runs"][0]["status"], "in_progress");
    assert_eq!(runs["check_runs"][0]["conclusion"], serde_json::Value::Null);
    let (_, combined) = w
        .get(&format!("/repos/acme/app/commits/{head}/status"))
        .await;
    assert_eq!(combined["state"], "pending");
    assert!(
        w.hub
            .deliveries()
            .iter()
            .all(|d| d.event != "check_suite" && d.action.as_deref() != Some("completed"))
    );
}
