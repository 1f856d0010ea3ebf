//! Every request the simulator receives, in arrival order: when it arrived, method, path, headers
//! (secrets redacted), the JSON body, what the simulator answered and when that answer ended.
//! Kept in memory for `GET /_sim/requests` and [`Simulator::requests`](crate::Simulator::requests),
//! and optionally appended to a JSONL file, one request per line once its answer has ended.

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
    /// When the answer ended, same clock as `received_at_us`: its last byte handed to the
    /// connection (a whole body: when it was ready), or the connection gone. `None` while it is
    /// still streaming (and in recordings made before this field existed). `finished_at_us -
    /// received_at_us` is the model time of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_us: Option<u64>,
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
            finished_at_us: None,
        });
        seq
    }

    /// Notes what request `seq` was answered.
    pub fn answered(&self, seq: u64, answer: String) {
        let mut requests = lock(&self.requests);
        if let Some(request) = requests.iter_mut().rev().find(|r| r.seq == seq) {
            request.answer = Some(answer);
        }
    }

    /// Notes that the answer to request `seq` ended at `finished_at_us` (µs since the Unix
    /// epoch) and appends the request to the file. Only the first call counts.
    pub fn finished(&self, seq: u64, finished_at_us: u64) {
        let line = {
            let mut requests = lock(&self.requests);
            let Some(request) = requests.iter_mut().rev().find(|r| r.seq == seq) else {
                return;
            };
            if request.finished_at_us.is_some() {
                return;
            }
            request.finished_at_us = Some(finished_at_us);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_ends_once_and_is_written_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let recorder = Recorder::with_file(&path).unwrap();
        let seq = recorder.arrive(
            1_000,
            "POST",
            "/v1/messages",
            &HeaderMap::new(),
            Value::Null,
        );
        recorder.answered(seq, "plan #0 turn 0 step 0: end of turn".into());
        // Answered but still streaming: in memory, not yet in the file.
        assert_eq!(recorder.list()[0].finished_at_us, None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        recorder.finished(seq, 1_250);
        recorder.finished(seq, 9_999);
        let listed = recorder.list();
        assert_eq!(listed[0].finished_at_us, Some(1_250));
        let file: Vec<RecordedRequest> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(file, listed);
    }

    #[test]
    fn a_recording_without_the_end_time_still_loads() {
        let old = r#"{"seq":1,"received_at_us":5,"method":"POST","path":"/v1/messages",
            "headers":{},"body":null,"answer":"probe"}"#;
        let request: RecordedRequest = serde_json::from_str(old).unwrap();
        assert_eq!(request.finished_at_us, None);
        assert_eq!(request.answer.as_deref(), Some("probe"));
    }
}
