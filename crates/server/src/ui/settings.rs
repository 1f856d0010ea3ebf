//! A project's settings page: roles per stage (harness, model, effort), caps, setup hook and env
//! files, the forge, the members and the project's own prompts. Owners and administrators change them (the API refuses
//! anyone else); secrets show as `(redacted)` and are kept when sent back as such.

use super::error_page;
use super::layout::{Page, Section, shell};
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use engine::api::{ForgeSettings, ProjectView, PromptView};
use maud::{Markup, html};

/// The harnesses a role may name.
pub(crate) const HARNESSES: [&str; 4] = ["claude-code", "codex", "opencode", "scripted"];

pub(crate) async fn page<B: Backend>(viewer: Viewer<B>, Path(name): Path<String>) -> Response {
    let project = match super::board::all_projects(&viewer.backend).await {
        Ok(projects) => projects.into_iter().find(|p| p.name == name),
        Err(err) => return error_page(&viewer, err),
    };
    let Some(project) = project else {
        return error_page(
            &viewer,
            engine::EngineError::NotFound(format!("no project `{name}`")),
        );
    };
    let members = match viewer.backend.members(name.clone()) {
        Ok(members) => members,
        Err(err) => return error_page(&viewer, err),
    };
    let prompts = match viewer.backend.project_prompts(name.clone()) {
        Ok(prompts) => prompts,
        Err(err) => return error_page(&viewer, err),
    };
    let can_edit = viewer.who.admin
        || members
            .iter()
            .any(|m| m.login == viewer.who.login && m.role == "owner");
    let base = serde_json::to_string(&project.settings).unwrap_or_default();
    let api = format!("/api/projects/{}/settings", project.name);
    let body = html! {
        div.page-head {
            div {
                p.crumbs { a href={ "/projects/" (project.name) } { (project.name) } " / settings" }
                h1 { "Settings of " (project.name) }
                p.muted { code { (project.path) } " · default branch " code { (project.default_branch) } }
            }
        }
        @if !can_edit { p.hint #read-only { "You are a member: the project's owners and administrators change its settings." } }
        fieldset.plain disabled[!can_edit] {
        legend.visually-hidden { "Project settings" }
        div.settings-grid {
            section.panel aria-labelledby="roles-h" {
                h2 #roles-h { "Roles and caps" }
                form #settings data-api=(api) data-method="PUT" data-base=(base) data-then="reload" {
                    (roles(&project))
                    (caps(&project))
                    p.form-error role="alert" {}
                    button type="submit" { "Save settings" }
                }
            }
            div {
                section.panel aria-labelledby="forge-h" { h2 #forge-h { "Forge" } (forge(&project)) }
                section.panel aria-labelledby="members-h" {
                    h2 #members-h { "Members" }
                    table {
                        thead { tr { th scope="col" { "Login" } th scope="col" { "Role" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for m in &members {
                                tr data-member=(m.login) {
                                    td { (m.login) } td { (m.role) }
                                    td { button.secondary type="button" data-method="DELETE"
                                        data-action={ "/api/projects/" (project.name) "/members/" (m.login) }
                                        data-confirm={ "Remove " (m.login) " from " (project.name) "?" } { "Remove" } }
                                }
                            }
                        }
                    }
                    form #add-member data-api={ "/api/projects/" (project.name) "/members/{login}" } data-method="PUT" data-then="reload" {
                        label for="member-login" { "Login" }
                        input #member-login name="login" required;
                        label for="member-role" { "Role" }
                        select #member-role name="role" { option value="member" { "member" } option value="owner" { "owner" } }
                        p.form-error role="alert" {}
                        button type="submit" { "Add or change member" }
                    }
                }
                section.panel aria-labelledby="json-h" {
                    h2 #json-h { "All settings (JSON)" }
                    p.hint { "Everything above and more (sandbox paths, GitHub trust lists, timeouts). Secrets show as "
                        code { "(redacted)" } " and are kept when left so." }
                    form #settings-json data-api=(api) data-method="PUT" data-then="reload" {
                        label for="settings-json-text" { "Settings" }
                        textarea #settings-json-text name="settings" data-whole="1" rows="14" spellcheck="false" {
                            (serde_json::to_string_pretty(&project.settings).unwrap_or_default())
                        }
                        p.form-error role="alert" {}
                        button type="submit" { "Save JSON" }
                    }
                }
            }
        }
        (project_prompts(&project, &prompts, &base, &api))
        }
    };
    let page_info = Page {
        title: &format!("{} settings", project.name),
        stream: None,
        section: Section::Projects,
    };
    shell(Some(&viewer), page_info, body).into_response()
}

