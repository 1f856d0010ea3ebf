//! What the decoder tests share: decoding a recorded stream (`tests/fixtures/<cli>/<name>.jsonl`)
//! and comparing the whole decoding with its reviewed `insta` snapshot
//! (`tests/snapshots/<cli>/<name>.snap`).
//!
//! Ids (sessions, tool calls) are redacted to `[id-N]`, numbered in order of first appearance:
//! a re-recording that only changes them does not change the snapshot, while a result paired
//! with the wrong call still does. A changed decoding fails the test (under `CI=true` insta
//! never writes a snapshot); after a deliberate change, rewrite the snapshots with
//! `INSTA_UPDATE=always cargo test -p harness --test claude --test codex --test opencode` (or
//! `cargo insta review`) and review the diff.

use domain::TranscriptEvent;
use harness::Harness;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// What a decoder made of one recorded stream.
#[derive(Debug, serde::Serialize)]
pub struct Decoded {
    pub events: Vec<TranscriptEvent>,
    pub unreadable_lines: u64,
}

/// Decodes the recording `tests/fixtures/<cli>/<name>.jsonl` with a fresh decoder of `harness`
/// and compares the result with the snapshot `tests/snapshots/<cli>/<name>.snap`.
pub fn check_recording(harness: &dyn Harness, cli: &str, name: &str) -> Decoded {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let recording = dir.join("fixtures").join(cli).join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&recording)
        .unwrap_or_else(|e| panic!("{}: {e}", recording.display()));
    let mut decoder = harness.decoder();
    let events = text.lines().flat_map(|l| decoder.line(l)).collect();
    let decoded = Decoded {
        events,
        unreadable_lines: decoder.unreadable_lines(),
    };
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir.join("snapshots").join(cli));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_input_file(&recording);
    settings.add_redaction(".events[].id", numbered_ids());
    settings.bind(|| insta::assert_json_snapshot!(name, decoded));
    assert_eq!(decoded.unreadable_lines, 0, "{name}: unreadable lines");
    decoded
}

/// A redaction that replaces each distinct id with `[id-N]`, N counting from 1 in order of first
/// appearance.
fn numbered_ids() -> insta::internals::Redaction {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    insta::dynamic_redaction(move |value, _path| {
        let Some(id) = value.as_str().map(str::to_string) else {
            return value;
        };
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        let n = match seen.iter().position(|s| *s == id) {
            Some(i) => i + 1,
            None => {
                seen.push(id);
                seen.len()
            }
        };
        insta::internals::Content::from(format!("[id-{n}]"))
    })
}
