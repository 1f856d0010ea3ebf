//! The HTTP layer under the GitHub forge: a thin wrapper over `reqwest` that adds what the
//! forge needs and a typed client would hide. Every call runs under the configured deadline;
//! 429s, secondary rate limits, an exhausted primary limit, 5xx answers, timeouts and
//! connection failures are retried up to `max_attempts`, honouring `retry-after` and
//! `x-ratelimit-reset` exactly (a wait beyond `max_backoff` fails with the time the call can be
//! retried); 5xx and timeouts back off exponentially from `retry_base`. GETs are conditional:
//! an in-memory ETag cache per URL sends `If-None-Match` and reuses the cached body on a 304
//! (which GitHub does not count against the rate limit). Credentials go only to the API's own
//! origin: redirects are not followed automatically, and a redirect elsewhere (a job log's
//! storage) is fetched without them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::auth::{Credentials, InstallationToken};
use super::config::GitHubConfig;
use super::models;
use super::time::{now_epoch, parse_timestamp};
use crate::ForgeError;

/// URLs whose responses the ETag cache keeps at most; past it the cache starts over.
const ETAG_CACHE_LIMIT: usize = 1024;
/// Pages followed at most for one listing.
const MAX_PAGES: usize = 50;
/// A rate limit without a `retry-after` lifts after at least a minute.
const DEFAULT_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// A response, read whole.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as `T`.
    pub fn json<T: DeserializeOwned>(&self, call: &str) -> Result<T, ForgeError> {
        serde_json::from_slice(&self.body).map_err(|err| ForgeError::BadResponse {
            call: call.to_string(),
            message: format!("{err}"),
        })
    }

    /// GitHub's error message from the body (`message` and any `errors[].message`), else the
    /// start of the body.
    pub fn error_message(&self) -> String {
        if let Ok(err) = serde_json::from_slice::<models::ApiError>(&self.body) {
            let mut message = err.message;
            let details: Vec<String> = err
                .errors
                .into_iter()
                .filter_map(|e| e.message.or(e.code))
                .collect();
            if !details.is_empty() {
                message = format!("{message} ({})", details.join("; "));
            }
            if !message.is_empty() {
                return message;
            }
        }
        let text = self.text();
        let text = text.trim();
        if text.is_empty() {
            "no message".to_string()
        } else {
            text.chars().take(300).collect()
        }
    }

    /// This response as the error of `call`.
    pub fn into_error(self, call: &str) -> ForgeError {
        ForgeError::GitHub {
            call: call.to_string(),
            status: self.status,
            message: self.error_message(),
        }
    }
}

/// Why and how long to wait before retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A rate limit: wait exactly this long (if that is longer than allowed, fail instead).
    RateLimit(Duration),
    /// A server error or timeout: back off this long (capped at the allowed maximum).
    Backoff(Duration),
}

/// Whether a response is worth retrying, and after how long. `attempt` counts from 1.
pub(crate) fn retry_wait(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    attempt: u32,
    base: Duration,
    now: SystemTime,
) -> Option<Wait> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match status {
        403 | 429 => {
            if let Some(secs) = get("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
                return Some(Wait::RateLimit(Duration::from_secs(secs)));
            }
            if get("x-ratelimit-remaining").map(str::trim) == Some("0")
                && let Some(reset) =
                    get("x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok())
            {
                let reset = UNIX_EPOCH + Duration::from_secs(reset);
                let wait = reset.duration_since(now).unwrap_or(Duration::ZERO);
                // Whole seconds: the reset time has a one-second resolution.
                let wait = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
                return Some(Wait::RateLimit(wait));
            }
            let secondary = String::from_utf8_lossy(body)
                .to_lowercase()
                .contains("secondary rate limit");
            if status == 429 || secondary {
                return Some(Wait::RateLimit(DEFAULT_LIMIT_WAIT));
            }
            None
        }
        500..=599 => Some(Wait::Backoff(backoff(base, attempt))),
        _ => None,
    }
}

/// `base`, doubled for each attempt after the first.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
}

/// The `rel="next"` URL of a `Link` header.
pub(crate) fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_string())
    })
}

