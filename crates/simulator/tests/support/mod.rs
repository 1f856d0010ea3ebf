//! Shared test helpers: a simulator on 127.0.0.1:0 with scenario files in a temp dir, a POST
//! helper, an SSE parser and a normalizer that blanks ids, timestamps and token counts.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::{Value, json};
use simulator::Simulator;
use std::path::PathBuf;

/// The scenario every API test plays, as `implement.json`.
pub fn scenario() -> Value {
    json!({"runs": [
        {"turns": [
            [
                {"do": "thinking", "text": "Let me write it"},
                {"do": "message", "text": "Writing a.txt"},
                {"do": "write", "path": "a.txt", "content": "hi\n"},
                {"do": "run", "command": "cat a.txt"},
                {"do": "signal", "args": ["plan-ready", "--note", "it's done"]},
                {"do": "message", "text": "All done."}
            ],
            [{"do": "echo_input"}]
        ]},
        [
            {"do": "http_error", "status": 429, "times": 2},
            {"do": "message", "text": "after the rate limit"}
        ]
    ]})
}

pub struct Sim {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    /// The agent's working directory (inside `dir`).
    pub work: PathBuf,
}

/// A simulator playing `scenarios` (file stem → content).
pub async fn start(scenarios: &[(&str, Value)]) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("scenarios");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&scen).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    for (stem, content) in scenarios {
        std::fs::write(scen.join(format!("{stem}.json")), content.to_string()).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener, scen).await;
    Sim { sim, dir, work }
}

impl Sim {
    pub fn work(&self) -> String {
        self.work.to_string_lossy().into_owned()
    }

    /// POSTs `body` to `path`; returns the status and the body text.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.sim.url()))
            .header("x-api-key", "sk-secret")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// POSTs and parses the SSE answer, normalized; panics unless the status is 200.
    pub async fn events(&self, path: &str, body: &Value) -> Vec<Value> {
        let (status, text) = self.post(path, body).await;
        assert_eq!(status, 200, "{text}");
        sse(&text).into_iter().map(normalize).collect()
    }
}

/// Parses an SSE body into `{"event": name, "data": json}` (Chat Completions: `data` only;
/// `[DONE]` stays a string).
pub fn sse(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut event = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(name) = line.strip_prefix("event: ") {
                event = Some(name.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            } else {
                panic!("not an SSE line: {line:?}");
            }
        }
        let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
        out.push(match event {
            Some(name) => json!({"event": name, "data": data}),
            None => data,
        });
    }
    out
}

/// Blanks what changes from run to run: ids become `"ID"`, timestamps `0`, token counts `"N"`
/// (after checking they are positive).
pub fn normalize(mut value: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (key, val) in map.iter_mut() {
                    match key.as_str() {
                        "id" | "call_id" | "item_id" | "tool_use_id" | "request_id"
                            if val.is_string() =>
                        {
                            *val = json!("ID");
                        }
                        "created" | "created_at" => *val = json!(0),
                        "input_tokens" | "output_tokens" | "prompt_tokens"
                        | "completion_tokens" | "total_tokens" => {
                            assert!(val.as_u64().unwrap() > 0, "{key} = {val}");
                            *val = json!("N");
                        }
                        _ => walk(val),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}
