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
    CommentView, Dashboard, FollowItem, Page, ProjectView, RunView, ServerStatus, TaskDetail,
    TaskView,
};
use crate::facade::Engine;
use crate::redact::redact;
use domain::{BlockReason, TaskState};

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
            // The reviewer agent's own verdict is agent-written text, shown as written.
            TaskState::Blocked { reason, .. } if !matches!(reason, BlockReason::Agent { .. }) => {
                hide(reason.detail_mut())
            }
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

impl Shown for ServerStatus {
    fn hide_server_details(&mut self) {
        if let Some(problem) = &mut self.sandbox.problem {
            hide(problem);
        }
        for check in &mut self.checks {
            hide(&mut check.detail);
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
/// the server's details; `None` when there are none to hide. Fails closed: a payload that is not
/// JSON, or a `state` that does not parse as one, is redacted as a whole string.
pub(crate) fn payload(json: &str) -> Option<String> {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(json) else {
        return changed_text(json);
    };
    let mut changed = false;
    if let Some(reason) = value.get_mut("reason") {
        changed |= hide_value(reason);
    }
    if let Some(state) = value.get_mut("state") {
        match serde_json::from_value::<TaskState>(state.clone()) {
            Ok(mut parsed) => {
                let before = parsed.clone();
                parsed.hide_server_details();
                if parsed != before {
                    *state = serde_json::to_value(&parsed).unwrap_or_else(|_| "<hidden>".into());
                    changed = true;
                }
            }
            Err(_) => changed |= hide_value(state),
        }
    }
    changed.then(|| value.to_string())
}

/// `text` redacted, or `None` when there was nothing to hide.
fn changed_text(text: &str) -> Option<String> {
    let hidden = redact(text);
    (hidden != text).then_some(hidden)
}

/// Redacts a JSON value: a string as text, anything else through its JSON text (replaced by
/// that redacted text when it names a server detail). Whether it changed.
fn hide_value(value: &mut serde_json::Value) -> bool {
    let hidden = match &*value {
        serde_json::Value::Null => return false,
        serde_json::Value::String(text) => changed_text(text),
        other => changed_text(&other.to_string()),
    };
    match hidden {
        Some(text) => {
            *value = text.into();
            true
        }
        None => false,
    }
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

    #[test]
    fn stream_payloads_that_do_not_parse_are_redacted_whole() {
        assert_eq!(
            payload("not json: cannot start /srv/bwrap").as_deref(),
            Some("not json: cannot start <path>")
        );
        let odd =
            r#"{"change":"state","state":{"state":"from_the_future","why":"in /srv/wt/3-x"}}"#;
        let shown: serde_json::Value = serde_json::from_str(&payload(odd).unwrap()).unwrap();
        let state = shown["state"].as_str().unwrap();
        assert!(!state.contains("/srv"), "{state}");
        assert!(state.contains("<path>"), "{state}");
        let odd_reason = r#"{"change":"finished","reason":{"text":"/srv/x failed"}}"#;
        let shown = payload(odd_reason).unwrap();
        assert!(!shown.contains("/srv"), "{shown}");
    }

    #[test]
    fn the_reviewer_agents_verdict_is_shown_as_written() {
        use super::Shown;
        use domain::{BlockReason, TaskState};
        let verdict = "the change breaks /srv/app/main.rs";
        let state = |reason| TaskState::Blocked {
            stage: domain::Stage::Review,
            reason,
        };
        let mut agent = state(BlockReason::Agent {
            detail: verdict.into(),
        });
        agent.hide_server_details();
        let TaskState::Blocked { reason, .. } = &agent else {
            unreachable!()
        };
        assert_eq!(reason.detail(), verdict);
        let mut failed = state(BlockReason::RunFailed {
            detail: verdict.into(),
        });
        failed.hide_server_details();
        let TaskState::Blocked { reason, .. } = &failed else {
            unreachable!()
        };
        assert_eq!(reason.detail(), "the change breaks <path>");
    }
}
