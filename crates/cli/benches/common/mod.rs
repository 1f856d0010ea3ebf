//! What the benchmarks share: their command-line options, the wall clock in microseconds and a
//! log follower.

#![allow(dead_code)] // each benchmark uses what it needs

use std::time::{SystemTime, UNIX_EPOCH};

/// The number after `name` on the command line (`cargo bench … -- --tasks 50`), else `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Microseconds since the epoch (what the server's `at_us` stamps are compared with).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Follows a task's log (`GET …/logs?follow=true`, NDJSON) to its end: the events received and
/// whether the end marker came.
pub async fn follow(url: String, token: String) -> (usize, bool) {
    let mut response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (mut events, mut ended, mut rest) = (0usize, false, Vec::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = rest[start..].iter().position(|b| *b == b'\n') {
            let line = &rest[start..start + end];
            if line.starts_with(br#"{"item":"event""#) {
                events += 1;
            } else if line.starts_with(br#"{"item":"end""#) {
                ended = true;
            }
            start += end + 1;
        }
        rest.drain(..start);
    }
    (events, ended)
}
