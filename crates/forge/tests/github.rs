//! The GitHub forge against `fakehub` (a fake GitHub on a loopback port: REST under `/api/v3`,
//! git smart HTTP, scripted CI, injectable faults) with real git repositories in temp folders.

// Helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use fakehub::{Auth, CiKind, CiOutcome, CiScript, FakeHub, Fault, FaultKind, Options};
use forge::{
    CheckKind, CheckState, CommentKind, Forge, ForgeError, GitHubAuth, GitHubConfig, GitHubForge,
    Mergeable, PublishRequest, PullRequest,
};
use testkit::SampleRepo;

const OWNER: &str = "octo";
const REPO: &str = "app";
const TOKEN: &str = "ghp_fakehubtoken0123456789";
const BRANCH: &str = "atelier/1-add-feature";

struct Env {
    _tmp: tempfile::TempDir,
    hub: FakeHub,
    repo: SampleRepo,
    forge: GitHubForge,
}

/// Limits small enough for tests: 2 s per call, 4 attempts, backoff from 20 ms.
fn config(hub: &FakeHub, auth: GitHubAuth) -> GitHubConfig {
    let mut config =
        GitHubConfig::new(hub.api_url(), OWNER, REPO, hub.clone_url(OWNER, REPO), auth);
    config.call_timeout = Duration::from_secs(2);
    config.max_attempts = 4;
    config.max_backoff = Duration::from_secs(5);
    config.retry_base = Duration::from_millis(20);
    config
}

async fn env_with(options: Options, auth: impl FnOnce(&FakeHub) -> GitHubAuth) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let repo = testkit::sample_repo(tmp.path()).unwrap();
    let hub = FakeHub::start(options).await;
    hub.create_repo(OWNER, REPO, &repo.path, "main").await;
    hub.add_token(TOKEN);
    let forge = GitHubForge::new(config(&hub, auth(&hub))).unwrap();
    Env {
        _tmp: tmp,
        hub,
        repo,
        forge,
    }
}

async fn env() -> Env {
    env_with(Options::default(), |_| GitHubAuth::Token(TOKEN.to_string())).await
}

impl Env {
    /// Commits `content` to `src/feature.txt` on the task branch (created on first use).
    fn commit(&self, content: &str) -> String {
        let current = self.repo.git(&["branch", "--show-current"]).unwrap();
        if current.trim() != BRANCH {
            self.repo.git(&["switch", "--quiet", "-c", BRANCH]).unwrap();
        }
        testkit::commit_file(&self.repo.path, "feature.txt", content, content).unwrap()
    }

    fn request(&self, existing: Option<&PullRequest>) -> PublishRequest {
        PublishRequest {
            repo: self.repo.path.clone(),
            remote: "origin".to_string(),
            branch: BRANCH.to_string(),
            base: "main".to_string(),
            title: "Add the feature".to_string(),
            body: "It adds the feature.".to_string(),
            existing: existing.cloned(),
        }
    }

    async fn publish(&self) -> PullRequest {
        self.forge.publish(&self.request(None)).await.unwrap()
    }

    fn remote_sha(&self, branch: &str) -> Option<String> {
        let bare = self.hub.bare_path(OWNER, REPO);
        testkit::git(
            &bare,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ],
        )
        .ok()
        .map(|s| s.trim().to_string())
    }

    /// The `count` checks of the pull request's head once none is pending.
    async fn checks_settled(&self, pr: &PullRequest, count: usize) -> forge::Checks {
        testkit::wait_until("CI to finish", Duration::from_secs(20), || async {
            let checks = self
                .forge
                .checks(&self.repo.path, pr, &pr.head_sha)
                .await
                .ok()?;
            (checks.checks.len() == count
                && checks.checks.iter().all(|c| c.state != CheckState::Pending))
            .then_some(checks)
        })
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn publish_pushes_with_the_token_only_in_gits_environment_and_opens_one_pr() {
    let env = env().await;
    let sha = env.commit("one");
    let pr = env.publish().await;
    assert_eq!(pr.number, Some(1));
    assert_eq!(pr.head_sha, sha);
    assert_eq!(pr.branch, BRANCH);
    assert!(pr.url.ends_with("/pull/1"), "{}", pr.url);
    assert_eq!(env.remote_sha(BRANCH), Some(sha.clone()));
    let pulls = env.hub.pulls(OWNER, REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        (
            pulls[0].head_ref.as_str(),
            pulls[0].head_sha.as_str(),
            pulls[0].base_ref.as_str()
        ),
        (BRANCH, sha.as_str(), "main")
    );
    assert_eq!(pulls[0].title, "Add the feature");

    let requests = env.hub.requests();
    // git authenticated with Basic x-access-token:<token>; the API with the bearer token.
    assert!(
        requests.iter().any(|r| r.path.contains("git-receive-pack")
            && r.auth
                == Auth::Basic {
                    user: "x-access-token".to_string(),
                    password: TOKEN.to_string()
                }),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.path.starts_with("/api/v3/"))
            .all(|r| r.auth == Auth::Token(TOKEN.to_string())),
        "{requests:#?}"
    );
    // Nothing of the token was written to the repository's git config.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"));
    let config = std::fs::read_to_string(env.repo.path.join(".git/config")).unwrap();
    assert!(
        !config.contains(TOKEN) && !config.contains(&basic),
        "{config}"
    );
    assert!(!config.contains("extraHeader"), "{config}");

    // Publishing again (new commit, new body) updates the one pull request.
    let sha2 = env.commit("two");
    let mut again = env.request(Some(&pr));
    again.body = "It adds the feature, better.".to_string();
    let pr2 = env.forge.publish(&again).await.unwrap();
    assert_eq!(
        (pr2.number, pr2.head_sha.as_str()),
        (Some(1), sha2.as_str())
    );
    let pulls = env.hub.pulls(OWNER, REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].body, "It adds the feature, better.");
    assert_eq!(pulls[0].head_sha, sha2);
}

