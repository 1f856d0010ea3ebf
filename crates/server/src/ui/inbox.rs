//! The inbox: what needs a human first (plans to approve, questions to answer, blocked tasks
//! with the action that unblocks them, pull requests to merge), then the agents at work now,
//! recent activity and today's usage.

use super::board::{all_projects, all_tasks};
use super::error_page;
use super::layout::{Page, Section, shell, state_label, time};
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::response::{IntoResponse, Response};
use domain::RunStatus;
use domain::TaskState;
use engine::api::{RecentActivity, RunningAgent, TaskView, Usage};
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
    let dashboard = match viewer.backend.dashboard() {
        Ok(dashboard) => dashboard,
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
        div.dash {
            section #running .panel aria-labelledby="running-h" data-region="1" { (running(&dashboard.running)) }
            section #usage .panel aria-labelledby="usage-h" data-region="1" { (usage(&dashboard.usage_today)) }
        }
        section #activity .panel aria-labelledby="activity-h" data-region="1" { (activity(&dashboard.recent)) }
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

fn running(agents: &[RunningAgent]) -> Markup {
    html! {
        h2 #running-h { "Agents at work" }
        @if agents.is_empty() { p.empty { "No agent is running." } }
        @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Task" } th scope="col" { "Stage" } th scope="col" { "Agent" } th scope="col" { "Elapsed" } th scope="col" { "Last activity" } } }
                tbody {
                    @for a in agents {
                        tr data-task=(a.task) {
                            td { a href={ "/tasks/" (a.task) } { (a.title) } br; span.muted { (a.project) } }
                            td { (a.stage) @if a.status == RunStatus::Queued { " (queued)" } }
                            td { (a.harness.as_deref().unwrap_or("—")) @if let Some(m) = &a.model { br; span.muted { (m) } } }
                            td { @if let Some(start) = a.started_at { span.elapsed data-since=(start) { "…" } } @else { "—" } }
                            td { @if let Some(at) = a.last_event_at { (time(at)) } @else { "—" } }
                        }
                    }
                }
            } }
        }
    }
}

fn usage(usage: &Usage) -> Markup {
    html! {
        h2 #usage-h { "Usage today (UTC)" }
        dl.kv {
            dt { "Runs" } dd { (usage.runs) }
            dt { "Tokens in" } dd { (usage.input_tokens) }
            dt { "Tokens out" } dd { (usage.output_tokens) }
            dt { "Cost" } dd { @if usage.cost_usd > 0.0 { "$" (format!("{:.2}", usage.cost_usd)) } @else { "not reported" } }
        }
    }
}

fn activity(recent: &[RecentActivity]) -> Markup {
    html! {
        h2 #activity-h { "Recent activity" }
        @if recent.is_empty() { p.empty { "Nothing yet." } }
        ul.plain.activity {
            @for r in recent {
                li { (time(r.at_ms)) " · " a href={ "/tasks/" (r.task) } { (r.title) } " · " (r.summary) }
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
