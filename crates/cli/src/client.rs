//! The HTTP client of the admin and agent commands: one bearer token, JSON in and out, and
//! errors that say which server failed and how (unreachable, or the server's own message).

use crate::config::Target;
use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(target: Target) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Client {
            http,
            base: target.url,
            token: target.token,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(self.http.get(self.url(path))).await?;
        self.decode(path, response).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let response = self.send(self.http.post(self.url(path)).json(body)).await?;
        self.decode(path, response).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let response = self.send(self.http.put(self.url(path)).json(body)).await?;
        self.decode(path, response).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(self.http.delete(self.url(path))).await?;
        self.decode(path, response).await
    }

    /// A successful response whose body the caller streams.
    /// Every item of a paginated list (`GET /api/tasks`, `/api/projects`): follows the
    /// `Link: <…>; rel="next"` header of each page.
    pub async fn get_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(path) = next.take() {
            let response = self.send(self.http.get(self.url(&path))).await?;
            next = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let page: Vec<T> = self.decode(&path, response).await?;
            items.extend(page);
        }
        Ok(items)
    }

    pub async fn get_stream(&self, path: &str) -> Result<reqwest::Response> {
        self.send(self.http.get(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with the bearer token; a non-2xx status becomes an error with the server's message.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| {
                value
                    .get("error")
                    .and_then(|e| e.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| body.trim().to_string());
        let message = if message.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        } else {
            message
        };
        Err(anyhow!("{message} (HTTP {})", status.as_u16()))
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        path: &str,
        response: reqwest::Response,
    ) -> Result<T> {
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(&err))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "unexpected answer from {}{path}: is that an Atelier server of the same version?",
                self.base
            )
        })
    }

    fn transport_error(&self, err: &reqwest::Error) -> anyhow::Error {
        let cause = root_cause(err);
        if err.is_connect() {
            anyhow!(
                "the Atelier server at {} is not reachable ({cause}): start it with `atelier \
                 serve` or check ATELIER_URL",
                self.base
            )
        } else if err.is_timeout() {
            anyhow!(
                "the Atelier server at {} did not answer in time ({cause})",
                self.base
            )
        } else {
            anyhow!(
                "request to the Atelier server at {} failed: {cause}",
                self.base
            )
        }
    }
}

/// The innermost error message (reqwest's own message hides the OS error).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// The target of the `rel="next"` link of a `Link` header, when it is a path on the server.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        (next && target.starts_with('/')).then(|| target.to_string())
    })
}

#[cfg(test)]
mod link_tests {
    use super::next_link;

    #[test]
    fn the_next_link_is_found() {
        assert_eq!(
            next_link("</api/tasks?limit=2&after=4>; rel=\"next\"").as_deref(),
            Some("/api/tasks?limit=2&after=4")
        );
        assert_eq!(next_link("</api/tasks>; rel=\"prev\""), None);
        assert_eq!(next_link("<http://elsewhere/x>; rel=\"next\""), None);
    }
}