#[tokio::test]
async fn a_publish_retried_after_a_crash_finds_the_pushed_branch_and_the_pr() {
    let env = env().await;
    let sha = env.commit("one");
    let first = env.publish().await;
    // The earlier attempt pushed and GitHub opened the PR, but Atelier recorded nothing.
    let retried = env.publish().await;
    assert_eq!(retried.number, first.number);
    assert_eq!(retried.head_sha, sha);
    assert_eq!(env.hub.pulls(OWNER, REPO).len(), 1);

    // A PR closed unmerged is reopened, not duplicated.
    env.hub.close(OWNER, REPO, 1);
    let reopened = env.forge.publish(&env.request(Some(&first))).await.unwrap();
    assert_eq!(reopened.number, Some(1));
    let pulls = env.hub.pulls(OWNER, REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].state, "open");
}

#[tokio::test]
async fn the_lease_refuses_to_overwrite_a_branch_someone_else_moved() {
    let env = env().await;
    env.commit("one");
    let pr = env.publish().await;
    // Someone pushes another commit to the branch on GitHub.
    let bare = env.hub.bare_path(OWNER, REPO);
    env.repo
        .git(&["switch", "--quiet", "-c", "intruder", "main"])
        .unwrap();
    let theirs = testkit::commit_file(&env.repo.path, "other.txt", "x", "theirs").unwrap();
    env.repo
        .git(&[
            "push",
            "--quiet",
            "--force",
            bare.to_str().unwrap(),
            &format!("intruder:refs/heads/{BRANCH}"),
        ])
        .unwrap();
    env.repo.git(&["switch", "--quiet", BRANCH]).unwrap();
    env.commit("two");
    let err = env
        .forge
        .publish(&env.request(Some(&pr)))
        .await
        .expect_err("the lease must refuse");
    assert!(matches!(err, ForgeError::BranchMoved { .. }), "{err:?}");
    assert_eq!(env.remote_sha(BRANCH), Some(theirs));
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn state_merge_refusal_branch_deletion_and_base_fetch() {
    let env = env().await;
    env.commit("one");
    let pr = env.publish().await;
    let path = env.repo.path.clone();
    let state = env.forge.pr_state(&path, &pr).await.unwrap();
    assert!(state.open && !state.merged);
    assert_eq!(state.head_sha, pr.head_sha);
    env.hub.set_mergeable(OWNER, REPO, 1, Some(false));
    assert_eq!(
        env.forge.pr_state(&path, &pr).await.unwrap().mergeable,
        Mergeable::Conflicting
    );
    env.hub.set_mergeable(OWNER, REPO, 1, Some(true));
    assert_eq!(
        env.forge.pr_state(&path, &pr).await.unwrap().mergeable,
        Mergeable::Yes
    );

    let err = env.forge.merge(&path, &pr).await.expect_err("no merging");
    assert!(matches!(err, ForgeError::Unsupported(_)), "{err:?}");
    assert!(
        err.to_string().contains("merge the pull request on GitHub"),
        "{err}"
    );

    let base = env
        .hub
        .commit_to_base(OWNER, REPO, "base.txt", "b", "base moves")
        .await;
    assert_eq!(
        env.forge.fetch_base(&path, "origin", "main").await.unwrap(),
        base
    );
    assert_eq!(
        env.repo
            .git(&["rev-parse", "refs/remotes/origin/main"])
            .unwrap()
            .trim(),
        base
    );

    assert!(!env.forge.is_merged(&path, &pr).await.unwrap());
    env.hub.merge(OWNER, REPO, 1).await;
    assert!(env.forge.is_merged(&path, &pr).await.unwrap());
    let state = env.forge.pr_state(&path, &pr).await.unwrap();
    assert!(state.merged && !state.open);

    assert!(
        env.forge
            .delete_branch(&path, "origin", BRANCH)
            .await
            .unwrap()
    );
    assert_eq!(env.remote_sha(BRANCH), None);
    assert!(
        !env.forge
            .delete_branch(&path, "origin", BRANCH)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn failing_checks_come_with_annotations_and_the_failing_steps_log_then_pass() {
    let env = env().await;
    env.hub.script_ci(
        OWNER,
        REPO,
        vec![
            CiScript {
                name: "test".to_string(),
                kind: CiKind::CheckRun,
                outcomes: vec![
                    CiOutcome::Fail {
                        failing_step: "cargo test".to_string(),
                        log: "running 3 tests\ntest adds ... FAILED\nassertion failed: 2 + 2 == 5"
                            .to_string(),
                        annotations: vec![(
                            "src/lib.rs".to_string(),
                            12,
                            "assertion failed".to_string(),
                        )],
                    },
                    CiOutcome::Pass,
                ],
            },
            CiScript {
                name: "lint".to_string(),
                kind: CiKind::Status,
                outcomes: vec![CiOutcome::Pass],
            },
        ],
    );
    env.commit("one");
    let pr = env.publish().await;
    let checks = env.checks_settled(&pr, 2).await;
    assert_eq!(checks.overall(), CheckState::Failed);
    assert_eq!(checks.required, None);
    let names: Vec<(&str, CheckKind, CheckState)> = checks
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.kind, c.state))
        .collect();
    assert_eq!(
        names,
        vec![
            ("lint", CheckKind::Status, CheckState::Passed),
            ("test", CheckKind::CheckRun, CheckState::Failed)
        ]
    );
    let failed = checks.failed();
    let failures = env.forge.check_failures(&pr, &failed).await.unwrap();
    assert_eq!(failures.len(), 1);
    let failure = &failures[0];
    assert_eq!(failure.name, "test");
    assert_eq!(failure.annotations.len(), 1);
    assert_eq!(failure.annotations[0].path, "src/lib.rs");
    assert_eq!(failure.annotations[0].start_line, 12);
    assert_eq!(failure.annotations[0].message, "assertion failed");
    let log = failure.log_excerpt.as_deref().expect("a log excerpt");
    assert!(log.starts_with("##[group]Run cargo test"), "{log}");
    assert!(log.contains("assertion failed: 2 + 2 == 5"), "{log}");
    assert!(log.contains("##[error]"), "{log}");
    assert!(!log.contains("Syncing repository"), "{log}");
    assert!(!log.contains("cargo build"), "{log}");
    assert!(!log.contains(".0000000Z"), "timestamps are stripped: {log}");
    // The log storage got no credentials.
    let requests = env.hub.requests();
    let storage: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("job-logs"))
        .collect();
    assert!(!storage.is_empty(), "{requests:#?}");
    assert!(storage.iter().all(|r| r.auth == Auth::None), "{storage:#?}");

    // The fix passes.
    let sha2 = env.commit("two");
    let pr2 = env.forge.publish(&env.request(Some(&pr))).await.unwrap();
    assert_eq!(pr2.head_sha, sha2);
    let checks = env.checks_settled(&pr2, 2).await;
    assert_eq!(checks.overall(), CheckState::Passed, "{checks:#?}");
}

