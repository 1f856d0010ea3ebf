//! The server around the APIs: the recorder (`/_sim/requests`, the JSONL file), probes and
//! model lists, and the infrastructure steps on the wire (stall, slow, garbage, hang, crash,
//! error shapes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use simulator::{Options, RecordedRequest, Simulator};
use std::time::{Duration, Instant};
use support::start;

/// Now in µs since the Unix epoch (the recorder's clock).
fn unix_micros() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

fn claude(text: &str) -> Value {
    json!({"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 100,
        "system": "You are Claude Code.",
        "messages": [{"role": "user", "content": text}],
        "tools": [{"name": "Bash", "input_schema": {}}]})
}

#[tokio::test]
async fn records_requests_and_serves_probes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = Options {
        scenarios_dir: dir.path().to_path_buf(),
        record_file: Some(log.clone()),
        ..Options::default()
    };
    let sim = Simulator::start_with(listener, options).await.unwrap();
    let http = reqwest::Client::new();
    let url = sim.url();
    let before = unix_micros();

    let head = http.head(format!("{url}/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let models: Value = http
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "claude-sonnet-4-5");
    let count: Value = http
        .post(format!("{url}/v1/messages/count_tokens?beta=true"))
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(count["input_tokens"].as_u64().unwrap() > 0);
    let missing = http
        .post(format!("{url}/v1/messages"))
        .bearer_auth("secret-token")
        .header("anthropic-version", "2023-06-01")
        .json(&claude("no stage here"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let health = http.get(format!("{url}/_sim/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let listed: Vec<RecordedRequest> = http
        .get(format!("{url}/_sim/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = unix_micros();
    assert_eq!(listed, sim.requests());
    // Each request carries when it arrived: within the test's window, in arrival order.
    let received: Vec<u64> = listed.iter().map(|r| r.received_at_us).collect();
    assert!(
        received.first() >= Some(&before)
            && received.last() <= Some(&after)
            && received.is_sorted(),
        "{before} ≤ {received:?} ≤ {after}"
    );
    let summary: Vec<(u64, &str, &str, Option<&str>)> = listed
        .iter()
        .map(|r| {
            (
                r.seq,
                r.method.as_str(),
                r.path.as_str(),
                r.answer.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "HEAD", "/", Some("probe")),
            (2, "GET", "/v1/models", Some("models")),
            (
                3,
                "POST",
                "/v1/messages/count_tokens?beta=true",
                Some("count_tokens")
            ),
            (4, "POST", "/v1/messages", listed[3].answer.as_deref()),
        ]
    );
    let post = &listed[3];
    assert!(
        post.answer
            .as_deref()
            .unwrap()
            .starts_with("400: Atelier simulator: no `Atelier-Stage:")
    );
    assert_eq!(post.headers["authorization"], simulator::REDACTED);
    assert_eq!(post.headers["anthropic-version"], "2023-06-01");
    assert_eq!(post.body, claude("no stage here"));

    let file: Vec<RecordedRequest> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(file, listed);

    let cleared = http
        .delete(format!("{url}/_sim/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(sim.requests().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn error_shapes_and_verbatim_bodies() {
    let scenario = json!({"runs": [
        [{"do": "http_error", "status": 529}, {"do": "http_error", "status": 500, "body": "upstream exploded"},
         {"do": "message", "text": "ok"}]
    ]});
    let sim = start(&[("plan", scenario)]).await;
    let body = claude("Atelier-Stage: plan #0");
    let (status, text) = sim.post("/v1/messages", &body).await;
    assert_eq!(status, 529);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        error["error"],
        json!({"type": "overloaded_error", "message": "Overloaded (simulated)"})
    );
    assert_eq!(
        sim.post("/v1/messages", &body).await,
        (500, "upstream exploded".into())
    );
    let events = sim.events("/v1/messages", &body).await;
    assert_eq!(
        events[3]["data"]["delta"],
        json!({"type": "text_delta", "text": "ok"})
    );
}

#[tokio::test]
async fn garbage_then_a_real_answer() {
    let sim = start(&[(
        "plan",
        json!({"runs": [[{"do": "garbage", "lines": 2}, {"do": "message", "text": "ok"}]]}),
    )])
    .await;
    let body = claude("Atelier-Stage: plan #0");
    let (status, text) = sim.post("/v1/messages", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        text,
        "garbage line 1: this is not SSE {\ngarbage line 2: this is not SSE {\ndata: {this is not JSON either\n\n"
    );
    assert_eq!(sim.events("/v1/messages", &body).await.len(), 7);
}

#[tokio::test]
async fn stall_and_slow_take_their_time() {
    let scenario = json!({"runs": [[{"do": "stall", "ms": 300}, {"do": "slow", "ms_per_chunk": 40},
        {"do": "message", "text": "slowly"}]]});
    let sim = start(&[("plan", scenario)]).await;
    let body = claude("Atelier-Stage: plan #0");
    let started = Instant::now();
    let events = sim.events("/v1/messages", &body).await;
    // 300 ms of stall + 7 events at 40 ms each.
    assert!(
        started.elapsed() >= Duration::from_millis(300 + 7 * 40),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(events.len(), 7);
    // The stall happens once; the slowness every time.
    let started = Instant::now();
    sim.events("/v1/messages", &body).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(7 * 40) && took < Duration::from_millis(300 + 7 * 40),
        "{took:?}"
    );
    // The recorder notes when each answer ended: the model time of a request, stall and pacing
    // included, and no later than the client read its last byte.
    let ended = unix_micros();
    let times: Vec<(u64, u64)> = sim
        .sim
        .requests()
        .iter()
        .map(|r| (r.received_at_us, r.finished_at_us.unwrap()))
        .collect();
    let [(first_in, first_out), (second_in, second_out)] = times[..] else {
        panic!("{times:?}")
    };
    assert!(first_out - first_in >= (300 + 7 * 40) * 1000, "{times:?}");
    assert!(second_out - second_in >= 7 * 40 * 1000, "{times:?}");
    assert!(first_out <= second_in && second_out <= ended, "{times:?}");
}

/// A server-wide latency delays every model answer by at least that long, counted as model time
/// (the arrival stays the moment the request came), and no probe, model list or token count.
#[tokio::test]
async fn latency_delays_each_model_answer_and_nothing_else() {
    let latency = Duration::from_millis(1500);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.json"),
        json!({"runs": [[{"do": "run", "command": "true"}, {"do": "message", "text": "done"}]]})
            .to_string(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = Options {
        scenarios_dir: dir.path().to_path_buf(),
        latency,
        ..Options::default()
    };
    let sim = Simulator::start_with(listener, options).await.unwrap();
    let http = reqwest::Client::new();
    let url = sim.url();

    // Two steps of the scenario (a tool call, then the last message), each a model answer.
    let mut sent = Vec::new();
    for body in [
        claude("Atelier-Stage: plan #0"),
        json!({"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 100,
            "system": "You are Claude Code.",
            "messages": [
                {"role": "user", "content": "Atelier-Stage: plan #0"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "true"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": ""}]}
            ],
            "tools": [{"name": "Bash", "input_schema": {}}]}),
    ] {
        let before = unix_micros();
        let started = Instant::now();
        let response = http
            .post(format!("{url}/v1/messages"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
        assert!(text.contains("message_stop"), "{text}");
        sent.push(before);
    }
    // Not model answers: answered without the latency (a deadline well below it).
    let started = Instant::now();
    let models = http.get(format!("{url}/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 200);
    assert!(started.elapsed() < latency, "{:?}", started.elapsed());

    let requests = sim.requests();
    let answered: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.path.starts_with("/v1/messages"))
        .collect();
    assert_eq!(answered.len(), 2, "{requests:?}");
    for (request, before) in answered.iter().zip(&sent) {
        let finished = request.finished_at_us.unwrap();
        // Received when it arrived, not when the latency ended; the latency is model time.
        assert!(request.received_at_us >= *before, "{request:?}");
        assert!(
            request.received_at_us - before < latency.as_micros() as u64,
            "{request:?}"
        );
        assert!(
            finished - request.received_at_us >= latency.as_micros() as u64,
            "{request:?}"
        );
    }
    assert!(
        answered[0].answer.as_deref().unwrap().contains("tool"),
        "{answered:?}"
    );
    assert!(
        answered[1]
            .answer
            .as_deref()
            .unwrap()
            .contains("end of turn"),
        "{answered:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn hang_holds_the_stream_until_shutdown_and_crash_cuts_it() {
    let scenario = json!({"runs": [
        {"turns": [[{"do": "message", "text": "waiting"}, {"do": "hang"}], [{"do": "crash", "code": 1}]]}
    ]});
    let support::Sim { sim, dir: _dir, .. } = start(&[("plan", scenario)]).await;
    let url = sim.url();
    let http = reqwest::Client::new();

    let crash_body = json!({"model": "m", "stream": true, "tools": [{"name": "Bash"}], "messages": [
        {"role": "user", "content": "Atelier-Stage: plan #0"},
        {"role": "assistant", "content": "waiting"},
        {"role": "user", "content": "go on"}]});
    let response = http
        .post(format!("{url}/v1/messages"))
        .json(&crash_body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.is_err(), "the body should break off");

    let mut response = http
        .post(format!("{url}/v1/messages"))
        .json(&claude("Atelier-Stage: plan #0"))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("content_block_stop") {
        let chunk = response.chunk().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let next = tokio::time::timeout(Duration::from_millis(300), response.chunk()).await;
    assert!(next.is_err(), "a hung stream sends nothing more");
    let reader = tokio::spawn(async move { response.chunk().await });
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

#[tokio::test]
async fn named_tools_and_missing_shells() {
    let scenario = json!({"runs": [[{"do": "tool", "name": "Grep", "input": {"pattern": "x"}, "output": "found"},
        {"do": "tool", "name": "Nope", "output": "it's here"}]]});
    let sim = start(&[("plan", scenario)]).await;
    let mut body = claude("Atelier-Stage: plan #0");
    body["tools"] = json!([{"name": "Bash"}, {"name": "Grep"}]);
    let events = sim.events("/v1/messages", &body).await;
    assert_eq!(events[2]["data"]["content_block"]["name"], "Grep");
    body["messages"] = json!([body["messages"][0],
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Grep", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]);
    let events = sim.events("/v1/messages", &body).await;
    assert_eq!(events[2]["data"]["content_block"]["name"], "Bash");
    let input: String = events[3..events.len() - 3]
        .iter()
        .map(|e| {
            e["data"]["delta"]["partial_json"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let input: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(input["command"], r"printf '%s\n' 'it'\''s here'");

    body["tools"] = json!([{"name": "Read"}]);
    let (status, text) = sim.post("/v1/messages", &body).await;
    assert_eq!(status, 400);
    assert!(text.contains("offers no shell tool"), "{text}");
    assert!(text.contains("it offers: Read"), "{text}");
}
