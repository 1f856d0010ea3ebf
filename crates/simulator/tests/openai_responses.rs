//! The OpenAI Responses API as Codex calls it: whole SSE sequences for each kind of step, the
//! follow-up turn, rate limiting and a request without a stage line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{Sim, normalize, scenario, start};

const PATH: &str = "/v1/responses";

/// A request shaped like Codex 0.169's: developer permissions, the environment context and the
/// prompt as separate user messages, Codex's tools; `history` after the prompt.
fn request(sim: &Sim, stage: &str, history: &[Value]) -> Value {
    let user = |text: String| json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]});
    let mut input = vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text",
            "text": "<permissions instructions>\nFull access.\n</permissions instructions>"}]}),
        user(format!(
            "<environment_context>\n  <cwd>{}</cwd>\n  <shell>bash</shell>\n</environment_context>",
            sim.work()
        )),
        user(format!("Atelier-Stage: {stage}\n\nImplement the task.")),
    ];
    input.extend(history.iter().cloned());
    json!({
        "model": "gpt-5.5",
        "instructions": "You are Codex, a coding agent.",
        "input": input,
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
            {"type": "function", "name": "write_stdin", "parameters": {"type": "object"}},
            {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
            {"type": "web_search"}
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "reasoning": {"effort": "medium"},
        "store": false,
        "stream": true,
        "include": ["reasoning.encrypted_content"]
    })
}

/// A function call and its output, as Codex sends them back.
fn call(name: &str, arguments: Value) -> [Value; 2] {
    [
        json!({"type": "function_call", "name": name, "arguments": arguments.to_string(), "call_id": "call_1"}),
        json!({"type": "function_call_output", "call_id": "call_1", "output": "ok"}),
    ]
}

fn ev(name: &str, mut data: Value) -> Value {
    data["type"] = json!(name);
    json!({"event": name, "data": data})
}

/// Checks the sequence numbers count from 0, drops them, and joins consecutive deltas of one
/// kind (the stream cuts long text into pieces).
fn settle(events: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for (i, mut e) in events.into_iter().enumerate() {
        assert_eq!(e["data"]["sequence_number"], i, "{e}");
        e["data"].as_object_mut().unwrap().remove("sequence_number");
        if let Some(last) = out.last_mut()
            && last["event"] == e["event"]
            && e["event"].as_str().unwrap().ends_with(".delta")
        {
            let joined = format!(
                "{}{}",
                last["data"]["delta"].as_str().unwrap(),
                e["data"]["delta"].as_str().unwrap()
            );
            last["data"]["delta"] = json!(joined);
            continue;
        }
        out.push(e);
    }
    out
}

fn response(status: &str, output: Value) -> Value {
    let mut r = json!({"id": "ID", "object": "response", "created_at": 0, "model": "gpt-5.5",
        "status": status, "output": output});
    if status == "completed" {
        r["usage"] = json!({"input_tokens": "N", "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": "N", "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": "N"});
    }
    r
}

/// The whole sequence around `items` (each: its events and its final item).
fn sequence(items: Vec<(Vec<Value>, Value)>) -> Vec<Value> {
    let mut out = vec![
        ev(
            "response.created",
            json!({"response": response("in_progress", json!([]))}),
        ),
        ev(
            "response.in_progress",
            json!({"response": response("in_progress", json!([]))}),
        ),
    ];
    let mut done = Vec::new();
    for (events, item) in items {
        out.extend(events);
        done.push(item);
    }
    out.push(ev(
        "response.completed",
        json!({"response": response("completed", json!(done))}),
    ));
    out
}

