//! The inbox: what needs a human first (plans to approve, questions to answer, blocked tasks
//! with the reason and the one action that unblocks them — suited to the reason and offered
//! only when the state machine accepts it — pull requests to merge), then the agents at work
//! now, recent activity and today's usage.

use super::board::{all_projects, all_tasks};
use super::error_page;
use super::layout::{Page, Section, shell, state_label, time};
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::response::{IntoResponse, Response};
use domain::{BlockReason, RunStatus, TaskId, TaskState};
use engine::api::{RecentActivity, RunningAgent, TaskAction, TaskView, Usage};
use maud::{Markup, html};
use std::collections::HashMap;

pub(crate) async fn page<B: Backend>(viewer: Viewer<B>) -> Response {
    // Read before the data: the page's stream resumes from here, so no change is missed.
    let stream = match super::stream_after_now(&viewer.backend, "/api/stream") {
        Ok(stream) => stream,
        Err(err) => return error_page(&viewer, err),
    };
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
    // A blocked task's one action comes from what the state machine accepts for it now, read
    // with the state it is judged in (one read for all of them); a task that vanished
    // meanwhile is only linked.
    let blocked: Vec<TaskId> = needs
        .iter()
        .filter(|(_, kind)| *kind == "blocked")
        .map(|(task, _)| task.id)
        .collect();
    let allowed: HashMap<TaskId, (TaskState, Vec<TaskAction>)> =
        match viewer.backend.states_and_actions(&blocked) {
            Ok(found) => found
                .into_iter()
                .map(|(id, state, actions)| (id, (state, actions)))
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "the inbox's unblocking actions are not shown");
                HashMap::new()
            }
        };
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
                @for (task, kind) in &needs { (item(task, kind, allowed.get(&task.id))) }
            }
        }
        div.dash {
            section #running .panel aria-labelledby="running-h" data-region="1" data-live-activity="1" { (running(&dashboard.running)) }
            section #usage .panel aria-labelledby="usage-h" data-region="1" { (usage(&dashboard.usage_today)) }
        }
        section #activity .panel aria-labelledby="activity-h" data-region="1" { (activity(&dashboard.recent)) }
    };
    let page_info = Page {
        title: "Inbox",
        stream: Some(stream),
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

/// The one thing that unblocks a blocked, stopped or closed task, suited to why it stopped and
/// offered only when the state machine accepts it now (`actions`, as the task page's buttons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unblock {
    /// `POST /api/tasks/{id}/resume`, with this label.
    Resume(String),
    /// A human must look first (what the reviewer says blocks the work, or nothing the task
    /// accepts now): the task page, with this label.
    Open(&'static str),
}

pub(crate) fn unblock(state: &TaskState, actions: &[TaskAction]) -> Unblock {
    // The reviewer says a human must decide: resuming alone runs the same review again.
    if let TaskState::Blocked {
        reason: BlockReason::Agent { .. },
        ..
    } = state
    {
        return Unblock::Open("Read the findings");
    }
    if !actions.contains(&TaskAction::Resume) {
        return Unblock::Open("Open the task");
    }
    Unblock::Resume(match state {
        TaskState::Blocked { reason, stage } => match reason {
            BlockReason::MaxIterations { .. } => {
                format!("Resume {stage} with a fresh budget")
            }
            BlockReason::Forge { .. } => "Publish the pull request again".into(),
            BlockReason::CiFailing { .. } => "Let the agent fix the checks again".into(),
            BlockReason::Conflicts { .. } => "Let the agent rebase again".into(),
            _ => format!("Run {stage} again"),
        },
        TaskState::Closed => "Reopen the pull request".into(),
        TaskState::Stopped { stage } => format!("Resume {stage}"),
        _ => "Resume".into(),
    })
}

/// The unblocking control of `task`, judged on the state its actions were read in (`now`);
/// without that read (the task vanished meanwhile) only a link to the task.
fn unblock_control(
    task: &TaskView,
    now: Option<&(TaskState, Vec<TaskAction>)>,
    href: &str,
) -> Markup {
    let choice = match now {
        Some((state, actions)) => unblock(state, actions),
        None => Unblock::Open("Open the task"),
    };
    match choice {
        Unblock::Resume(label) => html! {
            button.unblock type="button" data-action={ "/api/tasks/" (task.id) "/resume" } { (label) }
        },
        Unblock::Open(label) => html! { a.button.unblock href=(href) { (label) } },
    }
}

fn item(task: &TaskView, kind: &str, now: Option<&(TaskState, Vec<TaskAction>)>) -> Markup {
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
                        span.reason { (reason.code()) ": " (clip(reason.detail(), 200)) }
                        (unblock_control(task, now, &href))
                    }
                    TaskState::Stopped { .. } | TaskState::Closed => {
                        span { (state_label(&task.state)) }
                        (unblock_control(task, now, &href))
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

#[cfg(test)]
mod tests {
    use super::{Unblock, unblock};
    use domain::{BlockReason, Stage, TaskState};
    use engine::api::TaskAction;

    fn blocked(reason: BlockReason) -> TaskState {
        TaskState::Blocked {
            stage: Stage::Implement,
            reason,
        }
    }

    #[test]
    fn the_unblocking_action_suits_the_reason_and_is_offered_only_when_allowed() {
        let resume = [TaskAction::Resume, TaskAction::Delete];
        let detail = || "x".to_string();
        let cases = [
            (
                blocked(BlockReason::MaxIterations { detail: detail() }),
                Unblock::Resume("Resume implement with a fresh budget".into()),
            ),
            (
                blocked(BlockReason::RunFailed { detail: detail() }),
                Unblock::Resume("Run implement again".into()),
            ),
            (
                blocked(BlockReason::Agent { detail: detail() }),
                Unblock::Open("Read the findings"),
            ),
            (
                blocked(BlockReason::Conflicts { detail: detail() }),
                Unblock::Resume("Let the agent rebase again".into()),
            ),
            (
                TaskState::Stopped {
                    stage: Stage::Review,
                },
                Unblock::Resume("Resume review".into()),
            ),
            (
                TaskState::Closed,
                Unblock::Resume("Reopen the pull request".into()),
            ),
        ];
        for (state, want) in cases {
            assert_eq!(unblock(&state, &resume), want, "{state}");
            // A state the machine does not let resume now (a stopped run still exiting) is
            // linked, never offered a button that would be refused; a reviewer's block always
            // links its findings.
            let linked = match want {
                Unblock::Open(label) => Unblock::Open(label),
                Unblock::Resume(_) => Unblock::Open("Open the task"),
            };
            assert_eq!(unblock(&state, &[TaskAction::Delete]), linked, "{state}");
        }
    }
}
