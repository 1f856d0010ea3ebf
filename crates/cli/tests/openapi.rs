//! The OpenAPI document as a contract, fuzzed: against the real `atelier serve` (scripted agents,
//! a project and tasks in several states), requests generated from the document the server
//! serves — for every route, valid and mutated (edge and random path ids, query values, bodies
//! derived from the request schema with wrong types, missing fields, nulls, unicode, huge
//! strings) — must never get a 5xx, only statuses the document lists for the route, and JSON
//! that validates against the schema the document gives for that route and status.
//!
//! Fixed seed, bounded count: `REQUESTS_PER_ROUTE` per route. Destructive routes (delete, merge,
//! stop) run last, and every assertion is about one response on its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use support::*;

const SEED: u64 = 0x0a7e_11e2;
const REQUESTS_PER_ROUTE: usize = 30;
/// How long a streamed (NDJSON) answer is read before the lines so far are checked.
const STREAM_READ: Duration = Duration::from_secs(10);

/// The document's component schemas and compiled validators, by schema text.
struct Contract {
    document: Value,
    validators: HashMap<String, jsonschema::Validator>,
}

impl Contract {
    fn components(&self) -> &Map<String, Value> {
        self.document["components"]["schemas"].as_object().unwrap()
    }

    /// Follows a `$ref` into the components.
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap();
                self.resolve(&self.components()[name])
            }
            None => schema,
        }
    }

    /// The problems of `instance` against `schema` (whose `$ref`s point into the document).
    fn problems(&mut self, schema: &Value, instance: &Value) -> Vec<String> {
        let key = schema.to_string();
        if !self.validators.contains_key(&key) {
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.document["components"],
                "allOf": [schema],
            });
            let validator = jsonschema::options()
                .build(&root)
                .unwrap_or_else(|err| panic!("the schema {schema} does not compile: {err}"));
            self.validators.insert(key.clone(), validator);
        }
        self.validators[&key]
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }
}

/// Strings the generator picks from: names and paths that exist, and awkward ones; `hints`
/// are the usual values of a property by its name (so valid requests also succeed).
struct Pool {
    strings: Vec<String>,
    hints: Vec<(&'static str, Vec<String>)>,
}

impl Pool {
    fn property(&self, name: &str, rng: &mut StdRng) -> Option<Value> {
        let (_, values) = self.hints.iter().find(|(n, _)| *n == name)?;
        rng.random_bool(0.7)
            .then(|| json!(values[rng.random_range(0..values.len())]))
    }

    fn string(&self, rng: &mut StdRng) -> String {
        match rng.random_range(0..10) {
            0 => random_text(rng, 0..40),
            1 => "ü😀\u{202E}日本\u{0}\t\n".repeat(rng.random_range(1..5)),
            2 => "x".repeat(rng.random_range(200..5000)),
            _ => self.strings[rng.random_range(0..self.strings.len())].clone(),
        }
    }
}

fn random_text(rng: &mut StdRng, len: std::ops::Range<usize>) -> String {
    let len = rng.random_range(len);
    (0..len)
        .map(|_| match rng.random_range(0..4) {
            0 => char::from(rng.random_range(b'a'..=b'z')),
            1 => char::from(rng.random_range(0x20u8..0x7f)),
            2 => char::from_u32(rng.random_range(0xa0..0x3000)).unwrap_or('é'),
            _ => ['/', '%', '&', '?', '#', ' ', '"', '\\'][rng.random_range(0..8)],
        })
        .collect()
}

/// A value that (mostly) satisfies `schema`.
fn generate(
    contract: &Contract,
    pool: &Pool,
    schema: &Value,
    rng: &mut StdRng,
    depth: u32,
) -> Value {
    let schema = contract.resolve(schema);
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values[rng.random_range(0..values.len())].clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let option = &options[rng.random_range(0..options.len())];
            let mut value = generate(contract, pool, option, rng, depth);
            // Properties beside the `oneOf` (none today) would be merged here.
            if let (Some(object), Some(_)) = (value.as_object_mut(), schema.get("properties"))
                && let Value::Object(extra) = generate_object(contract, pool, schema, rng, depth)
            {
                object.extend(extra);
            }
            return value;
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        return generate(contract, pool, &all[0], rng, depth);
    }
    let ty = match schema.get("type") {
        Some(Value::String(ty)) => ty.clone(),
        Some(Value::Array(types)) => types[rng.random_range(0..types.len())]
            .as_str()
            .unwrap()
            .to_string(),
        _ if schema.get("properties").is_some() => "object".into(),
        // Any JSON (e.g. a webhook payload).
        _ => return json!({"action": pool.string(rng), "number": rng.random_range(0..9)}),
    };
    match ty.as_str() {
        "null" => Value::Null,
        "boolean" => json!(rng.random_bool(0.5)),
        "integer" => {
            let min = schema.get("minimum").and_then(Value::as_i64).unwrap_or(0);
            let max = schema
                .get("maximum")
                .and_then(Value::as_i64)
                .unwrap_or(min + 1000);
            json!(rng.random_range(min..=max))
        }
        "number" => json!(rng.random_range(0.0..100.0)),
        "string" => json!(pool.string(rng)),
        "array" if depth < 4 => {
            let items = schema.get("items").cloned().unwrap_or(json!({}));
            let n = rng.random_range(0..3);
            Value::Array(
                (0..n)
                    .map(|_| generate(contract, pool, &items, rng, depth + 1))
                    .collect(),
            )
        }
        "object" if depth < 4 => generate_object(contract, pool, schema, rng, depth),
        _ => Value::Null,
    }
}