fn message(index: usize, text: &str) -> (Vec<Value>, Value) {
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let item = json!({"type": "message", "id": "ID", "status": "completed", "role": "assistant", "content": [part]});
    let at = |extra: Value| {
        let mut v = json!({"output_index": index, "item_id": "ID", "content_index": 0});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let events = vec![
        ev(
            "response.output_item.added",
            json!({"output_index": index, "item":
            {"type": "message", "id": "ID", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        ev(
            "response.content_part.added",
            at(json!({"part": {"type": "output_text", "text": "", "annotations": []}})),
        ),
        ev("response.output_text.delta", at(json!({"delta": text}))),
        ev("response.output_text.done", at(json!({"text": text}))),
        ev("response.content_part.done", at(json!({"part": part}))),
        ev(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ),
    ];
    (events, item)
}

fn reasoning(index: usize, text: &str) -> (Vec<Value>, Value) {
    let part = json!({"type": "summary_text", "text": text});
    let item = json!({"type": "reasoning", "id": "ID", "summary": [part]});
    let at = |extra: Value| {
        let mut v = json!({"output_index": index, "item_id": "ID", "summary_index": 0});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let events = vec![
        ev(
            "response.output_item.added",
            json!({"output_index": index, "item": {"type": "reasoning", "id": "ID", "summary": []}}),
        ),
        ev(
            "response.reasoning_summary_part.added",
            at(json!({"part": {"type": "summary_text", "text": ""}})),
        ),
        ev(
            "response.reasoning_summary_text.delta",
            at(json!({"delta": text})),
        ),
        ev(
            "response.reasoning_summary_text.done",
            at(json!({"text": text})),
        ),
        ev(
            "response.reasoning_summary_part.done",
            at(json!({"part": part})),
        ),
        ev(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ),
    ];
    (events, item)
}

/// A tool item: `custom_tool_call` with text input, or `function_call` with JSON arguments.
fn tool(index: usize, name: &str, custom: bool, input: &str) -> (Vec<Value>, Value) {
    let (kind, field, event) = if custom {
        (
            "custom_tool_call",
            "input",
            "response.custom_tool_call_input",
        )
    } else {
        (
            "function_call",
            "arguments",
            "response.function_call_arguments",
        )
    };
    let mut item =
        json!({"type": kind, "id": "ID", "status": "completed", "call_id": "ID", "name": name});
    item[field] = json!(input);
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    added[field] = json!("");
    let mut done = json!({"output_index": index, "item_id": "ID"});
    done[field] = json!(input);
    let events = vec![
        ev(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        ),
        ev(
            &format!("{event}.delta"),
            json!({"output_index": index, "item_id": "ID", "delta": input}),
        ),
        ev(&format!("{event}.done"), done),
        ev(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ),
    ];
    (events, item)
}

#[tokio::test]
async fn plays_a_whole_turn_in_codex_vocabulary() {
    let sim = start(&[("implement", scenario())]).await;
    let work = sim.work();

    // Step 0: reasoning + message, then the write as an apply_patch custom tool call.
    let events = settle(sim.events(PATH, &request(&sim, "implement #0", &[])).await);
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n";
    assert_eq!(
        events,
        sequence(vec![
            reasoning(0, "Let me write it"),
            message(1, "Writing a.txt"),
            tool(2, "apply_patch", true, patch)
        ])
    );

    // Step 1: the run step as exec_command.
    let mut history = vec![
        json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "Let me write it"}], "encrypted_content": null}),
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Writing a.txt"}]}),
        json!({"type": "custom_tool_call", "name": "apply_patch", "input": patch, "call_id": "call_0"}),
        json!({"type": "custom_tool_call_output", "call_id": "call_0", "output": "Success."}),
    ];
    let events = settle(
        sim.events(PATH, &request(&sim, "implement #0", &history))
            .await,
    );
    let args = json!({"cmd": "cat a.txt", "workdir": work, "login": false, "yield_time_ms": 30000})
        .to_string();
    assert_eq!(
        events,
        sequence(vec![tool(0, "exec_command", false, &args)])
    );

    // Step 2: the signal step.
    history.extend(call("exec_command", json!({"cmd": "cat a.txt"})));
    let events = settle(
        sim.events(PATH, &request(&sim, "implement #0", &history))
            .await,
    );
    let args = json!({"cmd": "atelier signal plan-ready --note 'it'\\''s done'", "workdir": work,
        "login": false, "yield_time_ms": 30000})
    .to_string();
    assert_eq!(
        events,
        sequence(vec![tool(0, "exec_command", false, &args)])
    );

    // The last message ends the turn.
    history.extend(call(
        "exec_command",
        json!({"cmd": "atelier signal plan-ready"}),
    ));
    let events = settle(
        sim.events(PATH, &request(&sim, "implement #0", &history))
            .await,
    );
    assert_eq!(events, sequence(vec![message(0, "All done.")]));

    // Turn 1 after a follow-up (Codex repeats the environment context; it does not count).
    history.push(json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "All done."}]}));
    history.push(
        json!({"type": "message", "role": "user", "content": [{"type": "input_text",
        "text": "<environment_context>\n  <cwd>/elsewhere</cwd>\n</environment_context>"}]}),
    );
    history.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What did you change?"}]}));
    let events = settle(
        sim.events(PATH, &request(&sim, "implement #0", &history))
            .await,
    );
    assert_eq!(events, sequence(vec![message(0, "What did you change?")]));

    let recorded = sim.sim.requests();
    assert_eq!(recorded.len(), 5);
    assert_eq!(recorded[0].model(), Some("gpt-5.5"));
    assert_eq!(
        recorded[0].tool_names(),
        ["exec_command", "write_stdin", "apply_patch", "web_search"]
    );
    assert_eq!(
        recorded[0].answer.as_deref(),
        Some("implement #0 turn 0 step 0: tool apply_patch")
    );
}

#[tokio::test]
async fn uses_the_shell_tool_when_exec_command_is_missing() {
    let sim = start(&[("implement", scenario())]).await;
    let mut body = request(&sim, "implement #0", &[]);
    body["tools"] = json!([{"type": "function", "name": "shell", "parameters": {}}]);
    let events = settle(sim.events(PATH, &body).await);
    // No apply_patch on offer: the write goes through the shell.
    let args = json!({"command": ["bash", "-c", "cat > a.txt <<'ATELIER_EOF'\nhi\nATELIER_EOF"],
        "workdir": sim.work()})
    .to_string();
    assert_eq!(
        events,
        sequence(vec![
            reasoning(0, "Let me write it"),
            message(1, "Writing a.txt"),
            tool(2, "shell", false, &args)
        ])
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
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"error": {"message": "Rate limit exceeded: too many requests (simulated). Please try again later.",
                "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
        );
    }
    let events = settle(sim.events(PATH, &body).await);
    assert_eq!(events, sequence(vec![message(0, "after the rate limit")]));
}

#[tokio::test]
async fn a_request_without_a_stage_line_is_a_clear_400() {
    let sim = start(&[("implement", scenario())]).await;
    let mut body = request(&sim, "implement #0", &[]);
    body["input"][2]["content"][0]["text"] = json!("Just do it.");
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
async fn answers_without_streaming_too() {
    let sim = start(&[("implement", scenario())]).await;
    let mut body = request(&sim, "implement #0", &[]);
    body["stream"] = json!(false);
    let (status, text) = sim.post(PATH, &body).await;
    assert_eq!(status, 200);
    let got = normalize(serde_json::from_str(&text).unwrap());
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n";
    let items = [
        reasoning(0, "Let me write it").1,
        message(1, "Writing a.txt").1,
        tool(2, "apply_patch", true, patch).1,
    ];
    assert_eq!(got, response("completed", json!(items)));
}
