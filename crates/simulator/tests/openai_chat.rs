//! The OpenAI Chat Completions API as OpenCode calls it: whole SSE sequences for each kind of
//! step, the follow-up turn, rate limiting and a request without a stage line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{Sim, scenario, start};

const PATH: &str = "/v1/chat/completions";

/// A request shaped like OpenCode's (through `@ai-sdk/openai-compatible`); `history` after the
/// prompt.
fn request(sim: &Sim, stage: &str, history: &[Value]) -> Value {
    let mut messages = vec![
        json!({"role": "system", "content": format!("You are opencode.\n<env>\n  Working directory: {}\n  Platform: linux\n</env>", sim.work())}),
        json!({"role": "user", "content": format!("Atelier-Stage: {stage}\n\nImplement the task.")}),
    ];
    messages.extend(history.iter().cloned());
    let tool = |name: &str| json!({"type": "function", "function": {"name": name, "description": name, "parameters": {"type": "object"}}});
    json!({
        "model": "fake-model",
        "max_tokens": 32000,
        "messages": messages,
        "tools": [tool("bash"), tool("edit"), tool("read"), tool("write")],
        "tool_choice": "auto",
        "stream": true,
        "stream_options": {"include_usage": true}
    })
}

/// An assistant tool call and its result, as OpenCode sends them back.
fn call(name: &str, arguments: Value) -> [Value; 2] {
    [
        json!({"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": name, "arguments": arguments.to_string()}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "ok"}),
    ]
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "ID", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// Joins consecutive argument and content pieces (the stream cuts long strings).
fn settle(events: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for e in events {
        if let Some(last) = out.last_mut() {
            let piece = |v: &Value| {
                let d = &v["choices"][0]["delta"];
                if d["tool_calls"][0]["id"].is_null()
                    && d["tool_calls"][0]["function"]["arguments"].is_string()
                {
                    Some((
                        "args",
                        d["tool_calls"][0]["function"]["arguments"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    ))
                } else {
                    None
                }
            };
            if let (Some((_, a)), Some((_, b))) = (piece(last), piece(&e)) {
                last["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] =
                    json!(a + &b);
                continue;
            }
        }
        out.push(e);
    }
    out
}

/// The whole sequence: role chunk, `deltas`, finish chunk, usage chunk, `[DONE]`.
fn sequence(deltas: Vec<Value>, finish: &str) -> Vec<Value> {
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    out.extend(deltas.into_iter().map(|d| chunk(d, Value::Null)));
    out.push(chunk(json!({}), json!(finish)));
    out.push(json!({"id": "ID", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
        "choices": [], "usage": {"prompt_tokens": "N", "completion_tokens": "N", "total_tokens": "N"}}));
    out.push(json!("[DONE]"));
    out
}

/// The two deltas of a tool call: name with empty arguments, then the arguments.
fn tool(name: &str, arguments: &Value) -> [Value; 2] {
    [
        json!({"tool_calls": [{"id": "ID", "type": "function", "index": 0, "function": {"name": name, "arguments": ""}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": arguments.to_string()}}]}),
    ]
}

#[tokio::test]
async fn plays_a_whole_turn_in_opencode_vocabulary() {
    let sim = start(&[("implement", scenario())]).await;
    let work = sim.work();

    // Step 0: reasoning + content, then the write as OpenCode's write tool.
    let events = settle(sim.events(PATH, &request(&sim, "implement #0", &[])).await);
    let write = json!({"filePath": format!("{work}/a.txt"), "content": "hi\n"});
    let mut deltas = vec![
        json!({"reasoning_content": "Let me write it"}),
        json!({"content": "Writing a.txt"}),
    ];
    deltas.extend(tool("write", &write));
    assert_eq!(events, sequence(deltas, "tool_calls"));

    // Step 1: the run step as bash.
    let mut history = call("write", write).to_vec();
    let events = settle(
        sim.events(PATH, &request(&sim, "implement #0", &history))
            .await,
    );
    let bash = json!({"command": "cat a.txt", "description": "Run cat a.txt"});
    assert_eq!(events, sequence(tool("bash", &bash).to_vec(), "tool_calls"));

    // Step 2: the signal step.
    history.extend(call("bash", bash));
    let events = settle(
        sim.events(PATH, &request(&sim, "implement #0", &history))
            .await,
    );
    let signal = "atelier signal plan-ready --note 'it'\\''s done'";
    let bash = json!({"command": signal, "description": format!("Run {signal}")});
    assert_eq!(events, sequence(tool("bash", &bash).to_vec(), "tool_calls"));

    // The last message ends the turn.
    history.extend(call("bash", bash));
    let events = settle(
        sim.events(PATH, &request(&sim, "implement #0", &history))
            .await,
    );
    assert_eq!(
        events,
        sequence(vec![json!({"content": "All done."})], "stop")
    );

    // Turn 1 after a follow-up (given as content parts this time).
    history.push(json!({"role": "assistant", "content": "All done."}));
    history.push(
        json!({"role": "user", "content": [{"type": "text", "text": "What did you change?"}]}),
    );
    let events = settle(
        sim.events(PATH, &request(&sim, "implement #0", &history))
            .await,
    );
    assert_eq!(
        events,
        sequence(vec![json!({"content": "What did you change?"})], "stop")
    );

    let recorded = sim.sim.requests();
    assert_eq!(recorded.len(), 5);
    assert_eq!(recorded[1].tool_names(), ["bash", "edit", "read", "write"]);
    assert_eq!(
        recorded[1].answer.as_deref(),
        Some("implement #0 turn 0 step 1: tool bash")
    );
}

#[tokio::test]
async fn rate_limits_twice_then_answers() {
    let sim = start(&[("implement", scenario())]).await;
    let body = request(&sim, "implement #1", &[]);
    for _ in 0..2 {
        let (status, text) = sim.post(PATH, &body).await;
        assert_eq!(status, 429);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    }
    let events = settle(sim.events(PATH, &body).await);
    assert_eq!(
        events,
        sequence(vec![json!({"content": "after the rate limit"})], "stop")
    );
}

#[tokio::test]
async fn a_request_without_a_stage_line_is_a_clear_400() {
    let sim = start(&[("implement", scenario())]).await;
    let mut body = request(&sim, "implement #0", &[]);
    body["messages"][1]["content"] = json!("Just do it.");
    let (status, text) = sim.post(PATH, &body).await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no `Atelier-Stage: <stage> #<iteration>` line"),
        "{message}"
    );
}

#[tokio::test]
async fn title_requests_without_tools_get_a_title() {
    let sim = start(&[]).await;
    let body = json!({"model": "fake-model", "stream": true, "messages": [
        {"role": "system", "content": "Generate a title"}, {"role": "user", "content": "Atelier-Stage: plan #0"}]});
    let events = sim.events(PATH, &body).await;
    assert_eq!(
        events,
        sequence(
            vec![json!({"content": "Atelier simulated session"})],
            "stop"
        )
    );
}
