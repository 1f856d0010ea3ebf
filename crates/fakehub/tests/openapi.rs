//! The fake's JSON has GitHub's shapes: every JSON body it answers on the REST endpoints it
//! serves is validated against the response schema GitHub documents for that operation and
//! status (`@octokit/openapi`), and every webhook body it sends against the schema of its
//! event and action (`@octokit/openapi-webhooks`). The descriptions are the pinned npm packages
//! `scripts/test` installs into `.tools/` (or `ATELIER_OCTOKIT_DIR`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use fakehub::{CiKind, CiOutcome, CiScript, TEST_APP_PRIVATE_KEY, TEST_APP_PUBLIC_KEY};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use support::World;

/// The folder holding `@octokit/openapi` and `@octokit/openapi-webhooks`; fails when they are
/// not installed (the test is compiled as ignored outside CI when they are missing: `build.rs`).
fn octokit_dir() -> PathBuf {
    let dir = std::env::var_os("ATELIER_OCTOKIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/node_modules")
        });
    let needed = [
        "@octokit/openapi/generated/api.github.com.json",
        "@octokit/openapi-webhooks/generated/api.github.com.json",
    ];
    if let Some(missing) = needed.iter().find(|f| !dir.join(f).is_file()) {
        panic!(
            "GitHub's OpenAPI descriptions are needed: {} does not exist; run the tests with \
             `scripts/test`, which installs the pinned @octokit packages into .tools/ (or point \
             ATELIER_OCTOKIT_DIR at a node_modules folder holding them)",
            dir.join(missing).display()
        );
    }
    dir
}

/// OpenAPI 3.0's `nullable: true` → a JSON Schema union with `null`.
fn nullable_to_union(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                nullable_to_union(child);
            }
            if map.remove("nullable") == Some(Value::Bool(true)) {
                let rest = Value::Object(std::mem::take(map));
                map.insert("anyOf".into(), json!([{"type": "null"}, rest]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_union),
        _ => {}
    }
}

/// One OpenAPI document: its `components` (for `$ref`s) and a way to validate against a schema.
struct Description {
    doc: Value,
    /// Validators built so far, by their schema's text (building one indexes the components).
    built:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

impl Description {
    fn load(path: PathBuf, convert: bool) -> Description {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        if convert {
            nullable_to_union(&mut doc["components"]);
            nullable_to_union(&mut doc["paths"]);
        }
        Description {
            doc,
            built: Default::default(),
        }
    }

    /// Follows a local `$ref` (`#/components/...`).
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => v,
        }
    }

    /// The part of `components` that `schema` reaches through `$ref`s (indexing all of them
    /// for every validator would be slow).
    fn reachable(&self, schema: &Value) -> Value {
        let mut out = json!({});
        let mut todo = vec![schema.clone()];
        while let Some(v) = todo.pop() {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let pointer = r.trim_start_matches('#');
                        if out.pointer(pointer).is_none() {
                            let target = self.doc.pointer(pointer).cloned().unwrap_or(Value::Null);
                            let parts: Vec<&str> = pointer
                                .trim_start_matches("/components/")
                                .split('/')
                                .collect();
                            if let [kind, name] = parts[..] {
                                out[kind][name] = target.clone();
                            }
                            todo.push(target);
                        }
                    }
                    todo.extend(map.into_iter().map(|(_, child)| child));
                }
                Value::Array(items) => todo.extend(items),
                _ => {}
            }
        }
        out
    }

    /// The problems of `instance` against `schema` (whose `$ref`s point into this document).
    fn problems(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let key = schema.to_string();
        let cached = self.built.lock().unwrap().get(&key).cloned();
        let validator = cached.unwrap_or_else(|| {
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.reachable(schema),
                "allOf": [schema],
            });
            let built = jsonschema::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap();
            let built = std::sync::Arc::new(built);
            self.built.lock().unwrap().insert(key, built.clone());
            built
        });
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }
}

/// One JSON answer of the fake.
struct Answer {
    method: Method,
    template: &'static str,
    status: u16,
    body: Value,
}

/// Drives the fake's endpoints, keeping each JSON answer with its operation.
struct Tour<'a> {
    w: &'a World,
    answers: Vec<Answer>,
}