#[tokio::test]
async fn required_checks_come_from_branch_protection() {
    let env = env().await;
    env.hub.script_ci(
        OWNER,
        REPO,
        vec![CiScript {
            name: "flaky".to_string(),
            kind: CiKind::Status,
            outcomes: vec![CiOutcome::Fail {
                failing_step: "flake".to_string(),
                log: String::new(),
                annotations: vec![],
            }],
        }],
    );
    env.hub
        .set_required_checks(OWNER, REPO, "main", Some(vec!["build".to_string()]));
    env.commit("one");
    let pr = env.publish().await;
    let checks = testkit::wait_until("the status to fail", Duration::from_secs(20), || async {
        let checks = env
            .forge
            .checks(&env.repo.path, &pr, &pr.head_sha)
            .await
            .ok()?;
        checks
            .checks
            .iter()
            .any(|c| c.state == CheckState::Failed)
            .then_some(checks)
    })
    .await
    .unwrap();
    assert_eq!(checks.required, Some(vec!["build".to_string()]));
    // The failing check is not required, and the required one has not reported.
    assert_eq!(checks.overall(), CheckState::Pending);
    let failures = env
        .forge
        .check_failures(&pr, &[checks.checks[0].clone()])
        .await
        .unwrap();
    assert_eq!(failures[0].summary.as_deref(), Some("flake failed"));
}

