//! The lines between the engine and the bridge (`atelier codex-bridge`), both ways.
//!
//! - **stdin** (engine → bridge): one JSON object per turn, `{"type":"turn","text":"…"}`
//!   ([`turn_line`]); closing stdin ends the session.
//! - **stdout** (bridge → engine): Codex's own server notifications, verbatim (one JSON-RPC
//!   notification per line, `{"method":"item/completed","params":{…}}`), and the bridge's own
//!   notifications under the `atelier/` prefix, in the same shape: [`SESSION`] once the thread
//!   exists, [`TURN_FAILED`] when a turn could not start (its `turn/completed` will never come),
//!   [`ERROR`] for a problem that does not end the turn. The decoder
//!   ([`crate::codex::CodexDecoder`]) reads both.

use serde_json::{Value, json};

/// The thread of the session: `{"threadId": "…", "resumed": bool}`.
pub const SESSION: &str = "atelier/session";
/// A turn that could not start: `{"message": "…"}`. Ends the turn.
pub const TURN_FAILED: &str = "atelier/turnFailed";
/// A problem of the bridge that does not end the turn: `{"message": "…"}`.
pub const ERROR: &str = "atelier/error";

/// The stdin line that hands `text` to the bridge as the session's next turn.
pub fn turn_line(text: &str) -> Vec<u8> {
    let mut line = json!({"type": "turn", "text": text})
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

/// The text of a stdin turn line; `None` when the line is not one.
pub fn parse_turn(line: &str) -> Option<String> {
    let value: Value = serde_json::from_str(line).ok()?;
    if value.get("type").and_then(Value::as_str) != Some("turn") {
        return None;
    }
    value.get("text").and_then(Value::as_str).map(str::to_owned)
}

/// One of the bridge's own stdout lines (without its newline).
pub fn notification(method: &str, params: Value) -> String {
    json!({"method": method, "params": params}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_line_round_trips_any_text() {
        for text in [
            "hello",
            "- starts with a dash",
            "two\nlines \"quoted\" \u{1F600}",
            "",
        ] {
            let line = turn_line(text);
            assert_eq!(line.last(), Some(&b'\n'));
            let line = String::from_utf8(line).unwrap_or_default();
            assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
            assert_eq!(parse_turn(line.trim_end()), Some(text.to_string()));
        }
        assert_eq!(parse_turn(r#"{"type":"other","text":"x"}"#), None);
        assert_eq!(parse_turn("not json"), None);
        assert_eq!(parse_turn(r#"{"type":"turn"}"#), None);
    }
}
