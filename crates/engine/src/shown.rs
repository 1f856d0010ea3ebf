//! What a caller who is not an administrator is shown of the server: the views of projects,
//! tasks and runs with absolute server paths and the command lines the server ran replaced by
//! `<path>` and `<command>` ([`crate::redact`]) — a project's path; a task's worktree and doc
//! path; why it is blocked or waiting, and why its last merge failed; why a run failed; why a
//! pull-request comment was ignored; the dashboard's one-line summaries; and the same reasons in
//! the live streams and at the end of a transcript. Administrators and the server itself see
//! them whole, and the server log keeps them. What agents wrote (the task doc, the transcript, a
//! question) is theirs and is shown as written.
//!
//! Every view leaves the engine through [`Engine::shown`] (or, for the streams, [`payload`]
//! and [`FollowItem`]'s end), so the API and the web UI show the same.

use crate::api::{
    CommentView, Dashboard, FollowItem, Page, ProjectView, RunView, TaskDetail, TaskView,
};
use crate::facade::Engine;
use crate::redact::redact;
use domain::TaskState;

/// A view that can hide the server's details.
pub(crate) trait Shown {
    /// Replaces the server's paths and command lines in place.
    fn hide_server_details(&mut self);
}

fn hide(text: &mut String) {
    *text = redact(text);
}

impl Shown for TaskState {
    fn hide_server_details(&mut self) {
        match self {
            TaskState::Blocked { reason, .. } => hide(reason.detail_mut()),
            TaskState::Waiting { reason, .. } => hide(reason),
            TaskState::AwaitingMerge {
                merge_error: Some(error),
            } => hide(error),
            _ => {}
        }
    }
}

impl Shown for TaskView {
    fn hide_server_details(&mut self) {
        self.state.hide_server_details();
        if let Some(worktree) = &mut self.worktree {
            hide(worktree);
        }
        hide(&mut self.doc_path);
    }
}

impl Shown for RunView {
    fn hide_server_details(&mut self) {
        if let Some(reason) = &mut self.reason {
            hide(reason);
        }
    }
}

impl Shown for CommentView {
    fn hide_server_details(&mut self) {
        if let Some(reason) = &mut self.reason {
            hide(reason);
        }
    }
}

impl Shown for TaskDetail {
    fn hide_server_details(&mut self) {
        self.task.hide_server_details();
        self.runs.iter_mut().for_each(Shown::hide_server_details);
        self.comments
            .iter_mut()
            .for_each(Shown::hide_server_details);
    }
}

impl Shown for ProjectView {
    fn hide_server_details(&mut self) {
        hide(&mut self.path);
    }
}

impl<T: Shown> Shown for Page<T> {
    fn hide_server_details(&mut self) {
        self.items.iter_mut().for_each(Shown::hide_server_details);
    }
}

impl Shown for Dashboard {
    fn hide_server_details(&mut self) {
        for item in &mut self.recent {
            hide(&mut item.summary);
        }
    }
}

impl Shown for FollowItem {
    fn hide_server_details(&mut self) {
        if let FollowItem::End { state } = self {
            state.hide_server_details();
        }
    }
}

impl Engine {
    /// `view` as the caller may see it: whole for an administrator and for the server itself,
    /// without the server's paths and command lines for anyone else.
    pub(crate) fn shown<T: Shown>(&self, mut view: T) -> T {
        if self.hides_server_details() {
            view.hide_server_details();
        }
        view
    }

    /// Whether the caller is a user who is not an administrator.
    pub(crate) fn hides_server_details(&self) -> bool {
        self.member_filter().is_some()
    }
}

/// A stream's task or run change (`{"state": …, "reason": …}` as the store records it) without
/// the server's details; `None` when there are none to hide.
pub(crate) fn payload(json: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut changed = false;
    if let Some(reason) = value.get_mut("reason")
        && let Some(text) = reason.as_str()
    {
        let hidden = redact(text);
        changed |= hidden != text;
        *reason = hidden.into();
    }
    if let Some(state) = value.get_mut("state")
        && let Ok(mut parsed) = serde_json::from_value::<TaskState>(state.clone())
    {
        let before = parsed.clone();
        parsed.hide_server_details();
        if parsed != before {
            *state = serde_json::to_value(&parsed).ok()?;
            changed = true;
        }
    }
    changed.then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::payload;

    #[test]
    fn stream_payloads_lose_server_paths_and_keep_the_rest() {
        let run = r#"{"change":"finished","reason":"cannot start /nonexistent/bwrap: not found","run":3,"stage":"plan","status":"failed"}"#;
        let shown: serde_json::Value = serde_json::from_str(&payload(run).unwrap()).unwrap();
        assert_eq!(shown["reason"], "cannot start <path>: not found");
        assert_eq!(shown["run"], 3);
        let task = r#"{"change":"state","state":{"state":"blocked","stage":"implement","reason":{"code":"run_failed","detail":"`git commit -m x` failed in /srv/wt/3-x"}}}"#;
        let shown: serde_json::Value = serde_json::from_str(&payload(task).unwrap()).unwrap();
        assert_eq!(
            shown["state"]["reason"]["detail"], "`<command>` failed in <path>",
            "{shown}"
        );
        assert_eq!(
            payload(r#"{"change":"state","state":{"state":"plan_gate"}}"#),
            None
        );
        assert_eq!(payload(r#"{"change":"finished","reason":null}"#), None);
    }
}