impl Tour<'_> {
    async fn call(
        &mut self,
        method: Method,
        template: &'static str,
        vars: &[(&str, String)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut path = template.to_string();
        for (k, v) in vars {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        let mut req = self.w.req(
            method.clone(),
            &path.replace("{owner}", "acme").replace("{repo}", "app"),
        );
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.keep(method, template, req).await
    }

    async fn keep(
        &mut self,
        method: Method,
        template: &'static str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let (status, body) = support::send(req).await;
        if !body.is_null() && !body.is_string() {
            self.answers.push(Answer {
                method,
                template,
                status,
                body: body.clone(),
            });
        }
        (status, body)
    }
}

fn app_jwt() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iat": now - 30, "exp": now + 540, "iss": "77"});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(TEST_APP_PRIVATE_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

/// Every endpoint, in success and in the errors a client meets; every kind of webhook.
async fn tour(w: &World) -> Vec<Answer> {
    use Method as M;
    let mut t = Tour {
        w,
        answers: Vec::new(),
    };
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
                        log: "assertion failed".into(),
                        annotations: vec![("src/lib.rs".into(), 3, "boom".into())],
                    },
                    CiOutcome::Pass,
                ],
            },
            CiScript {
                name: "lint".into(),
                kind: CiKind::Status,
                outcomes: vec![CiOutcome::Fail {
                    failing_step: "clippy".into(),
                    log: String::new(),
                    annotations: vec![],
                }],
            },
        ],
    );
    w.hub
        .set_required_checks("acme", "app", "main", Some(vec!["tests".into()]));

    let tokens = "/app/installations/{installation_id}/access_tokens";
    let url = w.url("/app/installations/990/access_tokens");
    t.keep(M::POST, tokens, w.http.post(&url).bearer_auth(app_jwt()))
        .await;
    t.keep(M::POST, tokens, w.http.post(&url).bearer_auth("nope"))
        .await;

    let repo = "/repos/{owner}/{repo}";
    t.call(M::GET, repo, &[], None).await;
    let pulls = "/repos/{owner}/{repo}/pulls";
    let new_pr = json!({"title": "Add four", "head": "acme:feature", "base": "main", "body": "b"});
    let (_, pr) = t.call(M::POST, pulls, &[], Some(new_pr.clone())).await;
    t.call(M::POST, pulls, &[], Some(new_pr)).await;
    let n = pr["number"].to_string();
    let head = pr["head"]["sha"].as_str().unwrap().to_string();
    t.call(
        M::GET,
        "/repos/{owner}/{repo}/pulls?head=acme:feature&state=all",
        &[],
        None,
    )
    .await;
    let pull = "/repos/{owner}/{repo}/pulls/{pull_number}";
    let pr_vars = [("pull_number", n.clone())];
    t.call(M::GET, pull, &pr_vars, None).await;
    t.call(
        M::PATCH,
        pull,
        &pr_vars,
        Some(json!({"title": "Add 4", "body": "c"})),
    )
    .await;
    t.call(M::GET, pull, &[("pull_number", "999".into())], None)
        .await;

    w.delivery("check_run", Some("completed"), |b| {
        b["check_run"]["head_sha"] == head.as_str()
    })
    .await;
    let runs = "/repos/{owner}/{repo}/commits/{ref}/check-runs";
    let (_, listed) = t.call(M::GET, runs, &[("ref", head.clone())], None).await;
    t.call(M::GET, runs, &[("ref", "feature".into())], None)
        .await;
    let id = listed["check_runs"][0]["id"].to_string();
    t.call(
        M::GET,
        "/repos/{owner}/{repo}/commits/{ref}/status",
        &[("ref", head.clone())],
        None,
    )
    .await;
    t.call(
        M::GET,
        "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations",
        &[("check_run_id", id.clone())],
        None,
    )
    .await;
    t.call(
        M::GET,
        "/repos/{owner}/{repo}/actions/jobs/{job_id}",
        &[("job_id", id)],
        None,
    )
    .await;
    let protection = "/repos/{owner}/{repo}/branches/{branch}/protection/required_status_checks";
    t.call(M::GET, protection, &[("branch", "main".into())], None)
        .await;
    t.call(M::GET, protection, &[("branch", "feature".into())], None)
        .await;

    let c = w.hub.comment(
        "acme",
        "app",
        pr["number"].as_u64().unwrap(),
        "alice",
        "MEMBER",
        "hi",
    );
    let issue_comments = "/repos/{owner}/{repo}/issues/{issue_number}/comments";
    let issue_vars = [("issue_number", n.clone())];
    let (_, mine) = t
        .call(
            M::POST,
            issue_comments,
            &issue_vars,
            Some(json!({"body": "ok"})),
        )
        .await;
    t.call(M::GET, issue_comments, &issue_vars, None).await;
    t.call(
        M::PATCH,
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        &[("comment_id", mine["id"].to_string())],
        Some(json!({"body": "done"})),
    )
    .await;
    let issue_reactions = "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions";
    for _ in 0..2 {
        t.call(
            M::POST,
            issue_reactions,
            &[("comment_id", c.to_string())],
            Some(json!({"content": "eyes"})),
        )
        .await;
    }
    let number = pr["number"].as_u64().unwrap();
    let rc = w.hub.review_comment(
        "acme",
        "app",
        number,
        "alice",
        "MEMBER",
        "src/lib.txt",
        4,
        "why?",
    );
    w.hub
        .review("acme", "app", number, "bob", "CONTRIBUTOR", "fine");
    t.call(
        M::GET,
        "/repos/{owner}/{repo}/pulls/{pull_number}/comments",
        &pr_vars,
        None,
    )
    .await;
    t.call(
        M::POST,
        "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
        &[("pull_number", n.clone()), ("comment_id", rc.to_string())],
        Some(json!({"body": "because"})),
    )
    .await;
    t.call(
        M::POST,
        "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions",
        &[("comment_id", rc.to_string())],
        Some(json!({"content": "eyes"})),
    )
    .await;
    t.call(
        M::GET,
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        &pr_vars,
        None,
    )
    .await;

    // A push (synchronize, a passing run), a conflicting base, a close, a reopen, a merge.
    let clone = w.clone("clone").await;
    support::git(&clone, &["checkout", "--quiet", "feature"]).await;
    let fixed = support::commit(&clone, "src/new.txt", "new\n", "New").await;
    support::git(&clone, &["push", "--quiet", "origin", "feature"]).await;
    w.delivery("workflow_run", Some("completed"), |b| {
        b["workflow_run"]["head_sha"] == fixed.as_str()
    })
    .await;
    w.hub
        .commit_to_base("acme", "app", "README.md", "changed\n", "Readme")
        .await;
    t.call(M::GET, pull, &pr_vars, None).await;
    w.hub.close("acme", "app", number);
    w.hub.reopen("acme", "app", number);
    w.hub.merge("acme", "app", number).await;
    t.call(M::GET, pull, &pr_vars, None).await;
    w.delivery("pull_request", Some("closed"), |b| {
        b["pull_request"]["merged"] == true
    })
    .await;
    t.answers
}