#[tokio::test]
async fn comments_of_every_kind_are_read_acknowledged_and_answered_once() {
    let env = env().await;
    env.commit("one");
    let pr = env.publish().await;
    let issue = env
        .hub
        .comment(OWNER, REPO, 1, "ann", "OWNER", "Please rename `x`.\nThanks");
    let review = env
        .hub
        .review(OWNER, REPO, 1, "bob", "MEMBER", "Looks close.");
    let inline = env.hub.review_comment(
        OWNER,
        REPO,
        1,
        "cid",
        "CONTRIBUTOR",
        "feature.txt",
        1,
        "Typo here.",
    );
    let comments = env.forge.comments(&pr).await.unwrap();
    let seen: Vec<(CommentKind, u64, &str, &str)> = comments
        .iter()
        .map(|c| (c.kind, c.id, c.author.as_str(), c.association.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (CommentKind::Issue, issue, "ann", "OWNER"),
            (CommentKind::Review, review, "bob", "MEMBER"),
            (CommentKind::ReviewComment, inline, "cid", "CONTRIBUTOR"),
        ]
    );
    let inline_comment = comments[2].clone();
    assert_eq!(inline_comment.path.as_deref(), Some("feature.txt"));
    assert_eq!(inline_comment.line, Some(1));

    for comment in &comments {
        env.forge.acknowledge(&pr, comment).await.unwrap();
    }
    assert!(
        env.hub
            .reactions("issue", issue)
            .iter()
            .any(|(_, c)| c == "eyes")
    );
    assert!(
        env.hub
            .reactions("review_comment", inline)
            .iter()
            .any(|(_, c)| c == "eyes")
    );

    for _ in 0..2 {
        env.forge
            .reply(&pr, &comments[0], "reply-1", "Renamed.")
            .await
            .unwrap();
        env.forge
            .reply(&pr, &inline_comment, "reply-3", "Fixed the typo.")
            .await
            .unwrap();
    }
    let replies: Vec<_> = env
        .hub
        .issue_comments(OWNER, REPO, 1)
        .into_iter()
        .filter(|c| c.body.contains("atelier:reply:reply-1"))
        .collect();
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert!(
        replies[0].body.starts_with("> Please rename `x`."),
        "{}",
        replies[0].body
    );
    let thread: Vec<_> = env
        .hub
        .review_comments(OWNER, REPO, 1)
        .into_iter()
        .filter(|c| c.body.contains("atelier:reply:reply-3"))
        .collect();
    assert_eq!(thread.len(), 1, "{thread:#?}");
    assert_eq!(thread[0].in_reply_to, Some(inline));
    // Atelier's own replies are not comments for it to answer.
    assert_eq!(env.forge.comments(&pr).await.unwrap().len(), 3);
}

