//! Every request the simulator receives, in arrival order: when it arrived, method, path, headers
//! (secrets redacted), the JSON body, and what the simulator answered. Kept in memory for
//! `GET /_sim/requests` and [`Simulator::requests`](crate::Simulator::requests), and optionally
//! appended to a JSONL file, one request per line once its answer is decided.

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Headers whose values are secrets; recorded as [`REDACTED`].
const SECRET_HEADERS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "proxy-authorization",
    "x-goog-api-key",
];

/// What a secret header's value is recorded as.
pub const REDACTED: &str = "<redacted>";

/// One request as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 1 for the first request the simulator received.
    pub seq: u64,
    /// When the request arrived (its head read, before its body), in microseconds since the
    /// Unix epoch: the clock of `runs.spawned_us` and the live stream's `at_us`, so a benchmark
    /// can measure an agent's hand-off (process spawned → first model request).
    #[serde(default)]
    pub received_at_us: u64,
    pub method: String,
    /// Path and query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// Header names in lower case; secret values are [`REDACTED`].
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body; `null` when empty; `{"unparsed": "…"}` when not JSON.
    pub body: Value,
    /// What the simulator answered, e.g. `review #0 turn 0 step 1: tool Bash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl RecordedRequest {
    /// `body.model`, if any.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// The names of the tools the request offered (Anthropic `name`, Responses `name` or
    /// `type`, Chat `function.name`).
    pub fn tool_names(&self) -> Vec<String> {
        let Some(tools) = self.body.get("tools").and_then(Value::as_array) else {
            return Vec::new();
        };
        tools
            .iter()
            .filter_map(|t| {
                t.get("name")
                    .or_else(|| t.get("function").and_then(|f| f.get("name")))
                    .or_else(|| t.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    }
}

/// The request log.
#[derive(Debug, Default)]
pub struct Recorder {
    requests: Mutex<Vec<RecordedRequest>>,
    next: Mutex<u64>,
    file: Option<Mutex<File>>,
}

impl Recorder {
    /// A recorder that also appends to `file` (created when missing).
    pub fn with_file(path: &Path) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder {
            file: Some(Mutex::new(file)),
            ..Recorder::default()
        })
    }

    /// Records a request that arrived at `received_at_us` (µs since the Unix epoch); returns
    /// its sequence number.
    pub fn arrive(
        &self,
        received_at_us: u64,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: Value,
    ) -> u64 {
        let seq = {
            let mut next = lock(&self.next);
            *next += 1;
            *next
        };
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let name = name.as_str().to_ascii_lowercase();
                let value = if SECRET_HEADERS.contains(&name.as_str()) {
                    REDACTED.to_string()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name, value)
            })
            .collect();
        lock(&self.requests).push(RecordedRequest {
            seq,
            received_at_us,
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body,
            answer: None,
        });
        seq
    }

    /// Notes what request `seq` was answered and appends it to the file.
    pub fn answered(&self, seq: u64, answer: String) {
        let line = {
            let mut requests = lock(&self.requests);
            let Some(request) = requests.iter_mut().rev().find(|r| r.seq == seq) else {
                return;
            };
            request.answer = Some(answer);
            serde_json::to_string(request)
        };
        if let (Some(file), Ok(line)) = (&self.file, line) {
            let mut file = lock(file);
            if let Err(err) = writeln!(file, "{line}") {
                tracing::warn!(%err, "cannot append to the simulator's request log");
            }
        }
    }

    /// Every request so far, in arrival order.
    pub fn list(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    /// Forgets the requests so far (the file keeps them).
    pub fn clear(&self) {
        lock(&self.requests).clear();
    }
}

/// Now, in microseconds since the Unix epoch (0 for a clock set before it).
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
