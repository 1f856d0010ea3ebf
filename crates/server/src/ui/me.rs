//! A person's own page: their agent credentials per harness (write-only: names and dates are
//! shown, never values), their models per stage, and their API tokens.

use super::error_page;
use super::layout::{Page, Section, shell, time};
use super::settings::HARNESSES;
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::response::{IntoResponse, Response};
use domain::Stage;
use maud::html;

pub(crate) async fn page<B: Backend>(viewer: Viewer<B>) -> Response {
    let (credentials, models, tokens) = match (
        viewer.backend.list_credentials(),
        viewer.backend.user_models(),
        viewer.backend.list_tokens(),
    ) {
        (Ok(c), Ok(m), Ok(t)) => (c, m, t),
        (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => return error_page(&viewer, err),
    };
    let body = html! {
        h1 { "Your settings, " (viewer.who.login) }
        div.settings-grid {
            section.panel aria-labelledby="creds-h" {
                h2 #creds-h { "Agent credentials" }
                p.secret-note { "Your agents run with your own credentials. Values are sealed (XChaCha20-Poly1305, key file beside the database), "
                    "opened only to start your runs, and never shown again — here you see names and dates only." }
                @for harness in HARNESSES.iter().filter(|h| **h != "scripted") {
                    @let set = credentials.iter().find(|c| c.harness == *harness);
                    h3 { (harness) }
                    @if let Some(set) = set {
                        p.muted { "Set: " (set.names.join(", ")) " · " (time(set.updated_at)) }
                        button.secondary type="button" data-method="DELETE" data-action={ "/api/me/credentials/" (harness) }
                            data-then="reload" data-confirm={ "Remove your " (harness) " credentials?" } { "Remove" }
                    } @else { p.muted { "None set." } }
                    form id={ "creds-" (harness) } data-api={ "/api/me/credentials/" (harness) } data-method="PUT" data-then="reload" {
                        label for={ "creds-env-" (harness) } { "Variables, one NAME=value per line (replaces what is set)" }
                        textarea id={ "creds-env-" (harness) } name="env" data-type="env" rows="2" spellcheck="false" autocomplete="off"
                            placeholder=(placeholder(harness)) {}
                        p.form-error role="alert" {}
                        button type="submit" { "Save " (harness) " credentials" }
                    }
                }
            }
            div {
                section.panel aria-labelledby="models-h" {
                    h2 #models-h { "Your models" }
                    p.hint { "For your tasks, these replace the project's model for a stage. Leave empty to use the project's." }
                    form #models data-api="/api/me/models" data-method="PUT" data-then="reload" {
                        @for stage in Stage::ALL {
                            @let s = stage.as_str();
                            @let current = models.models.get(&stage);
                            label for={ "model-" (s) } { (s) " model" }
                            input id={ "model-" (s) } name={ "models." (s) ".model" } data-optional="1" value=[current.map(|m| m.model.as_str())];
                            label for={ "effort-" (s) } { (s) " effort" }
                            input id={ "effort-" (s) } name={ "models." (s) ".effort" } data-optional="1" value=[current.and_then(|m| m.effort.as_deref())];
                        }
                        p.form-error role="alert" {}
                        button type="submit" { "Save models" }
                    }
                }
                section.panel aria-labelledby="tokens-h" {
                    h2 #tokens-h { "API tokens" }
                    ul.plain #tokens {
                        @for t in tokens.iter().filter(|t| !t.revoked) {
                            li { strong { (t.name) } " · made " (time(t.created_at))
                                @if let Some(used) = t.last_used_at { " · used " (time(used)) }
                                @if t.expired { " · " span.muted { "expired" } }
                                " " button.secondary type="button" data-method="DELETE" data-action={ "/api/tokens/" (t.id) }
                                    data-then="reload" data-confirm={ "Revoke the token " (t.name) "?" } { "Revoke" } }
                        }
                    }
                    form #create-token data-api="/api/tokens" data-method="POST" data-show="new-token" {
                        label for="token-name" { "Name" }
                        input #token-name name="name" required;
                        p.form-error role="alert" {}
                        button type="submit" { "Create token" }
                    }
                    p #new-token hidden data-field="token" { "Copy it now, it is shown once: " code {} }
                }
            }
        }
    };
    let page_info = Page {
        title: "Your settings",
        stream: None,
        section: Section::Me,
    };
    shell(Some(&viewer), page_info, body).into_response()
}

fn placeholder(harness: &str) -> &'static str {
    match harness {
        "claude-code" => "ANTHROPIC_API_KEY=sk-ant-…",
        "codex" => "OPENAI_API_KEY=sk-…",
        _ => "NAME=value",
    }
}
