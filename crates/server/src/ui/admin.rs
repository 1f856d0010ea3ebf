//! The administrators' page: people (create, enable/disable, make or remove administrators),
//! every project with a link to its members, every account's API tokens (revocable), the
//! server's prompts and the audit trail. Anyone else gets a 404, like the API's admin routes.

use super::error_page;
use super::layout::{Page, Section, shell, time};
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::response::{IntoResponse, Response};
use engine::EngineError;
use maud::{Markup, html};

pub(crate) async fn page<B: Backend>(viewer: Viewer<B>) -> Response {
    if !viewer.who.admin {
        return error_page(&viewer, EngineError::NotFound("no such page".into()));
    }
    let users = match viewer.backend.list_users() {
        Ok(users) => users,
        Err(err) => return error_page(&viewer, err),
    };
    let audit = match viewer.backend.audit_log(None, 100) {
        Ok(audit) => audit,
        Err(err) => return error_page(&viewer, err),
    };
    let tokens = match viewer.backend.list_all_tokens() {
        Ok(tokens) => tokens,
        Err(err) => return error_page(&viewer, err),
    };
    let prompts = match viewer.backend.prompts() {
        Ok(prompts) => prompts,
        Err(err) => return error_page(&viewer, err),
    };
    let projects = match super::board::all_projects(&viewer.backend).await {
        Ok(projects) => projects,
        Err(err) => return error_page(&viewer, err),
    };
    let body = html! {
        h1 { "Administration" }
        div.settings-grid {
            section.panel aria-labelledby="people-h" {
                h2 #people-h { "People" }
                div.table-wrap { table #users {
                    thead { tr { th scope="col" { "Login" } th scope="col" { "Role" } th scope="col" { "Sign-in" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for u in &users {
                            tr data-user=(u.login) {
                                td { (u.login) }
                                td { @if u.admin { "admin" } @else { "user" } @if !u.technical { " · non-technical" } }
                                td { @if u.disabled { span.error { "disabled" } } @else if u.has_password { "password" } @else { "tokens only" } }
                                td {
                                    // Nobody changes their own role or access: one administrator
                                    // (the one acting) always remains, as the API enforces.
                                    @if u.login != viewer.who.login {
                                        (flag_form(&u.login, "admin", !u.admin, if u.admin { "Remove administrator" } else { "Make administrator" }))
                                        (flag_form(&u.login, "disabled", !u.disabled, if u.disabled { "Enable" } else { "Disable" }))
                                    }
                                }
                            }
                        }
                    }
                } }
                h3 { "Add a person" }
                form #create-user data-api="/api/users" data-method="POST" data-then="reload" {
                    label for="new-login" { "Login" }
                    input #new-login name="login" required autocomplete="off";
                    label for="new-password" { "Password (at least 10 characters; leave empty for tokens only)" }
                    input #new-password name="password" type="password" autocomplete="new-password" data-optional="1";
                    label.check for="new-admin" { input #new-admin type="checkbox" name="admin"; " Administrator" }
                    label.check for="new-technical" { input #new-technical type="checkbox" name="technical" checked; " Technical (reviews plans)" }
                    p.form-error role="alert" {}
                    button type="submit" { "Create account" }
                }
            }
            section.panel aria-labelledby="projects-h" {
                h2 #projects-h { "Projects and members" }
                @if projects.is_empty() { p.empty { "No projects yet: " a href="/projects" { "add one" } "." } }
                ul.plain {
                    @for p in &projects {
                        li { a href={ "/projects/" (p.name) "/settings" } { (p.name) } " — settings and members" }
                    }
                }
            }
        }
        section #tokens .panel aria-labelledby="tokens-h" {
            h2 #tokens-h { "API tokens" }
            p.hint { "Every account's tokens (their secrets are never stored). Each person makes theirs on "
                a href="/me" { "their page" } " or with " code { "atelier token create" } "; a revoked token is refused at once and its live streams end." }
            div.table-wrap { table #all-tokens {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Owner" } th scope="col" { "Made" } th scope="col" { "Last used" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for t in &tokens {
                        tr data-token=(t.id) {
                            td { (t.name) } td { (t.owner) } td { (time(t.created_at)) }
                            td { @if let Some(used) = t.last_used_at { (time(used)) } @else { span.muted { "never" } } }
                            td { @if t.revoked { span.muted { "revoked" } } @else if t.expired { span.muted { "expired" } } @else if t.owner_disabled { span.muted { "owner disabled" } } @else { "live" } }
                            td { @if !t.revoked {
                                button.secondary type="button" data-method="DELETE" data-action={ "/api/tokens/" (t.id) }
                                    data-then="reload" data-confirm={ "Revoke " (t.owner) "'s token " (t.name) "?" } { "Revoke" }
                            } }
                        }
                    }
                }
            } }
        }
        section #prompts .panel aria-labelledby="prompts-h" {
            h2 #prompts-h { "Prompts" }
            p.hint { "What each stage's agent is told, for every project of this server, and the plan template the planner fills in "
                "(a project's owners may replace them for their project's new tasks on its settings page). "
                "A change is checked before it is saved — an unknown " code { "{{variable}}" } " is refused with its line — and used by the runs that start after it." }
            (super::settings::prompt_variables(&prompts))
            @for p in &prompts {
                @let stem = p.file.trim_end_matches(".md");
                details.prompt {
                    summary { strong { (p.file) } @if p.overridden { " " span.badge { "overridden" } } @else { " " span.muted { "built in" } } }
                    form id={ "prompt-" (stem) } data-api={ "/api/prompts/" (p.file) } data-method="PUT" data-then="reload" {
                        label for={ "prompt-text-" (stem) } { "Text of " (p.file) }
                        textarea id={ "prompt-text-" (stem) } name="text" rows="14" spellcheck="false" { (p.text) }
                        p.form-error role="alert" {}
                        div.actions {
                            button type="submit" { "Save " (p.file) }
                            @if p.overridden {
                                button.secondary type="button" data-method="DELETE" data-action={ "/api/prompts/" (p.file) }
                                    data-then="reload" data-confirm={ "Go back to the built-in " (p.file) "?" } { "Reset to built-in" }
                            }
                        }
                    }
                }
            }
        }
        section.panel aria-labelledby="audit-h" {
            h2 #audit-h { "Audit trail" }
            div.table-wrap { table #audit {
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "How" } th scope="col" { "What" } th scope="col" { "On" } } }
                tbody {
                    @for a in &audit {
                        tr { td { (time(a.at)) } td { (a.actor) } td { (a.via) } td { (a.action) @if let Some(d) = &a.detail { br; span.muted { (d) } } } td { (a.target) } }
                    }
                }
            } }
        }
    };
    let page_info = Page {
        title: "Administration",
        stream: None,
        section: Section::Admin,
    };
    shell(Some(&viewer), page_info, body).into_response()
}

/// A one-button form setting one flag of an account (`PUT /api/users/{login}`).
fn flag_form(login: &str, flag: &str, value: bool, label: &str) -> Markup {
    html! {
        form.inline data-api={ "/api/users/" (login) } data-method="PUT" data-then="reload" {
            input type="hidden" name=(flag) value=(value) data-type="json";
            p.form-error role="alert" {}
            button.secondary type="submit" { (label) }
        }
    }
}