fn generate_object(
    contract: &Contract,
    pool: &Pool,
    schema: &Value,
    rng: &mut StdRng,
    depth: u32,
) -> Value {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut object = Map::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let hinted = pool.hints.iter().any(|(n, _)| n == name);
            let odds = if hinted { 0.8 } else { 0.4 };
            if required.contains(&name.as_str()) || rng.random_bool(odds) {
                let value = pool
                    .property(name, rng)
                    .unwrap_or_else(|| generate(contract, pool, property, rng, depth + 1));
                object.insert(name.clone(), value);
            }
        }
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        for _ in 0..rng.random_range(0..2) {
            let key = pool.string(rng);
            object.insert(key, generate(contract, pool, values, rng, depth + 1));
        }
    }
    Value::Object(object)
}

/// Breaks `value` somewhere: a wrong type, a missing field, a null, an extra field.
fn mutate(value: &mut Value, rng: &mut StdRng) {
    let wrong = [
        json!(null),
        json!(-1),
        json!(1.5e300),
        json!(i64::MAX),
        json!("ü😀"),
        json!([]),
        json!({}),
        json!(true),
    ];
    match value {
        Value::Object(object) if !object.is_empty() && rng.random_bool(0.8) => {
            let keys: Vec<String> = object.keys().cloned().collect();
            let key = &keys[rng.random_range(0..keys.len())];
            match rng.random_range(0..4) {
                0 => {
                    object.remove(key);
                }
                1 => {
                    object.insert("unexpected".into(), json!(1));
                }
                _ => {
                    let field = object.get_mut(key).unwrap();
                    if rng.random_bool(0.5) && (field.is_object() || field.is_array()) {
                        mutate(field, rng);
                    } else {
                        *field = wrong[rng.random_range(0..wrong.len())].clone();
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.random_range(0..items.len());
            mutate(&mut items[i], rng);
        }
        other => *other = wrong[rng.random_range(0..wrong.len())].clone(),
    }
}

/// Percent-encodes everything but unreserved characters.
fn escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A path parameter: mostly one that exists, else an edge case.
fn path_value(name: &str, tasks: &[i64], rng: &mut StdRng) -> String {
    if name == "id" {
        match rng.random_range(0..12) {
            0..=5 => tasks[rng.random_range(0..tasks.len())].to_string(),
            6 => "0".into(),
            7 => "-1".into(),
            8 => i64::MAX.to_string(),
            9 => "99999999999999999999999".into(),
            10 => "1.5".into(),
            _ => ["abc", "é", "%00", " 1", "1e3"][rng.random_range(0..5)].into(),
        }
    } else {
        match rng.random_range(0..4) {
            0 | 1 => "app".into(),
            2 => "1".into(),
            _ => random_text(rng, 1..20),
        }
    }
}

/// A query value: usually one from the schema, sometimes an edge or garbage.
fn query_value(contract: &Contract, pool: &Pool, schema: &Value, rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => [
            "",
            "-1",
            "0",
            "501",
            "abc",
            "1.5",
            "99999999999999999999",
            "true",
        ][rng.random_range(0..8)]
        .to_string(),
        1 => random_text(rng, 0..12),
        _ => match generate(contract, pool, schema, rng, 0) {
            Value::String(s) => s,
            other => other.to_string(),
        },
    }
}

struct Outcome {
    route: String,
    request: String,
    status: u16,
    problem: Option<String>,
}

/// Sends one generated request for `op` and checks its answer against the document.
#[allow(clippy::too_many_arguments)]
async fn exercise(
    http: &reqwest::Client,
    world: &World,
    contract: &mut Contract,
    pool: &Pool,
    tasks: &[i64],
    method: &str,
    path: &str,
    op: &Value,
    rng: &mut StdRng,
) -> Outcome {
    // The path and query.
    let mut uri = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        uri.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => uri.push_str(&escape(&path_value(name, tasks, rng))),
            None => uri.push_str(segment),
        }
    }
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let mut query = Vec::new();
    for param in params.iter().filter(|p| p["in"] == "query") {
        if rng.random_bool(0.5) {
            let value = query_value(contract, pool, &param["schema"], rng);
            query.push(format!(
                "{}={}",
                param["name"].as_str().unwrap(),
                escape(&value)
            ));
        }
    }
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }

    // The body.
    let mut request = http.request(
        method.parse().unwrap(),
        format!("{}{uri}", world.server.url()),
    );
    request = request.bearer_auth(world.server.token());
    let mut shown_body = String::new();
    if let Some(body) = op.get("requestBody") {
        let schema = &body["content"]["application/json"]["schema"];
        let (bytes, json_type) = match rng.random_range(0..20) {
            0 => (b"{\"not json".to_vec(), true),
            1 => (Vec::new(), true),
            2 => (b"null".to_vec(), true),
            3 => (format!("\"{}\"", "y".repeat(2_100_000)).into_bytes(), true),
            4 => {
                let value = generate(contract, pool, schema, rng, 0);
                (serde_json::to_vec(&value).unwrap(), false)
            }
            n => {
                let mut value = generate(contract, pool, schema, rng, 0);
                if n % 2 == 0 {
                    mutate(&mut value, rng);
                }
                (serde_json::to_vec(&value).unwrap(), true)
            }
        };
        shown_body = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        if json_type {
            request = request.header("content-type", "application/json");
        }
        if path == "/api/webhooks/github" {
            request = request
                .header(
                    "x-github-event",
                    ["pull_request", "ping", "issue_comment"][rng.random_range(0..3)],
                )
                .header(
                    "x-github-delivery",
                    format!("d-{}", rng.random_range(0..1000)),
                )
                .header("x-hub-signature-256", "sha256=00");
        }
        request = request.body(bytes);
    }
    let shown = format!("{method} {uri} {shown_body}");
    let route = format!("{method} {path}");

    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => {
            return Outcome {
                route,
                request: shown,
                status: 0,
                problem: Some(format!("no answer: {err}")),
            };
        }
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // A live event stream never ends: its status and content type are what can be checked.
    let body = if content_type.starts_with("text/event-stream") {
        Vec::new()
    } else {
        read_body(response).await
    };
    let problem = check(contract, op, status, &content_type, &body);
    Outcome {
        route,
        request: shown,
        status,
        problem,
    }
}

