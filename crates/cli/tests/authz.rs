//! The authorization matrix: every route of the server's own OpenAPI document × every kind of
//! caller — anonymous, an administrator, a project member, a non-technical member, a
//! non-member, a revoked token, an expired session, a run-token-like bearer — against the real
//! `atelier serve`, each answer checked against what that caller may do. A route of the document
//! that the matrix does not know fails the test, so a new route cannot ship unclassified.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    /// No authentication (the route checks its own credential, or none).
    Open,
    /// Any signed-in user, about themselves.
    SignedIn,
    /// Members of the project (and administrators); non-members get 404.
    Member,
    /// The project's owners (and administrators): members get 403, non-members 404.
    Owner,
    /// Administrators only: everyone else signed in gets 403.
    Admin,
}

/// The rule of each operation of the document.
fn rule(operation: &str) -> Option<Rule> {
    Some(match operation {
        "healthz" | "openapi" | "login" | "signal" | "githubWebhook" => Rule::Open,
        "me" | "logout" | "listTokens" | "createToken" | "revokeToken" | "listProjects"
        | "listTasks" | "serverStatus" | "listCredentials" | "setCredentials"
        | "deleteCredentials" | "userModels" | "setUserModels" | "stream" => Rule::SignedIn,
        "showTask" | "deleteTask" | "approveTask" | "answerTask" | "requestPlanChanges"
        | "listAttachments" | "getAttachment" | "addAttachment" | "runTask" | "stopTask"
        | "resumeTask" | "mergeTask" | "taskLogs" | "taskStream" | "createTask" | "listMembers" => {
            Rule::Member
        }
        // The tasks of the matrix belong to the administrator: to a member, someone else's.
        "updateProjectSettings" | "setMember" | "removeMember" | "editTaskDoc" => Rule::Owner,
        "addProject" | "listUsers" | "createUser" | "updateUser" | "audit" | "listPrompts"
        | "setPrompt" | "resetPrompt" | "listAllTokens" => Rule::Admin,
        _ => return None,
    })
}

