//! What the benchmarks share: their command-line options and the wall clock in microseconds.

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