/// Fields GitHub shows only in situations the fake does not play: organizations, enterprises,
/// deployments, forks (`parent`, `source`), replies (`in_reply_to_id`, absent on a thread's first
/// comment) and tokens for selected repositories (`repositories`).
const SITUATIONAL: [&str; 7] = [
    "organization",
    "enterprise",
    "deployment",
    "parent",
    "source",
    "in_reply_to_id",
    "repositories",
];

/// The keys of `example` (down to `depth` levels of objects) that `ours` lacks, except
/// [`SITUATIONAL`] ones.
fn missing_keys(example: &Value, ours: &Value, at: &str, depth: u32) -> Vec<String> {
    let (Some(example), Some(ours)) = (example.as_object(), ours.as_object()) else {
        return Vec::new();
    };
    let mut missing = Vec::new();
    for (key, value) in example {
        if SITUATIONAL.contains(&key.as_str()) {
            continue;
        }
        match ours.get(key) {
            None => missing.push(format!("{at}{key}")),
            Some(mine) if depth > 1 => {
                missing.extend(missing_keys(value, mine, &format!("{at}{key}."), depth - 1));
            }
            Some(_) => {}
        }
    }
    missing
}

/// The query-less template of an operation.
fn operation(template: &str) -> &str {
    template.split('?').next().unwrap_or(template)
}