/// The body; a stream is read for at most [`STREAM_READ`] (then its whole lines so far).
async fn read_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + STREAM_READ;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => bytes.extend_from_slice(&chunk),
            Ok(Ok(None)) | Ok(Err(_)) => return bytes,
            Err(_) => {
                let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                bytes.truncate(end);
                return bytes;
            }
        }
    }
}

/// What is wrong with an answer, if anything.
fn check(
    contract: &mut Contract,
    op: &Value,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Option<String> {
    if status >= 500 {
        return Some(format!("a {status}: {}", String::from_utf8_lossy(body)));
    }
    let Some(response) = op["responses"].get(status.to_string()) else {
        return Some(format!(
            "status {status} is not in the document for this route: {}",
            String::from_utf8_lossy(body)
        ));
    };
    let (media, content) = response["content"]
        .as_object()
        .and_then(|c| c.iter().next())?;
    if !content_type.starts_with(media.as_str()) {
        return Some(format!("content type {content_type:?}, documented {media}"));
    }
    if media == "text/event-stream" || media == "application/octet-stream" {
        return None;
    }
    let schema = content["schema"].clone();
    let values: Vec<Value> = if media == "application/x-ndjson" {
        let text = String::from_utf8_lossy(body);
        let mut values = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str(line) {
                Ok(value) => values.push(value),
                Err(err) => return Some(format!("an NDJSON line is not JSON ({err}): {line}")),
            }
        }
        values
    } else {
        match serde_json::from_slice(body) {
            Ok(value) => vec![value],
            Err(err) => {
                return Some(format!(
                    "the body is not JSON ({err}): {}",
                    String::from_utf8_lossy(body)
                ));
            }
        }
    };
    for value in values {
        let problems = contract.problems(&schema, &value);
        if !problems.is_empty() {
            let shown = value.to_string();
            return Some(format!(
                "the answer breaks its schema: {problems:?}\nanswer: {}",
                &shown[..shown.len().min(2000)]
            ));
        }
    }
    None
}

