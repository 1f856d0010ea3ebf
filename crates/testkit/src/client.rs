//! A small JSON client for Atelier's REST API, authenticated with a bearer token.

use anyhow::Context as _;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// Longest time one request may take; a hung server fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends JSON requests to one server with one bearer token. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:4321`).
    pub fn new(base_url: &str, token: &str) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            // Tests talk to loopback only; a developer's HTTP(S)_PROXY must not intercept.
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            base: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    /// The same server with another bearer token (e.g. a run token, or a wrong one).
    pub fn with_token(&self, token: &str) -> ApiClient {
        ApiClient {
            token: token.to_string(),
            ..self.clone()
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The bearer token it sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `GET path` and its JSON body; fails with the status and body unless the status is 2xx.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.request(Method::GET, path, None).await?;
        if !(200..300).contains(&status) {
            anyhow::bail!("GET {path} answered {status}: {body}");
        }
        Ok(body)
    }

    /// `POST path` with a JSON body; returns the status and the JSON answer whatever the status,
    /// so tests can check refusals (409, 400 …) as well as successes.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// Any request. The answer is parsed as JSON; an empty body is `null` and a body that is not
    /// JSON comes back as a JSON string, so an unexpected plain-text error is still visible.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }
}
