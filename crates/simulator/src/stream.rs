//! Response bodies as a list of chunks with pauses in between, streamed by axum: the SSE
//! writer the three APIs share, pacing for `slow`, and the shutdown signal that ends every
//! pause, stall and hang at once.

use crate::play::{Answer, Part, Tail};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Bytes of text or tool input per delta event.
pub const PIECE: usize = 48;

/// One step of a response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Data(Bytes),
    Pause(Duration),
    /// Send nothing more and never end (until shutdown).
    Hang,
    /// Drop the connection.
    Cut,
}

/// A response body under construction.
#[derive(Debug, Clone)]
pub struct Out {
    pub content_type: &'static str,
    pub chunks: Vec<Chunk>,
    /// Pause before every event (`slow`).
    pub pacing: Option<Duration>,
}

impl Out {
    /// An SSE body.
    pub fn sse(pacing: Option<Duration>) -> Out {
        Out {
            content_type: "text/event-stream",
            chunks: Vec::new(),
            pacing,
        }
    }

    /// A JSON body, sent whole.
    pub fn json(value: &Value) -> Out {
        let mut out = Out {
            content_type: "application/json",
            chunks: Vec::new(),
            pacing: None,
        };
        out.raw(value.to_string());
        out
    }

    /// `event: name` + `data: json` (the Anthropic and Responses style).
    pub fn event(&mut self, name: &str, data: &Value) {
        self.paced(format!("event: {name}\ndata: {data}\n\n"));
    }

    /// `data: json` only (the Chat Completions style).
    pub fn data(&mut self, data: &Value) {
        self.paced(format!("data: {data}\n\n"));
    }

    /// Text as is, paced like an event.
    pub fn paced(&mut self, text: String) {
        if let Some(pause) = self.pacing {
            self.chunks.push(Chunk::Pause(pause));
        }
        self.raw(text);
    }

    /// Text as is, without pacing.
    pub fn raw(&mut self, text: String) {
        self.chunks.push(Chunk::Data(Bytes::from(text)));
    }

    pub fn push(&mut self, chunk: Chunk) {
        self.chunks.push(chunk);
    }

    /// This body, then `end` (a hang or a crash instead of the rest of the response).
    pub fn ended_by(mut self, end: Chunk) -> Out {
        self.chunks.push(end);
        self
    }

    /// A whole-JSON answer: its pauses, hang and crash still happen, before the body.
    pub fn whole(value: &Value, answer: &Answer) -> Out {
        let mut chunks: Vec<Chunk> = answer
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Pause(d) => Some(Chunk::Pause(*d)),
                _ => None,
            })
            .collect();
        match answer.tail {
            Tail::Hang => chunks.push(Chunk::Hang),
            Tail::Cut => chunks.push(Chunk::Cut),
            Tail::EndTurn | Tail::Action(_) => {}
        }
        let mut out = Out::json(value);
        chunks.append(&mut out.chunks);
        out.chunks = chunks;
        out
    }

    /// The HTTP response; pauses and hangs end early when `shutdown` fires.
    pub fn into_response(
        self,
        status: StatusCode,
        request_id: &str,
        shutdown: Shutdown,
    ) -> Response {
        let stream = futures::stream::unfold(
            (VecDeque::from(self.chunks), shutdown),
            |(mut queue, mut shutdown)| async move {
                loop {
                    match queue.pop_front()? {
                        Chunk::Data(bytes) => return Some((Ok(bytes), (queue, shutdown))),
                        Chunk::Pause(pause) => {
                            tokio::select! {
                                () = tokio::time::sleep(pause) => {}
                                () = shutdown.wait() => return None,
                            }
                        }
                        Chunk::Hang => {
                            shutdown.wait().await;
                            return None;
                        }
                        Chunk::Cut => {
                            // Let what came before reach the client first, as with a real crash.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let err = std::io::Error::other("simulated crash: connection dropped");
                            return Some((Err(err), (VecDeque::new(), shutdown)));
                        }
                    }
                }
            },
        );
        let mut response = Response::new(Body::from_stream(stream));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("request-id", id.clone());
            headers.insert("x-request-id", id);
        }
        response
    }
}

/// What every API's renderer needs besides the answer.
#[derive(Debug)]
pub struct Render<'a> {
    /// The model name to report (the request's).
    pub model: &'a str,
    pub ids: &'a Ids,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub stream: bool,
}

/// Fires once when the simulator shuts down (or is dropped).
#[derive(Debug, Clone)]
pub struct Shutdown(pub watch::Receiver<bool>);

impl Shutdown {
    /// Completes when the simulator shuts down.
    pub async fn wait(&mut self) {
        // An error means the sender is gone: the simulator is gone too.
        let _ = self.0.wait_for(|down| *down).await;
    }
}

/// Unique ids (`msg_…`, `toolu_…`, `call_…`), unique across simulator restarts too.
#[derive(Debug)]
pub struct Ids {
    nonce: u64,
    next: AtomicU64,
}

impl Default for Ids {
    fn default() -> Ids {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ids {
            nonce: nanos & 0xffff_ffff,
            next: AtomicU64::new(1),
        }
    }
}

impl Ids {
    pub fn make(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}sim{:08x}{n:06}", self.nonce)
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `text` cut into pieces of at most [`PIECE`] bytes (on character boundaries); none for an
/// empty text.
pub fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(PIECE);
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        out.push(piece);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_character_boundaries() {
        assert!(pieces("").is_empty());
        assert_eq!(pieces("abc"), ["abc"]);
        let long = "é".repeat(30);
        let cut = pieces(&long);
        assert_eq!(cut.concat(), long);
        assert!(cut.iter().all(|p| p.len() <= PIECE + 1));
        assert_eq!(cut.len(), 2);
    }

    #[test]
    fn ids_are_unique() {
        let ids = Ids::default();
        assert_ne!(ids.make("msg_"), ids.make("msg_"));
        assert!(ids.make("toolu_").starts_with("toolu_sim"));
    }
}
