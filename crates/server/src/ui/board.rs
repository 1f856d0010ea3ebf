//! The project list and a project's board: one column per place a task can be (planning, plan
//! review, building, PR, awaiting merge, done, blocked/stopped), a card per task, and the
//! new-task dialog.

use super::error_page;
use super::layout::{Page, Section, checks_badge, is_web_address, shell, state_badge};
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use domain::{Stage, TaskState};
use engine::api::{PageRequest, ProjectView, TaskView};
use maud::{Markup, html};

/// Every task the viewer may see (of one project, or all), in id order.
pub(crate) async fn all_tasks<B: Backend>(
    backend: &B,
    project: Option<&str>,
) -> engine::Result<Vec<TaskView>> {
    let mut tasks = Vec::new();
    let mut after = None;
    loop {
        let page = backend
            .list_tasks(
                project.map(str::to_string),
                PageRequest { after, limit: 500 },
            )
            .await?;
        tasks.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(tasks),
        }
    }
}

/// Every project the viewer may see.
pub(crate) async fn all_projects<B: Backend>(backend: &B) -> engine::Result<Vec<ProjectView>> {
    let mut projects = Vec::new();
    let mut after = None;
    loop {
        let page = backend
            .list_projects(PageRequest { after, limit: 500 })
            .await?;
        projects.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(projects),
        }
    }
}

/// The board's columns, in order: (data-column, heading).
pub(crate) const COLUMNS: [(&str, &str); 7] = [
    ("planning", "Planning"),
    ("plan-review", "Plan review"),
    ("building", "Building"),
    ("pr", "PR"),
    ("awaiting-merge", "Awaiting merge"),
    ("done", "Done"),
    ("blocked", "Blocked / stopped"),
];

/// The column a task's state puts it in.
pub(crate) fn column(state: &TaskState) -> &'static str {
    match state {
        TaskState::Running { stage }
        | TaskState::NeedsInput { stage, .. }
        | TaskState::Waiting { stage, .. } => match stage {
            Stage::Plan => "planning",
            Stage::Implement | Stage::Review | Stage::SecondReview | Stage::Qa | Stage::Refine => {
                "building"
            }
            Stage::Pr => "pr",
        },
        TaskState::PlanGate => "plan-review",
        TaskState::AwaitingChecks => "pr",
        TaskState::AwaitingMerge { .. } | TaskState::Merging => "awaiting-merge",
        TaskState::Done { .. } => "done",
        TaskState::Blocked { .. } | TaskState::Stopped { .. } | TaskState::Closed => "blocked",
    }
}

/// Whether an agent of the task is at work (or about to be) now.
pub(crate) fn is_live(state: &TaskState) -> bool {
    matches!(state, TaskState::Running { .. } | TaskState::Merging)
}

pub(crate) async fn projects<B: Backend>(viewer: Viewer<B>) -> Response {
    // Read before the data: the page's stream resumes from here (a project added or a
    // membership changed is a `projects` message).
    let stream = match super::stream_after_now(&viewer.backend, super::CHANGES_STREAM) {
        Ok(stream) => stream,
        Err(err) => return error_page(&viewer, err),
    };
    let projects = match all_projects(&viewer.backend).await {
        Ok(projects) => projects,
        Err(err) => return error_page(&viewer, err),
    };
    let body = html! {
        h1 { "Projects" }
        div #project-list data-region="1" data-refresh-on="projects" {
            @if projects.is_empty() {
                p.empty { "No projects yet." @if viewer.who.admin { " Add the first one below." } @else { " An administrator adds projects and makes you a member." } }
            } @else {
                ul #projects .cards-list {
                    @for p in &projects {
                        li { a href={ "/projects/" (p.name) } { (p.name) } " " span.muted { (p.path) } }
                    }
                }
            }
        }
        @if viewer.who.admin {
            section.panel aria-labelledby="add-project-h" {
                h2 #add-project-h { "Add a project" }
                form #add-project data-api="/api/projects" data-method="POST" data-then="/projects/{name}" {
                    label for="project-path" { "Path of the git repository on the server" }
                    input #project-path name="path" required placeholder="/srv/repos/app";
                    label for="project-name" { "Name (optional: the folder's name)" }
                    input #project-name name="name" data-optional="1";
                    p.form-error role="alert" {}
                    button type="submit" { "Add project" }
                }
            }
        }
    };
    let page_info = Page {
        title: "Projects",
        stream: Some(stream),
        section: Section::Projects,
    };
    shell(Some(&viewer), page_info, body).into_response()
}

