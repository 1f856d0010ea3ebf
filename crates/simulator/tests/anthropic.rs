//! The Anthropic Messages API as Claude Code calls it: whole SSE sequences for each kind of
//! step, the follow-up turn, rate limiting and a request without a stage line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{Sim, normalize, scenario, start};

const PATH: &str = "/v1/messages?beta=true";

/// A request shaped like Claude Code's: system blocks, a system-reminder before the prompt,
/// Claude's tools, `messages` after the first user message given as `history`.
fn request(sim: &Sim, stage: &str, history: &[Value]) -> Value {
    let mut messages = vec![json!({"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nAs you answer, use this context.\n</system-reminder>"},
        {"type": "text", "text": format!("Atelier-Stage: {stage}\n\nImplement the task.")}
    ]})];
    messages.extend(history.iter().cloned());
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": true,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": format!("<env>\nPrimary working directory: {}\nPlatform: linux\n</env>", sim.work())}
        ],
        "messages": messages,
        "tools": [
            {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}},
            {"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}},
            {"name": "Write", "description": "Write a file", "input_schema": {"type": "object"}}
        ],
        "metadata": {"user_id": "u"},
        "thinking": {"type": "enabled", "budget_tokens": 1000}
    })
}

/// An assistant tool call and its result, as Claude Code sends them back.
fn call(name: &str, input: Value) -> [Value; 2] {
    [
        json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": name, "input": input}]}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}),
    ]
}

fn ev(name: &str, data: Value) -> Value {
    json!({"event": name, "data": data})
}

/// The events of a message with `blocks` (each a list of events already) and `stop`.
fn message(blocks: Vec<Value>, stop: &str) -> Vec<Value> {
    let mut out = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {
            "id": "ID", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": "N", "output_tokens": "N", "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    out.extend(blocks);
    out.push(ev(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": "N"}}),
    ));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    out
}

fn block(index: usize, start: Value, deltas: &[Value]) -> Vec<Value> {
    let mut out = vec![ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": start}),
    )];
    for delta in deltas {
        out.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }
    out.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    ));
    out
}

fn text(index: usize, text: &str) -> Vec<Value> {
    block(
        index,
        json!({"type": "text", "text": ""}),
        &[json!({"type": "text_delta", "text": text})],
    )
}

/// A tool_use block; `input` is compared parsed (the stream cuts its JSON into pieces).
fn tool_use(events: &[Value], index: usize) -> (String, Value) {
    let start = &events[0]["data"];
    assert_eq!(start["index"], index);
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["input"], json!({}));
    let mut partial = String::new();
    for e in &events[1..events.len() - 1] {
        assert_eq!(e["data"]["delta"]["type"], "input_json_delta");
        partial.push_str(e["data"]["delta"]["partial_json"].as_str().unwrap());
    }
    assert_eq!(events.last().unwrap()["event"], "content_block_stop");
    (
        start["content_block"]["name"].as_str().unwrap().to_string(),
        serde_json::from_str(&partial).unwrap(),
    )
}

/// Splits the events of a tool-calling response into (events before the tool block, the tool
/// name and input, events after).
fn split_tool(events: Vec<Value>) -> (Vec<Value>, (String, Value), Vec<Value>) {
    let at = events
        .iter()
        .position(|e| e["data"]["content_block"]["type"] == "tool_use")
        .expect("a tool_use block");
    let end = at
        + events[at..]
            .iter()
            .position(|e| e["event"] == "content_block_stop")
            .unwrap();
    let index = events[at]["data"]["index"].as_u64().unwrap() as usize;
    let tool = tool_use(&events[at..=end], index);
    (events[..at].to_vec(), tool, events[end + 1..].to_vec())
}

/// Asserts the whole sequence of a response with `blocks` and then a tool call.
fn assert_tool_message(events: Vec<Value>, blocks: Vec<Value>, name: &str, input: Value) {
    let (before, tool, after) = split_tool(events);
    let mut expected = message(blocks, "tool_use");
    let tail = expected.split_off(expected.len() - 2);
    assert_eq!(before, expected);
    assert_eq!(after, tail);
    assert_eq!(tool, (name.to_string(), input));
}

