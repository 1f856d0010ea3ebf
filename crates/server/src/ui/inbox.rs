//! The inbox: what needs a human first (plans to approve, questions to answer, blocked tasks
//! with the action that unblocks them, pull requests to merge), then the agents at work now,
//! recent activity and today's usage.

use super::board::{all_projects, all_tasks};
use super::error_page;
use super::layout::{Page, Section, shell, state_label};
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::response::{IntoResponse, Response};
use domain::TaskState;
use engine::api::TaskView;
use maud::{Markup, html};

pub(crate) async fn page<B: Backend>(viewer: Viewer<B>) -> Response {
    let tasks = match all_tasks(&viewer.backend, None).await {
        Ok(tasks) => tasks,
        Err(err) => return error_page(&viewer, err),
    };
    let no_projects = match all_projects(&viewer.backend).await {
        Ok(projects) => projects.is_empty(),
        Err(err) => return error_page(&viewer, err),
    };
    let mut needs: Vec<(&TaskView, &'static str)> = tasks
        .iter()
        .filter_map(|t| kind(&t.state).map(|k| (t, k)))
        .collect();
    needs.sort_by_key(|(t, k)| (rank(k), std::cmp::Reverse(t.updated_at)));
    let body = html! {
        h1.visually-hidden { "Inbox" }
        section #needs-you .panel aria-labelledby="needs-h" data-region="1" {
            h2 #needs-h { "Needs you" }
            @if no_projects {
                p.empty { "No projects yet. " @if viewer.who.admin { a href="/projects" { "Add a project" } " to start." } @else { "Ask an administrator to add you to one." } }
            } @else if needs.is_empty() {
                p.empty { "Nothing needs you right now." }
            }
            ul.inbox {
                @for (task, kind) in &needs { (item(task, kind)) }
            }
        }
    };
    let page_info = Page {
        title: "Inbox",
        stream: Some("/api/stream".into()),
        section: Section::Inbox,
    };
    shell(Some(&viewer), page_info, body).into_response()
}

/// Why a task is in "needs you", if it is.
fn kind(state: &TaskState) -> Option<&'static str> {
    match state {
        TaskState::PlanGate => Some("plan"),
        TaskState::NeedsInput { .. } => Some("question"),
        TaskState::Blocked { .. } | TaskState::Stopped { .. } | TaskState::Closed => {
            Some("blocked")
        }
        TaskState::AwaitingMerge { .. } => Some("merge"),
        _ => None,
    }
}

fn rank(kind: &str) -> u8 {
    match kind {
        "plan" => 0,
        "question" => 1,
        "blocked" => 2,
        _ => 3,
    }
}

fn item(task: &TaskView, kind: &str) -> Markup {
    let href = format!("/tasks/{}", task.id);
    html! {
        li.inbox-item data-task=(task.id) data-kind=(kind) {
            div {
                a.item-title href=(href) { (task.title) }
                div.muted { (task.project) " · " (task.key) }
            }
            div.item-what {
                @match &task.state {
                    TaskState::PlanGate => { span { "Plan awaits your approval" } a.button href=(href) { "Review plan" } }
                    TaskState::NeedsInput { question, .. } => { span.question-text { (clip(question, 200)) } a.button href=(href) { "Answer" } }
                    TaskState::Blocked { reason, .. } => {
                        span { (reason.code()) ": " (clip(reason.detail(), 200)) }
                        button type="button" data-action={ "/api/tasks/" (task.id) "/resume" } { "Resume" }
                    }
                    TaskState::Stopped { .. } | TaskState::Closed => {
                        span { (state_label(&task.state)) }
                        button type="button" data-action={ "/api/tasks/" (task.id) "/resume" } { "Resume" }
                    }
                    _ => { span { "Pull request ready to merge" } a.button href=(href) { "Review PR" } }
                }
            }
        }
    }
}

fn clip(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