pub(crate) async fn board<B: Backend>(viewer: Viewer<B>, Path(project): Path<String>) -> Response {
    // Read before the data: the page's stream resumes from here, so no change is missed.
    let stream = match super::stream_after_now(&viewer.backend, super::CHANGES_STREAM) {
        Ok(stream) => stream,
        Err(err) => return error_page(&viewer, err),
    };
    let tasks = match all_tasks(&viewer.backend, Some(&project)).await {
        Ok(tasks) => tasks,
        Err(err) => return error_page(&viewer, err),
    };
    let default_pipeline = match all_projects(&viewer.backend).await {
        Ok(projects) => projects
            .into_iter()
            .find(|p| p.name == project)
            .map(|p| p.settings.default_pipeline)
            .unwrap_or_default(),
        Err(err) => return error_page(&viewer, err),
    };
    let body = html! {
        div.page-head {
            h1 { (project) }
            div.actions {
                a.button.secondary href={ "/projects/" (project) "/settings" } { "Settings" }
                button #new-task type="button" data-open="new-task-dialog" { "New task" }
            }
        }
        div #board .board data-region="1" {
            @for (key, heading) in COLUMNS {
                @let cards: Vec<&TaskView> = tasks.iter().filter(|t| column(&t.state) == key).collect();
                section.column data-column=(key) aria-label=(heading) {
                    h2 { (heading) " " span.count { (cards.len()) } }
                    @for task in cards { (card(task)) }
                }
            }
        }
        (new_task_dialog(&project, &default_pipeline))
    };
    let page_info = Page {
        title: &project,
        stream: Some(stream),
        section: Section::Projects,
    };
    shell(Some(&viewer), page_info, body).into_response()
}

fn card(task: &TaskView) -> Markup {
    html! {
        article.card data-task=(task.id) data-state=(task.state.name()) {
            a.card-title href={ "/tasks/" (task.id) } { (task.title) }
            div.card-meta {
                @if is_live(&task.state) { span.live title="an agent is working" { span.visually-hidden { "live" } } }
                (state_badge(&task.state))
            }
            div.card-meta.muted {
                span { (task.key) }
                @if task.review_rounds > 0 { span { "round " (task.review_rounds + 1) } }
                span { (task.runs_started) " runs" }
            }
            @if let Some(url) = &task.pull_request_url {
                div.card-meta {
                    @if is_web_address(url) {
                        a.card-pr href=(url) rel="noopener noreferrer" { "Pull request" }
                    } @else { span.muted { "PR " (url) } }
                    @if let Some(checks) = &task.checks { (checks_badge(checks)) }
                }
            }
        }
    }
}

fn new_task_dialog(project: &str, default_pipeline: &str) -> Markup {
    html! {
        dialog #new-task-dialog aria-labelledby="new-task-h" {
            form #new-task data-api="/api/tasks" data-method="POST" data-then="/tasks/{id}" data-attach-to="/api/tasks/{id}/attachments/" {
                h2 #new-task-h { "New task" }
                input type="hidden" name="project" value=(project);
                label for="task-title" { "Title" }
                input #task-title name="title" required maxlength="200";
                label for="task-body" { "Request (markdown)" }
                textarea #task-body name="body" rows="8" data-preview="task-body-preview" {}
                details {
                    summary { "Preview" }
                    div #task-body-preview .doc.preview {}
                }
                label for="task-pipeline" { "Pipeline" }
                select #task-pipeline name="pipeline" {
                    @for name in domain::pipeline_def::BUILTIN_NAMES {
                        option value=(name) selected[name == default_pipeline] {
                            (name) " — " (pipeline_blurb(name))
                        }
                    }
                    @if !domain::pipeline_def::BUILTIN_NAMES.contains(&default_pipeline) {
                        option value=(default_pipeline) selected { (default_pipeline) " — the project's own" }
                    }
                }
                label for="task-files" { "Attachments (optional; files go to the task's attachments, where agents read them)" }
                input #task-files type="file" name="files" multiple;
                label.check for="task-technical" {
                    input #task-technical type="checkbox" name="technical" checked;
                    " Technical (a developer reviews the plan; untick to skip the plan gate)"
                }
                p.form-error role="alert" {}
                div.actions {
                    button.secondary type="button" data-close="new-task-dialog" { "Cancel" }
                    button type="submit" { "Create task" }
                }
            }
        }
    }
}

/// What a pipeline does, in a few words (`docs/pipelines.md` has the whole story).
fn pipeline_blurb(name: &str) -> &'static str {
    match name {
        "standard" => "plan, your approval, implement ⇄ review, pull request",
        "full" => "plan, your approval, implement ⇄ review, QA, refinement, pull request",
        "yolo" => "one agent implements, tests and opens the pull request; no plan, no review",
        _ => "",
    }
}