#[tokio::test]
async fn plays_a_whole_turn_in_claude_code_vocabulary() {
    let sim = start(&[("implement", scenario())]).await;
    let work = sim.work();

    // Step 0: thinking + text, then the write as Write (the file does not exist).
    let events = sim.events(PATH, &request(&sim, "implement #0", &[])).await;
    let thinking = block(
        0,
        json!({"type": "thinking", "thinking": "", "signature": ""}),
        &[
            json!({"type": "thinking_delta", "thinking": "Let me write it"}),
            json!({"type": "signature_delta", "signature": "atelier-simulator"}),
        ],
    );
    let write = json!({"file_path": format!("{work}/a.txt"), "content": "hi\n"});
    assert_tool_message(
        events,
        [thinking, text(1, "Writing a.txt")].concat(),
        "Write",
        write.clone(),
    );

    // Step 1: the run step as Bash.
    let mut history = call("Write", write).to_vec();
    let events = sim
        .events(PATH, &request(&sim, "implement #0", &history))
        .await;
    let bash = json!({"command": "cat a.txt", "description": "Run cat a.txt"});
    assert_tool_message(events, vec![], "Bash", bash);

    // Step 2: the signal step, its arguments shell-quoted.
    history.extend(call("Bash", json!({"command": "cat a.txt"})));
    let events = sim
        .events(PATH, &request(&sim, "implement #0", &history))
        .await;
    let signal = "atelier signal plan-ready --note 'it'\\''s done'";
    let bash = json!({"command": signal, "description": format!("Run {signal}")});
    assert_tool_message(events, vec![], "Bash", bash);

    // The last message ends the turn.
    history.extend(call(
        "Bash",
        json!({"command": "atelier signal plan-ready"}),
    ));
    let events = sim
        .events(PATH, &request(&sim, "implement #0", &history))
        .await;
    assert_eq!(events, message(text(0, "All done."), "end_turn"));

    // Turn 1 after a follow-up: echo_input says the follow-up.
    history.push(json!({"role": "assistant", "content": [{"type": "text", "text": "All done."}]}));
    history.push(json!({"role": "user", "content": "What did you change?"}));
    let events = sim
        .events(PATH, &request(&sim, "implement #0", &history))
        .await;
    assert_eq!(events, message(text(0, "What did you change?"), "end_turn"));

    let recorded = sim.sim.requests();
    assert_eq!(recorded.len(), 5);
    assert_eq!(recorded[0].path, PATH);
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].headers["x-api-key"], simulator::REDACTED);
    assert_eq!(recorded[0].model(), Some("claude-sonnet-4-5"));
    assert_eq!(recorded[0].tool_names(), ["Bash", "Read", "Write"]);
    assert_eq!(
        recorded[0].answer.as_deref(),
        Some("implement #0 turn 0 step 0: tool Write")
    );
    assert_eq!(
        recorded[4].answer.as_deref(),
        Some("implement #0 turn 1 step 0: end of turn")
    );
}

#[tokio::test]
async fn overwrites_an_existing_file_with_a_bash_heredoc() {
    let sim = start(&[("implement", scenario())]).await;
    std::fs::write(sim.work.join("a.txt"), "old").unwrap();
    let events = sim.events(PATH, &request(&sim, "implement #0", &[])).await;
    let (_, tool, _) = split_tool(events);
    assert_eq!(
        tool,
        (
            "Bash".into(),
            json!({"command": "cat > a.txt <<'ATELIER_EOF'\nhi\nATELIER_EOF",
            "description": "Run cat > a.txt <<'ATELIER_EOF'…"})
        )
    );
}

#[tokio::test]
async fn rate_limits_twice_then_answers() {
    let sim = start(&[("implement", scenario())]).await;
    let body = request(&sim, "implement #1", &[]);
    for _ in 0..2 {
        let (status, text) = sim.post(PATH, &body).await;
        assert_eq!(status, 429);
        assert_eq!(
            normalize(serde_json::from_str(&text).unwrap()),
            json!({"type": "error", "error": {"type": "rate_limit_error",
                "message": "Rate limit exceeded: too many requests (simulated). Please try again later."},
                "request_id": "ID"})
        );
    }
    let events = sim.events(PATH, &body).await;
    assert_eq!(events, message(text(0, "after the rate limit"), "end_turn"));
}

#[tokio::test]
async fn a_request_without_a_stage_line_is_a_clear_400() {
    let sim = start(&[("implement", scenario())]).await;
    let mut body = request(&sim, "implement #0", &[]);
    body["messages"][0]["content"][1]["text"] = json!("Just do it.");
    let (status, text) = sim.post(PATH, &body).await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no `Atelier-Stage: <stage> #<iteration>` line"),
        "{message}"
    );

    // A stage without a scenario file names the file.
    let (status, text) = sim.post(PATH, &request(&sim, "review #0", &[])).await;
    assert_eq!(status, 400);
    assert!(text.contains("review.json"), "{text}");
}

#[tokio::test]
async fn side_requests_without_tools_get_a_short_text() {
    let sim = start(&[]).await;
    let body = json!({"model": "claude-haiku", "max_tokens": 1, "stream": false,
        "messages": [{"role": "user", "content": "quota"}]});
    let (status, text) = sim.post("/v1/messages", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        normalize(serde_json::from_str(&text).unwrap()),
        json!({"id": "ID", "type": "message", "role": "assistant", "model": "claude-haiku",
            "content": [{"type": "text", "text": "Atelier simulated session"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": "N", "output_tokens": "N", "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0}})
    );
}