#[tokio::test]
#[cfg_attr(
    octokit_missing,
    ignore = "needs GitHub's OpenAPI descriptions: run scripts/test, which installs them"
)]
async fn rest_answers_and_webhooks_match_githubs_descriptions() {
    let dir = octokit_dir();
    let w = World::start().await;
    let answers = tour(&w).await;

    let rest = Description::load(
        dir.join("@octokit/openapi/generated/api.github.com.json"),
        true,
    );
    // The validation bites: a pull request missing its fields is refused.
    let get_pull = rest.deref(
        &rest.doc["paths"]["/repos/{owner}/{repo}/pulls/{pull_number}"]["get"]["responses"]["200"],
    );
    let broken = rest.problems(
        &get_pull["content"]["application/json"]["schema"],
        &json!({"number": "1"}),
    );
    assert!(broken.len() > 3, "{broken:?}");
    let mut failures = Vec::new();
    let mut checked = std::collections::BTreeSet::new();
    for a in &answers {
        let op = &rest.doc["paths"][operation(a.template)][a.method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "no operation {} {} in GitHub's description",
            a.method,
            a.template
        );
        let response = rest.deref(&op["responses"][a.status.to_string()]);
        let schema = if response.is_null() {
            // A status GitHub does not list for this operation: its generic error shape.
            json!({"$ref": "#/components/schemas/basic-error"})
        } else {
            response["content"]["application/json"]["schema"].clone()
        };
        assert!(
            !schema.is_null(),
            "{} {} {}: no JSON schema",
            a.method,
            a.template,
            a.status
        );
        for p in rest.problems(&schema, &a.body) {
            failures.push(format!("{} {} → {}: {p}", a.method, a.template, a.status));
        }
        // GitHub's documented example of the answer: every field it shows, the fake shows.
        let examples = &response["content"]["application/json"]["examples"];
        for example in examples.as_object().into_iter().flat_map(|m| m.values()) {
            let example = rest.deref(example);
            let (mine, theirs) = match (&a.body, &example["value"]) {
                (Value::Array(mine), Value::Array(theirs)) => (mine.first(), theirs.first()),
                (mine, theirs) => (Some(mine), Some(theirs)),
            };
            if let (Some(mine), Some(theirs)) = (mine, theirs) {
                for missing in missing_keys(theirs, mine, "", 2) {
                    failures.push(format!(
                        "{} {} → {}: no {missing} (GitHub's example has it)",
                        a.method, a.template, a.status
                    ));
                }
            }
        }
        checked.insert(format!(
            "{} {} {}",
            a.method,
            operation(a.template),
            a.status
        ));
    }

    let hooks = Description::load(
        dir.join("@octokit/openapi-webhooks/generated/api.github.com.json"),
        false,
    );
    let opened = &hooks.doc["webhooks"]["pull-request-opened"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert!(
        !hooks
            .problems(opened, &json!({"action": "opened"}))
            .is_empty()
    );
    let deliveries = w.hub.deliveries();
    for d in &deliveries {
        let name = match &d.action {
            Some(action) => format!("{}-{}", d.event, action).replace('_', "-"),
            None => d.event.replace('_', "-"),
        };
        let hook = &hooks.doc["webhooks"][&name]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert!(
            hook.is_object(),
            "no webhook {name} in GitHub's description"
        );
        for p in hooks.problems(hook, &d.body) {
            failures.push(format!("webhook {name}: {p}"));
        }
        checked.insert(format!("webhook {name}"));
    }
    eprintln!(
        "checked:\n  {}",
        checked.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    // GitHub's own example deliveries: every field they carry (two levels deep), the fake's carry.
    let examples: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("@octokit/webhooks-examples/api.github.com/index.json"))
            .unwrap(),
    )
    .unwrap();
    let mut compared = 0;
    for d in &deliveries {
        let Some(example) = examples
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == d.event.as_str())
            .flat_map(|e| e["examples"].as_array().unwrap())
            .find(|x| x["action"].as_str() == d.action.as_deref())
        else {
            continue;
        };
        compared += 1;
        for missing in missing_keys(example, &d.body, "", 2) {
            failures.push(format!(
                "webhook {}.{:?}: no {missing} (GitHub's example has it)",
                d.event, d.action
            ));
        }
    }
    assert!(
        compared > 10,
        "only {compared} deliveries had an example to compare with"
    );
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for must in [
        "webhook pull-request-opened",
        "webhook pull-request-synchronize",
        "webhook pull-request-edited",
        "webhook pull-request-closed",
        "webhook pull-request-reopened",
        "webhook issue-comment-created",
        "webhook issue-comment-edited",
        "webhook pull-request-review-submitted",
        "webhook pull-request-review-comment-created",
        "webhook check-run-created",
        "webhook check-run-completed",
        "webhook check-suite-completed",
        "webhook workflow-run-completed",
        "webhook status",
    ] {
        assert!(checked.contains(must), "the tour sent no {must}");
    }
}