/// Routes that change or end things run last, in this order.
fn order(operation: &str) -> u8 {
    match operation {
        "deleteCredentials" => 1,
        "stopTask" => 1,
        "mergeTask" => 2,
        "revokeToken" | "logout" => 3,
        "deleteTask" => 4,
        "removeMember" => 5,
        _ => 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Anonymous,
    Admin,
    Member,
    NonTechnical,
    NonMember,
    Revoked,
    ExpiredSession,
    RunToken,
}

struct Caller {
    kind: Kind,
    /// `Authorization: Bearer …`, or a `Cookie:` header.
    bearer: Option<String>,
    cookie: Option<String>,
    /// The task this caller's task routes act on.
    task: i64,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A user with an API token of theirs.
async fn create_user(world: &World, login: &str, technical: bool) -> String {
    people::create_user(world, login, technical).await;
    people::token_of(world, login, "matrix").await
}

async fn member_of_app(world: &World, login: &str) {
    people::add_member(world, "app", login, "member").await;
}

#[tokio::test]
async fn every_route_answers_every_caller_as_it_may() {
    let world = World::start(&full_pipeline(), &[]).await;
    let admin = world.server.client();
    let base = world.server.url().to_string();
    let document: Value = reqwest::get(format!("{base}/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let settings = admin.get("/api/projects").await.unwrap()[0]["settings"].clone();

    let member = create_user(&world, "member", true).await;
    member_of_app(&world, "member").await;
    let non_technical = create_user(&world, "nontech", false).await;
    member_of_app(&world, "nontech").await;
    let outsider = create_user(&world, "outsider", true).await;
    create_user(&world, "spare", true).await;
    member_of_app(&world, "spare").await;
    let revoked = create_user(&world, "gone", true).await;
    let gone: Value = world
        .server
        .client()
        .with_token(&revoked)
        .get("/api/tokens")
        .await
        .unwrap();
    let (status, _) = world
        .server
        .client()
        .with_token(&revoked)
        .request(
            Method::DELETE,
            &format!("/api/tokens/{}", gone[0]["id"]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    // A session that expired: written as the store keeps one, with its end in the past.
    let expired = "ats_expired_session_secret";
    world
        .db()
        .execute(
            "INSERT INTO sessions (user_id, hash, csrf, created_at, expires_at)
             SELECT id, ?1, 'csrf', 1, 2 FROM users WHERE login = 'member'",
            [sha256_hex(expired)],
        )
        .unwrap();
    // A spare token of the administrator, for the revoke route (whose other callers must not
    // reach it: someone else's token is "not found").
    let (status, spare) = admin
        .post("/api/tokens", &json!({"name": "spare"}))
        .await
        .unwrap();
    assert_eq!(status, 201, "{spare}");
    let admin_token_id = spare["id"].as_i64().unwrap();

    let mut tasks = Vec::new();
    for title in ["Admin's", "Member's", "Non-technical's", "Others'"] {
        tasks.push(world.new_task(title, true).await);
    }
    let callers = [
        Caller {
            kind: Kind::Anonymous,
            bearer: None,
            cookie: None,
            task: tasks[3],
        },
        Caller {
            kind: Kind::Admin,
            bearer: Some(world.server.token().to_string()),
            cookie: None,
            task: tasks[0],
        },
        Caller {
            kind: Kind::Member,
            bearer: Some(member),
            cookie: None,
            task: tasks[1],
        },
        Caller {
            kind: Kind::NonTechnical,
            bearer: Some(non_technical),
            cookie: None,
            task: tasks[2],
        },
        Caller {
            kind: Kind::NonMember,
            bearer: Some(outsider),
            cookie: None,
            task: tasks[3],
        },
        Caller {
            kind: Kind::Revoked,
            bearer: Some(revoked),
            cookie: None,
            task: tasks[3],
        },
        Caller {
            kind: Kind::ExpiredSession,
            bearer: None,
            cookie: Some(format!("atelier_session={expired}")),
            task: tasks[3],
        },
        Caller {
            kind: Kind::RunToken,
            bearer: Some("atr_0123456789abcdef0123456789abcdef".into()),
            cookie: None,
            task: tasks[3],
        },
    ];

    // Every operation of the document, with its rule.
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_string();
            let rule = rule(&id).unwrap_or_else(|| {
                panic!("the route {method} {path} ({id}) is not in the authorization matrix")
            });
            operations.push((order(&id), id, method.to_uppercase(), path.clone(), rule));
        }
    }
    operations.sort();

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for caller in &callers {
        for (_, id, method, path, rule) in &operations {
            // Removing a member acts on a spare one, so the callers after it keep theirs.
            let login = if id == "removeMember" {
                "spare"
            } else {
                "member"
            };
            let uri = path
                .replace("{id}", &caller.task.to_string())
                .replace("{project}", "app")
                .replace("{login}", login)
                .replace("{token}", &admin_token_id.to_string())
                .replace("{harness}", "claude-code")
                .replace("{name}", "matrix.txt")
                .replace("{file}", "review.md");
            let body = match id.as_str() {
                "createTask" => Some(json!({"project": "app", "title": "Matrix", "body": "x"})),
                "answerTask" => Some(json!({"text": "yes"})),
                "requestPlanChanges" => Some(json!({"feedback": "smaller steps"})),
                "editTaskDoc" => Some(json!({"doc": "# Edited"})),
                "addAttachment" => Some(json!({"content_base64": "aGVsbG8="})),
                "setPrompt" => Some(json!({"text": "Review {{title}} with care."})),
                "runTask" => Some(json!({})),
                "updateProjectSettings" => Some(settings.clone()),
                "setMember" => Some(json!({"role": "member"})),
                "createUser" => {
                    Some(json!({"login": format!("u{checked}"), "password": "a-long-password"}))
                }
                "createToken" => Some(json!({"name": "matrix"})),
                "updateUser" => Some(json!({"technical": true})),
                "setCredentials" => Some(json!({"env": {"ANTHROPIC_API_KEY": "sk-matrix"}})),
                "setUserModels" => Some(json!({"models": {}})),
                "addProject" => Some(json!({"path": world.add_repo(&format!("matrix{checked}"))})),
                "login" => Some(json!({"login": "nobody", "password": "wrong-password"})),
                "signal" => Some(json!({"task": caller.task, "signal": {"kind": "plan-ready"}})),
                "githubWebhook" => Some(json!({})),
                _ => None,
            };
            let mut request =
                http.request(method.parse::<Method>().unwrap(), format!("{base}{uri}"));
            if let Some(bearer) = &caller.bearer {
                request = request.bearer_auth(bearer);
            }
            if let Some(cookie) = &caller.cookie {
                request = request.header("cookie", cookie);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let status = request.send().await.unwrap().status().as_u16();
            checked += 1;
            let signed_in = matches!(
                caller.kind,
                Kind::Admin | Kind::Member | Kind::NonTechnical | Kind::NonMember
            );
            let allowed = |s: u16| !matches!(s, 401 | 403 | 404) && s < 500;
            let ok = match (rule, caller.kind) {
                (_, _) if status >= 500 => false,
                (Rule::Open, _) => match id.as_str() {
                    "healthz" | "openapi" => status == 200,
                    // Wrong password (and, after five, the address's limit); no run token; no
                    // signature: refused whoever calls.
                    "login" => status == 401 || status == 429,
                    "signal" | "githubWebhook" => status == 401,
                    _ => false,
                },
                (_, _) if !signed_in => status == 401,
                (_, Kind::Admin) => allowed(status),
                (Rule::SignedIn, _) => match id.as_str() {
                    "revokeToken" => status == 404, // someone else's token is "not found"
                    // Nothing stored for this caller yet is "not found" too.
                    "deleteCredentials" => allowed(status) || status == 404,
                    _ => allowed(status),
                },
                (Rule::Member, Kind::NonMember) => {
                    status == 404 || (id == "listTasks" && status == 200)
                }
                (Rule::Member, _) => allowed(status),
                (Rule::Owner, Kind::NonMember) => status == 404,
                (Rule::Owner, _) => status == 403,
                (Rule::Admin, _) => status == 403,
            };
            if !ok {
                failures.push(format!(
                    "{:?} {method} {uri} ({id}, {rule:?}) → {status}",
                    caller.kind
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} answers broke the matrix:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 8 * 25, "every caller × every route ({checked})");
}