/// Destructive operations go last, so the routes before them have tasks to act on.
fn rank(method: &str, path: &str) -> u8 {
    match (method, path) {
        // New settings may leave a project's roles unusable for the tasks created later.
        ("put", _) => 1,
        ("post", p) if p.ends_with("/stop") => 2,
        ("post", p) if p.ends_with("/merge") => 3,
        ("delete", _) => 4,
        _ => 0,
    }
}

#[tokio::test]
async fn generated_requests_to_every_route_keep_to_the_document() {
    let world = World::start(&full_pipeline(), &["--merge-poll-ms", "200"]).await;
    // Tasks in several states: at the plan gate (two) and awaiting merge.
    let gated = world.new_task("Gated task", true).await;
    let finished = world.new_task("Finished task", false).await;
    let spare = world.new_task("Spare task", true).await;
    world.wait_state(gated, "plan_gate").await;
    world.wait_state(spare, "plan_gate").await;
    world.wait_state(finished, "awaiting_merge").await;
    let second = world.add_repo("second");
    world.add_project(&second, "second", json!({})).await;
    // A repository the fuzzed requests may add as a project.
    let third = world.add_repo("third");
    let tasks = [gated, finished, spare, 404_404];

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        // A connection the server closes after refusing a huge body unread is not reused.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let document: Value = http
        .get(format!("{}/api/openapi.json", world.server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut contract = Contract {
        document: document.clone(),
        validators: HashMap::new(),
    };
    let pool = Pool {
        strings: vec![
            "app".into(),
            "second".into(),
            world.repo.path.display().to_string(),
            second.display().to_string(),
            "/nonexistent/repo".into(),
            "scripted".into(),
            "plan".into(),
            "A title".into(),
            "origin".into(),
            String::new(),
            " ".into(),
            "1".into(),
        ],
        hints: vec![
            ("project", vec!["app".into(), "second".into()]),
            ("path", vec![third.display().to_string()]),
            ("name", vec!["third".into(), "fourth".into()]),
            (
                "title",
                vec!["Fuzzed task".into(), "Ünïcode ✓ title".into()],
            ),
            ("harness", vec!["scripted".into()]),
        ],
    };

    let mut operations: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.push((method.clone(), path.clone(), op.clone()));
        }
    }
    assert!(operations.len() >= 19, "{operations:?}");
    operations.sort_by_key(|(method, path, _)| (rank(method, path), path.clone(), method.clone()));

    let mut rng = StdRng::seed_from_u64(SEED);
    let mut failures = Vec::new();
    let mut seen: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
    for (method, path, op) in &operations {
        for _ in 0..REQUESTS_PER_ROUTE {
            let outcome = exercise(
                &http,
                &world,
                &mut contract,
                &pool,
                &tasks,
                &method.to_uppercase(),
                path,
                op,
                &mut rng,
            )
            .await;
            *seen
                .entry(outcome.route.clone())
                .or_default()
                .entry(outcome.status)
                .or_default() += 1;
            if std::env::var_os("OPENAPI_FUZZ_VERBOSE").is_some() {
                eprintln!(
                    "{} → {}: {}",
                    outcome.route, outcome.status, outcome.request
                );
            }
            if let Some(problem) = outcome.problem {
                failures.push(format!(
                    "{} → {}: {problem}\n  request: {}",
                    outcome.route, outcome.status, outcome.request
                ));
            }
        }
    }
    eprintln!("statuses per route: {seen:#?}");
    assert!(
        failures.is_empty(),
        "{} of {} requests broke the contract:\n{}\nserver logs:\n{}",
        failures.len(),
        operations.len() * REQUESTS_PER_ROUTE,
        failures.join("\n"),
        world.server.logs()
    );
    // Every route answered something other than an error at least once, or was at least
    // reached (no route only ever refused for its token).
    for (route, statuses) in &seen {
        assert!(
            statuses.keys().any(|s| *s != 401)
                || route.contains("signal")
                || route.contains("webhooks"),
            "{route} was never reached past authentication: {statuses:?}"
        );
    }
    // The server is still up.
    let health = world.server.get("/healthz").await.unwrap();
    assert_eq!(health["status"], "ok");
}