fn roles(project: &ProjectView) -> Markup {
    html! {
        @if project.settings.roles.is_empty() {
            p.muted { "No stage has a role yet: add them in the JSON editor (" code { "roles" } ")." }
        }
        div.table-wrap {
            table {
                caption.visually-hidden { "Agent per stage" }
                thead { tr { th scope="col" { "Stage" } th scope="col" { "Harness" } th scope="col" { "Model" } th scope="col" { "Effort" } } }
                tbody {
                    // Only the stages with a role: a row for a stage without one would invent a
                    // role when saved (add one in the JSON editor below).
                    @for (stage, role) in &project.settings.roles {
                        @let s = stage.as_str();
                        tr {
                            th scope="row" { (s) }
                            td {
                                label.visually-hidden for={ "h-" (s) } { (s) " harness" }
                                select id={ "h-" (s) } name={ "roles." (s) ".harness" } {
                                    @if !HARNESSES.contains(&role.harness.as_str()) {
                                        option value=(role.harness) selected { (role.harness) }
                                    }
                                    @for h in HARNESSES {
                                        option value=(h) selected[role.harness == h] { (h) }
                                    }
                                }
                            }
                            td {
                                label.visually-hidden for={ "m-" (s) } { (s) " model" }
                                input id={ "m-" (s) } name={ "roles." (s) ".model" } data-optional="1"
                                    value=[role.model.as_deref()];
                            }
                            td {
                                label.visually-hidden for={ "e-" (s) } { (s) " effort" }
                                input id={ "e-" (s) } name={ "roles." (s) ".effort" } data-optional="1"
                                    value=[role.effort.as_deref()];
                            }
                        }
                    }
                }
            }
        }
    }
}

fn caps(project: &ProjectView) -> Markup {
    let s = &project.settings;
    let numbers: [(&str, &str, u64); 6] = [
        (
            "max_review_rounds",
            "Review rounds (implement ⇄ review)",
            u64::from(s.max_review_rounds),
        ),
        (
            "max_total_runs",
            "Runs per task",
            u64::from(s.max_total_runs),
        ),
        (
            "slots",
            "Agents at once in this project",
            u64::from(s.slots),
        ),
        (
            "max_ci_fix_rounds",
            "CI fix rounds",
            u64::from(s.max_ci_fix_rounds),
        ),
        (
            "max_conflict_rounds",
            "Rebase rounds",
            u64::from(s.max_conflict_rounds),
        ),
        (
            "setup_timeout_secs",
            "Setup hook timeout (s)",
            s.setup_timeout_secs,
        ),
    ];
    html! {
        @for (name, label, value) in numbers {
            label for={ "cap-" (name) } { (label) }
            input id={ "cap-" (name) } name=(name) type="number" min="0" data-type="number" value=(value);
        }
        label for="setup-hook" { "Setup hook (run in each new worktree)" }
        input #setup-hook name="setup_hook" data-optional="1" value=[s.setup_hook.as_deref()] placeholder="e.g. npm ci";
        label for="env-files" { "Env files linked into worktrees (one per line)" }
        textarea #env-files name="env_files" data-type="lines" rows="2" { (s.env_files.join("\n")) }
    }
}

fn forge(project: &ProjectView) -> Markup {
    match &project.settings.forge {
        ForgeSettings::Local => html! {
            p { "Local: pull requests are branches pushed to " code { (project.settings.remote) } "; merged here." }
        },
        ForgeSettings::Github(github) => html! {
            dl.kv {
                dt { "Repository" } dd { (github.owner) "/" (github.repo) }
                dt { "API" } dd { (github.api_url) }
                dt { "Credentials" } dd { @if github.app_id.is_some() { "GitHub App" } @else { "token" } " (sealed at rest, never shown)" }
                dt { "Comment trigger" } dd { code { (github.trigger) } }
            }
        },
    }
}

/// The project's own prompts: one form per prompt, each saving the settings with its text laid
/// over them (an empty text goes back to the server's), its error shown beside its field.
fn project_prompts(project: &ProjectView, prompts: &[PromptView], base: &str, api: &str) -> Markup {
    html! {
        section #prompts .panel aria-labelledby="prompts-h" {
            h2 #prompts-h { "Prompts" }
            p.hint { "What each stage's agent of this project is told, and the plan template. A text here replaces the server's "
                "for this project's new tasks (a task keeps the texts it started with); leave it empty to use the server's. "
                "It is checked as you save it: an unknown " code { "{{variable}}" } " is refused with its line." }
            (prompt_variables(prompts))
            @for p in prompts {
                @let key = p.file.trim_end_matches(".md");
                @let own = project.settings.prompts.get(key);
                details.prompt open[own.is_some()] {
                    summary { strong { (p.file) } " " @if own.is_some() { span.badge { "this project's" } } @else { span.muted { "the server's" } } }
                    form id={ "project-prompt-" (key) } data-api=(api) data-method="PUT" data-base=(base) data-then="reload" {
                        label for={ "project-prompt-text-" (key) } { "This project's " (p.file) " (empty: the server's)" }
                        textarea id={ "project-prompt-text-" (key) } name={ "prompts." (key) } data-optional="1" rows="10" spellcheck="false" { (own.map_or("", String::as_str)) }
                        // A stored text that no longer passes the checks: its reason, from the start.
                        p.form-error role="alert" { @if let Some(error) = &p.error { (error) } }
                        button type="submit" { "Save " (p.file) }
                    }
                    @if own.is_none() {
                        details.server-text {
                            summary { "The server's text, in force now" }
                            pre tabindex="0" { (p.text) }
                        }
                    }
                }
            }
        }
    }
}

/// The variables a prompt may use, as a hint above prompt editors (the server's and a project's).
pub(crate) fn prompt_variables(prompts: &[PromptView]) -> Markup {
    html! {
        @if let Some(first) = prompts.first() {
            p.hint { "Variables: " @for (i, v) in first.variables.iter().enumerate() { @if i > 0 { ", " } code { "{{" (v) "}}" } } }
        }
    }
}
