//! People in end-to-end tests: accounts made by the administrator, signed in the way a browser
//! signs in, and API tokens made through that session.

use super::World;
use reqwest::Method;
use serde_json::{Value, json};

/// The password tests give `login`.
pub fn password_of(login: &str) -> String {
    format!("{login}-long-password")
}

/// Creates `login` (with [`password_of`] and the `technical` flag) as the administrator.
pub async fn create_user(world: &World, login: &str, technical: bool) {
    let (status, body) = world
        .server
        .client()
        .post(
            "/api/users",
            &json!({"login": login, "password": password_of(login), "technical": technical}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
}

/// Makes `login` a `role` (`owner`/`member`) of `project`, as the administrator.
pub async fn add_member(world: &World, project: &str, login: &str, role: &str) {
    let (status, body) = world
        .server
        .client()
        .request(
            Method::PUT,
            &format!("/api/projects/{project}/members/{login}"),
            Some(&json!({"role": role})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Removes `login` from `project`, as the administrator.
pub async fn remove_member(world: &World, project: &str, login: &str) {
    let (status, body) = world
        .server
        .client()
        .request(
            Method::DELETE,
            &format!("/api/projects/{project}/members/{login}"),
            None,
        )
        .await
        .unwrap();
    assert!((200..300).contains(&status), "{status}: {body}");
}

/// Changes `login`'s account flags (`{"admin": …, "disabled": …}`), as the administrator.
pub async fn update_user(world: &World, login: &str, flags: Value) {
    let (status, body) = world
        .server
        .client()
        .request(Method::PUT, &format!("/api/users/{login}"), Some(&flags))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Signs `login` in: the session cookie (`name=value`) and the CSRF token.
pub async fn sign_in(world: &World, login: &str) -> (String, String) {
    let session = Session::of(world, login).await;
    (session.cookie, session.csrf)
}

/// An API token `login` makes for themselves through their session (named `name`).
pub async fn token_of(world: &World, login: &str, name: &str) -> String {
    let (cookie, csrf) = sign_in(world, login).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let token: Value = http
        .post(format!("{}/api/tokens", world.server.url()))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["token"].as_str().unwrap().to_string()
}

/// `method path` with a JSON `body` through a browser session from [`sign_in`] (its cookie and
/// CSRF token); the status and the JSON answer (`Null` when it is not JSON).
pub async fn with_session(
    world: &World,
    (cookie, csrf): &(String, String),
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .request(method, format!("{}{path}", world.server.url()))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A browser-like client: the session cookie and the CSRF token the login answered.
pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    /// Signs `login` in with [`password_of`].
    pub async fn of(world: &World, login: &str) -> Session {
        Session::login(world, login, &password_of(login)).await
    }

    /// Signs `login` in with `password`, checking the cookie's attributes.
    pub async fn login(world: &World, login: &str, password: &str) -> Session {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = world.server.url().to_string();
        let response = http
            .post(format!("{base}/api/login"))
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        assert!(
            body.get("session").is_none(),
            "the session secret is only in the cookie: {body}"
        );
        Session {
            http,
            base,
            cookie,
            csrf: body["csrf"].as_str().unwrap().to_string(),
        }
    }

    /// The page at `path` (its HTML), which must answer 200.
    pub async fn page(&self, path: &str) -> String {
        let (status, body) = self.send(Method::GET, path, None, false, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body.as_str().unwrap_or_default().to_string()
    }

    /// Sends a request with the cookie; `csrf` adds the CSRF header, `origin` an Origin header.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
        origin: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}
