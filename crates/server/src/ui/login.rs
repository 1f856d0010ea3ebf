//! Sign-in and first-run setup: plain HTML forms that work without script. Signing in sets the
//! same session cookie as `POST /api/login`; setup creates the first administrator, proven by
//! the server's `api-token` (only someone with the server's files has it), and signs them in.

use super::layout::{Page, Section, shell};
use super::viewer::local_target;
use crate::auth::{check_same_origin, session_cookie};
use crate::backend::Backend;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    login: String,
    password: String,
    next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SetupForm {
    token: String,
    login: String,
    password: String,
}

pub(crate) async fn login_page<B: Backend>(State(b): State<B>, Query(q): Query<Next>) -> Response {
    if b.setup_needed() {
        return Redirect::to("/setup").into_response();
    }
    login_form(q.next.as_deref(), None, "").into_response()
}

pub(crate) async fn login<B: Backend>(
    State(b): State<B>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(err) = check_same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            login_form(None, Some(&err.to_string()), ""),
        )
            .into_response();
    }
    let next = local_target(form.next.as_deref()).to_string();
    match b.login(form.login.clone(), form.password, peer.ip()).await {
        Ok(session) => signed_in(&session.session, &headers, &next),
        Err(err) => {
            let (status, message) = super::failure(err, false);
            (status, login_form(Some(&next), Some(&message), &form.login)).into_response()
        }
    }
}

pub(crate) async fn setup_page<B: Backend>(State(b): State<B>) -> Response {
    if !b.setup_needed() {
        return Redirect::to("/login").into_response();
    }
    setup_form(None, "").into_response()
}

pub(crate) async fn setup<B: Backend>(
    State(b): State<B>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Response {
    if let Err(err) = check_same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            setup_form(Some(&err.to_string()), ""),
        )
            .into_response();
    }
    let created = b
        .setup_first_admin(
            form.token.trim().to_string(),
            form.login.clone(),
            form.password.clone(),
        )
        .await;
    if let Err(err) = created {
        let (status, message) = super::failure(err, false);
        return (status, setup_form(Some(&message), &form.login)).into_response();
    }
    match b.login(form.login, form.password, peer.ip()).await {
        Ok(session) => signed_in(&session.session, &headers, "/"),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

fn signed_in(secret: &str, headers: &HeaderMap, next: &str) -> Response {
    let mut response = Redirect::to(next).into_response();
    if let Some(cookie) = session_cookie(secret, headers) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn login_form(next: Option<&str>, error: Option<&str>, login: &str) -> Markup {
    let body = html! {
        section.narrow {
            h1 { "Sign in" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form #login method="post" action="/login" {
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                label for="login-name" { "Login" }
                input #login-name name="login" autocomplete="username" required value=(login) autofocus;
                label for="login-password" { "Password" }
                input #login-password name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p.hint { "No account? An administrator creates one (Admin → People, or "
                code { "atelier admin create-user" } ")." }
        }
    };
    shell::<()>(
        None,
        Page {
            title: "Sign in",
            stream: None,
            section: Section::None,
        },
        body,
    )
}

fn setup_form(error: Option<&str>, login: &str) -> Markup {
    let body = html! {
        section.narrow {
            h1 { "Welcome to Atelier" }
            p { "Create the first administrator. To prove you run this server, paste its setup token: the content of "
                code { "<data-dir>/api-token" } " (run " code { "cat ~/.local/share/atelier/api-token" }
                " on the server, or see " code { "server.json" } ")." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form #setup method="post" action="/setup" {
                label for="setup-token" { "Setup token" }
                input #setup-token name="token" type="password" autocomplete="off" required;
                label for="setup-login" { "Your login" }
                input #setup-login name="login" autocomplete="username" required value=(login);
                label for="setup-password" { "Password (at least 12 characters)" }
                input #setup-password name="password" type="password" autocomplete="new-password" required minlength="12";
                button type="submit" { "Create administrator and sign in" }
            }
        }
    };
    shell::<()>(
        None,
        Page {
            title: "Set up",
            stream: None,
            section: Section::None,
        },
        body,
    )
}
