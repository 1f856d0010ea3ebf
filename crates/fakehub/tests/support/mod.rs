//! Shared setup of the fakehub tests: a hub with one repository (`acme/app`, seeded from a
//! sample repository with a `feature` branch one commit ahead of `main`), a token, a small REST
//! client, git over HTTP, and a webhook receiver that records what it is sent.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use fakehub::{FakeHub, Options};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TOKEN: &str = "ghp_test_token";
pub const SECRET: &str = "webhook-secret";
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct World {
    pub dir: tempfile::TempDir,
    /// The local work tree the repository was seeded from (branch `main`).
    pub work: PathBuf,
    pub hub: FakeHub,
    pub http: reqwest::Client,
    pub hooks: Receiver,
}

impl World {
    pub async fn start() -> World {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> World {
        let dir = tempfile::tempdir().unwrap();
        let repo = testkit::sample_repo(dir.path()).unwrap();
        let work = repo.path.clone();
        git(&work, &["checkout", "--quiet", "-b", "feature"]).await;
        commit(&work, "src/lib.txt", "one\ntwo\nthree\nfour\n", "Add four").await;
        git(&work, &["checkout", "--quiet", "main"]).await;
        let hub = FakeHub::start(opts).await;
        hub.create_repo("acme", "app", &work, "main").await;
        hub.add_token(TOKEN);
        let hooks = Receiver::start().await;
        hub.set_webhook(&hooks.url, SECRET);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        World {
            dir,
            work,
            hub,
            http,
            hooks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.hub.api_url())
    }

    /// A request to `path` (under `/api/v3`) with the token.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Accept", "application/vnd.github+json")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.req(reqwest::Method::POST, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.req(reqwest::Method::PATCH, path).json(&body)).await
    }

    /// Opens a PR from `feature` into `main`; returns its number.
    pub async fn open_pr(&self) -> u64 {
        let (status, pr) = self
            .post(
                "/repos/acme/app/pulls",
                serde_json::json!({"title": "Add four", "head": "acme:feature", "base": "main", "body": "Adds a line."}),
            )
            .await;
        assert_eq!(status, 201, "{pr}");
        pr["number"].as_u64().unwrap()
    }

    /// The clone URL with the token as Basic credentials.
    pub fn authed_clone_url(&self) -> String {
        self.hub
            .clone_url("acme", "app")
            .replace("http://", &format!("http://x-access-token:{TOKEN}@"))
    }

    /// Clones `acme/app` over HTTP into `<dir>/<name>`.
    pub async fn clone(&self, name: &str) -> PathBuf {
        let target = self.dir.path().join(name);
        let url = self.authed_clone_url();
        git(
            self.dir.path(),
            &["clone", "--quiet", &url, target.to_str().unwrap()],
        )
        .await;
        testkit::set_identity(&target).unwrap();
        target
    }

    /// Waits until a delivery of `event`/`action` matching `pred` was answered.
    pub async fn delivery(
        &self,
        event: &str,
        action: Option<&str>,
        pred: impl Fn(&Value) -> bool,
    ) -> fakehub::Delivery {
        let what = format!("a delivery of {event}.{action:?}");
        testkit::wait_until(&what, DEADLINE, || async {
            self.hub.deliveries().into_iter().find(|d| {
                d.event == event
                    && d.action.as_deref() == action
                    && d.status.is_some()
                    && pred(&d.body)
            })
        })
        .await
        .unwrap()
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// `git args` in `dir` (through testkit's recipe), off the async runtime.
pub async fn git(dir: &Path, args: &[&str]) -> String {
    try_git(dir, args).await.unwrap()
}

pub async fn try_git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        testkit::git(&dir, &args)
    })
    .await
    .unwrap()
}

pub async fn commit(dir: &Path, file: &str, content: &str, message: &str) -> String {
    let (dir, file, content, message) = (
        dir.to_path_buf(),
        file.to_string(),
        content.to_string(),
        message.to_string(),
    );
    tokio::task::spawn_blocking(move || testkit::commit_file(&dir, &file, &content, &message))
        .await
        .unwrap()
        .unwrap()
}

/// One webhook request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub delivery: String,
    pub signature: Option<String>,
    pub user_agent: String,
    pub hook_id: String,
    pub body: Vec<u8>,
}

/// A webhook receiver on `127.0.0.1:0` answering 200 to everything.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let sink = sink.clone();
                    async move {
                        let h = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        sink.lock().unwrap().push(Received {
                            event: h("x-github-event").unwrap_or_default(),
                            delivery: h("x-github-delivery").unwrap_or_default(),
                            signature: h("x-hub-signature-256"),
                            user_agent: h("user-agent").unwrap_or_default(),
                            hook_id: h("x-github-hook-id").unwrap_or_default(),
                            body: body.to_vec(),
                        });
                        "ok"
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            got,
            _server: server,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, computed independently of the hub.
pub fn expected_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