/// Percent-encodes one path segment, or a ref name whose `/` stay as they are.
pub(crate) fn encode_path(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '~')
            || (keep_slash && c == '/')
        {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

struct CachedGet {
    etag: String,
    body: Vec<u8>,
    link: Option<HeaderValue>,
}

/// The GitHub API client of one forge.
pub(crate) struct Client {
    http: reqwest::Client,
    api: String,
    origin: Option<reqwest::Url>,
    credentials: Credentials,
    call_timeout: Duration,
    max_attempts: u32,
    max_backoff: Duration,
    retry_base: Duration,
    etags: Mutex<HashMap<String, CachedGet>>,
}

impl Client {
    pub fn new(config: &GitHubConfig) -> Result<Client, ForgeError> {
        let credentials = Credentials::new(&config.auth)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        let http = reqwest::Client::builder()
            .user_agent("atelier")
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.call_timeout)
            .build()
            .map_err(|err| ForgeError::Unreachable {
                call: "set up the HTTP client".to_string(),
                message: err.to_string(),
            })?;
        let api = config.api_url.trim_end_matches('/').to_string();
        let origin = Url::parse(&api).ok();
        Ok(Client {
            http,
            api,
            origin,
            credentials,
            call_timeout: config.call_timeout,
            max_attempts: config.max_attempts.max(1),
            max_backoff: config.max_backoff,
            retry_base: config.retry_base,
            etags: Mutex::new(HashMap::new()),
        })
    }

    /// The API URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Whether `url` is on the API's own origin (where credentials may go).
    fn same_origin(&self, url: &str) -> bool {
        match (&self.origin, Url::parse(url)) {
            (Some(origin), Ok(url)) => origin.origin() == url.origin(),
            _ => false,
        }
    }

    /// The token git and the API use: the personal access token, or a fresh installation token.
    pub async fn token(&self) -> Result<String, ForgeError> {
        self.token_refreshed(false).await
    }

    async fn token_refreshed(&self, force: bool) -> Result<String, ForgeError> {
        if let Some(token) = self.credentials.personal_token() {
            return Ok(token.to_string());
        }
        let Some(installation) = self.credentials.installation_id() else {
            return Err(ForgeError::Auth("no GitHub credentials".to_string()));
        };
        let mut cached = self.credentials.cache().lock().await;
        if !force
            && let Some(token) = cached.as_ref()
            && token.fresh_at(now_epoch())
        {
            return Ok(token.token.clone());
        }
        let call = format!("POST /app/installations/{installation}/access_tokens");
        let url = self.url(&format!("/app/installations/{installation}/access_tokens"));
        let jwt = format!("Bearer {}", self.credentials.app_jwt(now_epoch())?);
        let resp = self
            .execute(&call, Method::POST, &url, None, Some(&jwt), false)
            .await?;
        if !resp.is_success() {
            let status = resp.status;
            let message = resp.error_message();
            return Err(ForgeError::Auth(format!(
                "GitHub refused an installation token for installation {installation} (HTTP \
                 {status}: {message}): check the App id, its key and that the App is installed \
                 on the repository"
            )));
        }
        let issued: models::AccessToken = resp.json(&call)?;
        let expires_at =
            parse_timestamp(&issued.expires_at).ok_or_else(|| ForgeError::BadResponse {
                call: call.clone(),
                message: format!("unreadable expires_at {:?}", issued.expires_at),
            })?;
        tracing::debug!(installation, expires_at, "new GitHub installation token");
        let token = issued.token;
        *cached = Some(InstallationToken {
            token: token.clone(),
            expires_at,
        });
        Ok(token)
    }

    /// A call with the forge's token (conditional when it is a GET), retried as the module doc
    /// says. With App credentials a 401 buys a new installation token and tries once more.
    /// Returns GitHub's answer whatever its status, except for the failures retried away.
    pub async fn call(
        &self,
        call: &str,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, ForgeError> {
        let conditional = method == Method::GET;
        let authorization = self.authorization(url, false).await?;
        let resp = self
            .execute(
                call,
                method.clone(),
                url,
                body,
                authorization.as_deref(),
                conditional,
            )
            .await?;
        if resp.status == 401 && self.credentials.installation_id().is_some() {
            let authorization = self.authorization(url, true).await?;
            return self
                .execute(
                    call,
                    method,
                    url,
                    body,
                    authorization.as_deref(),
                    conditional,
                )
                .await;
        }
        Ok(resp)
    }

    /// The `Authorization` value for `url`: the token on the API's origin, nothing elsewhere.
    async fn authorization(&self, url: &str, refresh: bool) -> Result<Option<String>, ForgeError> {
        if !self.same_origin(url) {
            return Ok(None);
        }
        Ok(Some(format!(
            "Bearer {}",
            self.token_refreshed(refresh).await?
        )))
    }

    /// `GET path`, which must succeed, as `T`.
    pub async fn get<T: DeserializeOwned>(&self, call: &str, path: &str) -> Result<T, ForgeError> {
        let resp = self.call(call, Method::GET, &self.url(path), None).await?;
        if !resp.is_success() {
            return Err(resp.into_error(call));
        }
        resp.json(call)
    }

    /// A call with a JSON body that must succeed, answered with `T`.
    pub async fn send<T: DeserializeOwned>(
        &self,
        call: &str,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ForgeError> {
        let resp = self.call(call, method, &self.url(path), Some(body)).await?;
        if !resp.is_success() {
            return Err(resp.into_error(call));
        }
        resp.json(call)
    }

    /// Every page of a listing (`per_page=100`, following `Link: rel="next"` on the API's
    /// origin), each page turned into items by `items`.
    pub async fn get_all<P, T>(
        &self,
        call: &str,
        path: &str,
        items: impl Fn(P) -> Vec<T>,
    ) -> Result<Vec<T>, ForgeError>
    where
        P: DeserializeOwned,
    {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut url = self.url(&format!("{path}{separator}per_page=100"));
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = self.call(call, Method::GET, &url, None).await?;
            if !resp.is_success() {
                return Err(resp.into_error(call));
            }
            all.extend(items(resp.json::<P>(call)?));
            match resp.header("link").and_then(next_link) {
                Some(next) if self.same_origin(&next) => url = next,
                _ => break,
            }
        }
        Ok(all)
    }

    /// Fetches `url` without credentials (a redirect target on another host), with the same
    /// deadline and retries.
    pub async fn get_anonymous(&self, call: &str, url: &str) -> Result<Response, ForgeError> {
        self.execute(call, Method::GET, url, None, None, false)
            .await
    }

    /// One call with retries, carrying `authorization` (only ever the API origin's).
    /// `conditional` uses and fills the ETag cache.
    async fn execute(
        &self,
        call: &str,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        authorization: Option<&str>,
        conditional: bool,
    ) -> Result<Response, ForgeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let etag = if conditional {
                self.cached_etag(url)
            } else {
                None
            };
            let mut request = self.http.request(method.clone(), url);
            if let Some(authorization) = authorization {
                let mut value = HeaderValue::from_str(authorization).map_err(|_| {
                    ForgeError::Auth(
                        "the GitHub token contains characters a header cannot carry".to_string(),
                    )
                })?;
                value.set_sensitive(true);
                request = request.header(header::AUTHORIZATION, value);
            }
            if let Some(etag) = &etag {
                request = request.header(header::IF_NONE_MATCH, etag.as_str());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = tokio::time::timeout(self.call_timeout, async {
                let resp = request.send().await?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>(Response {
                    status,
                    headers,
                    body: body.to_vec(),
                })
            })
            .await;
            let wait = match outcome {
                Err(_elapsed) => {
                    if attempt >= self.max_attempts {
                        return Err(ForgeError::Timeout {
                            call: call.to_string(),
                            after: self.call_timeout,
                            attempts: attempt,
                        });
                    }
                    tracing::warn!(call, attempt, "GitHub did not answer in time; retrying");
                    Wait::Backoff(backoff(self.retry_base, attempt))
                }
                Ok(Err(err)) => {
                    let message = describe_transport_error(&err);
                    if attempt >= self.max_attempts {
                        return Err(ForgeError::Unreachable {
                            call: call.to_string(),
                            message,
                        });
                    }
                    tracing::warn!(call, attempt, error = %message, "GitHub unreachable; retrying");
                    Wait::Backoff(backoff(self.retry_base, attempt))
                }
                Ok(Ok(resp)) => {
                    if resp.status == 304
                        && let Some(cached) = self.cached_response(url)
                    {
                        return Ok(cached);
                    }
                    let Some(wait) = retry_wait(
                        resp.status,
                        &resp.headers,
                        &resp.body,
                        attempt,
                        self.retry_base,
                        SystemTime::now(),
                    ) else {
                        if conditional && resp.status == 200 {
                            self.remember(url, &resp);
                        }
                        return Ok(resp);
                    };
                    match wait {
                        Wait::RateLimit(wait)
                            if wait > self.max_backoff || attempt >= self.max_attempts =>
                        {
                            return Err(ForgeError::RateLimited {
                                call: call.to_string(),
                                retry_at: now_epoch() + wait.as_secs().max(1),
                            });
                        }
                        Wait::Backoff(_) if attempt >= self.max_attempts => return Ok(resp),
                        _ => {}
                    }
                    tracing::warn!(
                        call,
                        attempt,
                        status = resp.status,
                        "GitHub asked to slow down or failed; retrying"
                    );
                    wait
                }
            };
            let wait = match wait {
                Wait::RateLimit(wait) => wait,
                Wait::Backoff(wait) => wait.min(self.max_backoff),
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn cached_etag(&self, url: &str) -> Option<String> {
        let cache = self.etags.lock().ok()?;
        cache.get(url).map(|c| c.etag.clone())
    }

    fn cached_response(&self, url: &str) -> Option<Response> {
        let cache = self.etags.lock().ok()?;
        let cached = cache.get(url)?;
        let mut headers = HeaderMap::new();
        if let Some(link) = &cached.link {
            headers.insert(header::LINK, link.clone());
        }
        Some(Response {
            status: 200,
            headers,
            body: cached.body.clone(),
        })
    }

    fn remember(&self, url: &str, resp: &Response) {
        let Some(etag) = resp.header("etag") else {
            return;
        };
        if let Ok(mut cache) = self.etags.lock() {
            if cache.len() >= ETAG_CACHE_LIMIT && !cache.contains_key(url) {
                cache.clear();
            }
            cache.insert(
                url.to_string(),
                CachedGet {
                    etag: etag.to_string(),
                    body: resp.body.clone(),
                    link: resp.headers.get(header::LINK).cloned(),
                },
            );
        }
    }
}

/// A transport error with its causes (our URLs carry nothing secret).
fn describe_transport_error(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const BASE: Duration = Duration::from_secs(1);

    #[test]
    fn rate_limits_are_waited_out_as_the_headers_say() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let none = HeaderMap::new();
        assert_eq!(
            retry_wait(429, &headers(&[("retry-after", "7")]), b"", 1, BASE, now),
            Some(Wait::RateLimit(Duration::from_secs(7)))
        );
        assert_eq!(
            retry_wait(429, &none, b"", 1, BASE, now),
            Some(Wait::RateLimit(Duration::from_secs(60)))
        );
        let secondary = br#"{"message":"You have exceeded a secondary rate limit."}"#;
        assert_eq!(
            retry_wait(
                403,
                &headers(&[("retry-after", "3")]),
                secondary,
                1,
                BASE,
                now
            ),
            Some(Wait::RateLimit(Duration::from_secs(3)))
        );
        assert_eq!(
            retry_wait(403, &none, secondary, 1, BASE, now),
            Some(Wait::RateLimit(Duration::from_secs(60)))
        );
        let exhausted = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1000042"),
        ]);
        assert_eq!(
            retry_wait(403, &exhausted, b"", 1, BASE, now),
            Some(Wait::RateLimit(Duration::from_secs(42)))
        );
        assert_eq!(
            retry_wait(
                429,
                &exhausted,
                b"",
                1,
                BASE,
                now + Duration::from_secs(100)
            ),
            Some(Wait::RateLimit(Duration::ZERO))
        );
        // A plain 403 (no access) is an answer, not something to wait out.
        let forbidden = br#"{"message":"Resource not accessible by integration"}"#;
        assert_eq!(retry_wait(403, &none, forbidden, 1, BASE, now), None);
        let remaining = headers(&[("x-ratelimit-remaining", "10")]);
        assert_eq!(retry_wait(403, &remaining, forbidden, 1, BASE, now), None);
        assert_eq!(retry_wait(404, &none, b"", 1, BASE, now), None);
        assert_eq!(retry_wait(422, &none, b"", 1, BASE, now), None);
    }

    #[test]
    fn server_errors_back_off_exponentially() {
        let now = SystemTime::now();
        let none = HeaderMap::new();
        let waits: Vec<_> = (1..=4)
            .map(|attempt| retry_wait(502, &none, b"", attempt, BASE, now))
            .collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8].map(|s| Some(Wait::Backoff(Duration::from_secs(s))))
        );
        assert_eq!(
            backoff(Duration::from_millis(10), 3),
            Duration::from_millis(40)
        );
        assert!(backoff(BASE, 1000) >= Duration::from_secs(65536));
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let link = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/repositories/1/issues?page=2")
        );
        let last = r#"<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=1>; rel="first""#;
        assert_eq!(next_link(last), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(
            encode_path("atelier/7-fix login", true),
            "atelier/7-fix%20login"
        );
        assert_eq!(encode_path("a/b?c#", false), "a%2Fb%3Fc%23");
    }

    #[test]
    fn error_messages_come_from_githubs_body() {
        let resp = Response {
            status: 422,
            headers: HeaderMap::new(),
            body: br#"{"message":"Validation Failed","errors":[{"message":"A pull request already exists for o:b."}]}"#.to_vec(),
        };
        assert_eq!(
            resp.error_message(),
            "Validation Failed (A pull request already exists for o:b.)"
        );
        let err = resp.into_error("POST /repos/o/r/pulls").to_string();
        assert!(
            err.contains("POST /repos/o/r/pulls") && err.contains("422"),
            "{err}"
        );
        let plain = Response {
            status: 502,
            headers: HeaderMap::new(),
            body: b"Bad gateway".to_vec(),
        };
        assert_eq!(plain.error_message(), "Bad gateway");
    }
}