#[tokio::test]
async fn app_installation_tokens_are_issued_reused_and_refreshed() {
    let app = |hub: &FakeHub| {
        hub.register_app(42, fakehub::TEST_APP_PUBLIC_KEY, 4242);
        GitHubAuth::App {
            app_id: 42,
            private_key_pem: fakehub::TEST_APP_PRIVATE_KEY.to_string(),
            installation_id: 4242,
        }
    };
    let env = env_with(Options::default(), app).await;
    env.commit("one");
    let pr = env.publish().await;
    assert_eq!(env.hub.installation_tokens_issued(), 1);
    env.forge.pr_state(&env.repo.path, &pr).await.unwrap();
    env.forge.comments(&pr).await.unwrap();
    assert_eq!(
        env.hub.installation_tokens_issued(),
        1,
        "the token is reused"
    );
    let requests = env.hub.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path.ends_with("/access_tokens") && r.auth == Auth::AppJwt { app_id: 42 }),
        "{requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.path.contains("git-receive-pack")
            && matches!(&r.auth, Auth::Basic { user, .. } if user == "x-access-token")),
        "{requests:#?}"
    );

    // Tokens that live less than the refresh margin are bought again for each use.
    let short = Options {
        installation_token_ttl: Duration::from_secs(120),
        ..Options::default()
    };
    let env = env_with(short, app).await;
    env.commit("one");
    let pr = env.publish().await;
    let issued = env.hub.installation_tokens_issued();
    env.forge.pr_state(&env.repo.path, &pr).await.unwrap();
    assert!(env.hub.installation_tokens_issued() > issued);
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_server_errors_retried() {
    let env = env().await;
    env.commit("one");
    let pr = env.publish().await;
    let path = env.repo.path.clone();
    let fault = |kind| Fault {
        method: Some("GET".to_string()),
        path_contains: "/pulls/1".to_string(),
        times: 1,
        kind,
    };

    env.hub.fail_next(fault(FaultKind::RateLimited {
        retry_after_secs: 1,
    }));
    let started = Instant::now();
    assert!(env.forge.pr_state(&path, &pr).await.unwrap().open);
    assert!(started.elapsed() >= Duration::from_secs(1));

    env.hub.fail_next(fault(FaultKind::SecondaryLimit {
        retry_after_secs: 1,
    }));
    let started = Instant::now();
    assert!(env.forge.pr_state(&path, &pr).await.unwrap().open);
    assert!(started.elapsed() >= Duration::from_secs(1));

    env.hub
        .fail_next(fault(FaultKind::PrimaryLimitExhausted { reset_in_secs: 1 }));
    assert!(env.forge.pr_state(&path, &pr).await.unwrap().open);

    env.hub.fail_next(Fault {
        times: 2,
        ..fault(FaultKind::Status {
            code: 502,
            body: "Bad gateway".to_string(),
        })
    });
    assert!(env.forge.pr_state(&path, &pr).await.unwrap().open);

    // More failures than attempts: the error names the call.
    env.hub.fail_next(Fault {
        times: 4,
        ..fault(FaultKind::Status {
            code: 503,
            body: "Unavailable".to_string(),
        })
    });
    let err = env.forge.pr_state(&path, &pr).await.expect_err("gives up");
    let text = err.to_string();
    assert!(text.contains("/pulls/1") && text.contains("503"), "{text}");
    assert!(!text.contains(TOKEN));
    let statuses: Vec<Option<u16>> = env
        .hub
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pulls/1"))
        .map(|r| r.status)
        .collect();
    assert!(
        statuses.iter().filter(|s| **s == Some(503)).count() >= 4,
        "{statuses:?}"
    );

    // A limit that lifts later than Atelier waits fails with when to retry.
    env.hub.fail_next(Fault {
        times: 10,
        ..fault(FaultKind::RateLimited {
            retry_after_secs: 3600,
        })
    });
    let started = Instant::now();
    let err = env.forge.pr_state(&path, &pr).await.expect_err("too long");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, ForgeError::RateLimited { .. }), "{err:?}");
    assert!(err.to_string().contains("retry after"), "{err}");
}

#[tokio::test]
async fn a_hung_call_times_out_within_its_deadline_and_is_retried() {
    let env = env().await;
    env.commit("one");
    let pr = env.publish().await;
    env.hub.fail_next(Fault {
        method: Some("GET".to_string()),
        path_contains: "/pulls/1".to_string(),
        times: 1,
        kind: FaultKind::Hang,
    });
    let started = Instant::now();
    assert!(env.forge.pr_state(&env.repo.path, &pr).await.unwrap().open);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");

    // Hanging every time: a timeout error naming the call.
    env.hub.fail_next(Fault {
        method: Some("GET".to_string()),
        path_contains: "/pulls/1".to_string(),
        times: 10,
        kind: FaultKind::Hang,
    });
    let err = env
        .forge
        .pr_state(&env.repo.path, &pr)
        .await
        .expect_err("times out");
    assert!(matches!(err, ForgeError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("/pulls/1"), "{err}");
}

#[tokio::test]
async fn polling_is_conditional_and_unchanged_answers_are_304s() {
    let env = env().await;
    env.commit("one");
    let pr = env.publish().await;
    let first = env.forge.pr_state(&env.repo.path, &pr).await.unwrap();
    let second = env.forge.pr_state(&env.repo.path, &pr).await.unwrap();
    assert_eq!(first, second);
    env.forge.comments(&pr).await.unwrap();
    env.forge.comments(&pr).await.unwrap();
    let requests = env.hub.requests();
    let statuses = |suffix: &str| -> Vec<Option<u16>> {
        requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(suffix))
            .map(|r| r.status)
            .collect()
    };
    assert_eq!(statuses("/pulls/1"), vec![Some(200), Some(304)]);
    assert_eq!(statuses("/issues/1/comments"), vec![Some(200), Some(304)]);
}
