//! A live stream (Server-Sent Events) read as text in end-to-end tests, as a browser's
//! `EventSource` receives it, with deadlines on every wait.

use super::World;
use std::time::Duration;

/// A stream read as text, as a browser's `EventSource` would receive it.
pub struct SseText {
    pub response: reqwest::Response,
    pub text: String,
}

impl SseText {
    /// Opens `path` with an API token.
    pub async fn open(world: &World, path: &str, token: &str) -> SseText {
        let request = reqwest::Client::new()
            .get(format!("{}{path}", world.server.url()))
            .bearer_auth(token);
        SseText::send(request, path).await
    }

    /// Opens `path` with a browser session's cookie (`name=value`).
    pub async fn open_in_session(world: &World, path: &str, cookie: &str) -> SseText {
        let request = reqwest::Client::new()
            .get(format!("{}{path}", world.server.url()))
            .header("cookie", cookie);
        SseText::send(request, path).await
    }

    pub async fn send(request: reqwest::RequestBuilder, path: &str) -> SseText {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        SseText {
            response,
            text: String::new(),
        }
    }

    /// Reads until `done` holds for the text received after `from`; `false` when the server
    /// ended the stream first. Fails after a deadline.
    pub async fn read_until(&mut self, from: usize, done: impl Fn(&str) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(&self.text[from..]) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("the stream said nothing awaited: {}", self.text))
                .unwrap();
            match chunk {
                Some(chunk) => self.text.push_str(std::str::from_utf8(&chunk).unwrap()),
                None => return false,
            }
        }
        true
    }

    /// Reads until the server ends the stream; fails after a deadline.
    pub async fn read_to_end(&mut self) {
        let ended = self.read_until(self.text.len(), |_| false).await;
        assert!(!ended, "unreachable: the condition never holds");
    }
}
