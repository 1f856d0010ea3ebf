//! Guards in the engine, not in prompts: what an agent cannot talk past. The pure rules live in
//! the domain (`domain::todo`, and `decide` for what happens to the task); this module gathers
//! the facts they need from the world — the task doc, the worktree's git HEAD — and words the
//! refusals an agent reads as the error output of its `atelier signal …` command.

use crate::error::{EngineError, Result};
use crate::inner::Inner;
use domain::{QaResult, RunId, RunOutcome, Signal, Stage, TodoItem, TranscriptEvent, Verdict};
use std::path::Path;
use store::{RunRow, TaskRow};

/// The most unchecked items a refusal lists by name (the rest are counted).
const LISTED_ITEMS: usize = 20;

/// Checks a signal against the guards before it is recorded; the refusal is what the agent's
/// `atelier signal …` prints. For a verdict, a QA result or `refine-done`, returns the commit
/// it is given on (the task branch's head), to be recorded on the run.
pub(crate) async fn check_signal(
    inner: &Inner,
    task: &TaskRow,
    signal: &Signal,
) -> Result<Option<String>> {
    match signal {
        Signal::Verdict { verdict, .. } => {
            if *verdict == Verdict::Ready {
                refuse_unchecked(task, "verdict ready").await?;
            }
            Ok(branch_head(inner, task).await)
        }
        Signal::Qa { result, .. } => {
            if *result == QaResult::Pass {
                refuse_unchecked(task, "qa pass").await?;
            }
            // The commit QA tested, for the evidence bundle.
            Ok(branch_head(inner, task).await)
        }
        // The refiner is the one agent trusted to commit after the review (its pass is the
        // last before publishing): the head it signals on is recorded as vouched for.
        Signal::RefineDone => Ok(branch_head(inner, task).await),
        Signal::PrDone { .. } => {
            // What is published must be what was reviewed — in a pipeline that reviews.
            if !crate::views::pipeline(task)?.has_stage(Stage::Review) {
                return Ok(None);
            }
            if let Some(refusal) = unreviewed(inner, task).await? {
                return Err(EngineError::InvalidState(format!(
                    "`pr-done` refused: {refusal}. Commits made after the review are reviewed \
                     before anything is published: end your turn without committing more; the \
                     task goes back to review, then to the pr stage again."
                )));
            }
            Ok(None)
        }
        Signal::PlanReady | Signal::Question { .. } => Ok(None),
    }
}

/// Refuses `what` (`verdict ready`, `qa pass`) while the task doc's to-do list has unchecked
/// items, naming them.
async fn refuse_unchecked(task: &TaskRow, what: &str) -> Result<()> {
    let doc = read_doc(task).await?;
    let unchecked = domain::unchecked_items(&doc);
    if unchecked.is_empty() {
        return Ok(());
    }
    Err(EngineError::InvalidState(unchecked_refusal(
        &unchecked, what,
    )))
}

/// Why the task branch's head is not a reviewed commit, if it is not: before a pull request is
/// opened, the head must be the commit of the last `ready` verdict (or, after it, of a refine
/// run's `refine-done`). A verdict recorded before
/// its commit was (migration 11), or an unreadable head, is not held against the task.
async fn unreviewed(inner: &Inner, task: &TaskRow) -> Result<Option<String>> {
    let (open, verdict, refined) = inner.store.read(|tx| {
        Ok::<_, EngineError>((
            tx.pull_request(task.id)?.is_some(),
            tx.latest_verdict(task.id)?,
            tx.refined_commit_after_review(task.id)?,
        ))
    })?;
    let Some((Verdict::Ready, Some(reviewed))) = verdict.filter(|_| !open) else {
        return Ok(None);
    };
    let reviewed = refined.unwrap_or(reviewed);
    let Some(head) = branch_head(inner, task).await else {
        return Ok(None);
    };
    Ok((head != reviewed).then(|| {
        format!(
            "the task branch's head {} is not the commit the reviewer said `ready` on ({})",
            short(&head),
            short(&reviewed)
        )
    }))
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

/// The task doc's text (an absent doc reads as empty: it has no to-do items).
pub(crate) async fn read_doc(task: &TaskRow) -> Result<String> {
    let path = std::path::PathBuf::from(&task.doc_path);
    let read = tokio::task::spawn_blocking(move || crate::doc_file::read(&path))
        .await
        .map_err(|e| EngineError::Internal(format!("reading the doc of task {}: {e}", task.id)))?;
    match read {
        Ok(doc) => Ok(doc.unwrap_or_default()),
        Err(e) => Err(EngineError::InvalidState(format!(
            "the doc of task {} cannot be read: {e}; write it as a plain file at its path",
            task.id
        ))),
    }
}

/// Why `verdict ready` is refused while items are unchecked, naming them.
pub(crate) fn unchecked_refusal(unchecked: &[TodoItem], what: &str) -> String {
    let mut text = format!(
        "`{what}` refused: the task doc's to-do list still has {} unchecked item(s):\n",
        unchecked.len()
    );
    for item in unchecked.iter().take(LISTED_ITEMS) {
        text.push_str(&format!("- [ ] {} (line {})\n", item.text, item.line));
    }
    if unchecked.len() > LISTED_ITEMS {
        text.push_str(&format!("… and {} more\n", unchecked.len() - LISTED_ITEMS));
    }
    text.push_str(if what == "qa pass" {
        "The work is not done: say `atelier signal qa fail --reason …` naming these items."
    } else {
        "Check each item in the doc once it is done and verified, then say ready again; or, if \
         work is missing, say `atelier signal verdict needs-work --reason …` (or `blocked` if \
         only a human can do it)."
    });
    text
}

/// The commit at the head of the task's branch (what its worktree has committed, and what a
/// pull request publishes); `None` when it cannot be read (no worktree, no such branch).
pub(crate) async fn branch_head(inner: &Inner, task: &TaskRow) -> Option<String> {
    task.worktree.as_ref()?;
    // Branches live in the project's repository, whose path the server knows; read there (not
    // through the worktree's `.git` pointer, which the agent can rewrite), from the ref files
    // when they are plain (no git process inside the transition).
    let project = inner.store.read(|tx| tx.project(task.project_id)).ok()??;
    git::branch_head(Path::new(&project.path), &task.branch)
        .await
        .ok()
        .flatten()
}

/// Where the task's work stands: its branch's head and how many to-do items its doc has
/// checked.
pub(crate) async fn work_state(inner: &Inner, task: &TaskRow) -> (Option<String>, u32) {
    let head = branch_head(inner, task).await;
    let checked = domain::checked_count(&read_doc(task).await.unwrap_or_default());
    (head, checked)
}

/// A run that ended normally is judged by the guards before its end is recorded:
/// - an implement run with no new commit on the task branch and no newly checked to-do item
///   ends with `NoProgress` (whose `earlier` count `supervisor::finish` reads from the store),
///   unless it signalled `pr-done` (a yolo implementer publishing earlier runs' commits);
/// - a pr run that leaves the branch's head at a commit no `ready` verdict was given on, before
///   any pull request is open, ends with `Unreviewed` (back to review).
///
/// Other runs, a run that asked a question, and runs recorded without a start (before
/// migration 11) keep their outcome.
pub(crate) async fn judge(inner: &Inner, run: RunId, outcome: RunOutcome) -> RunOutcome {
    if !matches!(outcome, RunOutcome::Ended { .. }) {
        return outcome;
    }
    let rows = inner.store.read(|tx| {
        let Some(row) = tx.run(run)? else {
            return Ok::<_, store::StoreError>(None);
        };
        Ok(tx.task(row.task_id)?.map(|task| (row, task)))
    });
    let Ok(Some((row, task))) = rows else {
        return outcome;
    };
    if matches!(row.signal, Some(Signal::Question { .. })) {
        return outcome;
    }
    match row.stage {
        // An implementer that signalled `pr-done` (a pipeline without review) published what
        // its earlier runs committed: that is not a run without progress.
        Stage::Implement if matches!(row.signal, Some(Signal::PrDone { .. })) => outcome,
        Stage::Implement => judge_progress(inner, &row, &task, outcome).await,
        Stage::Pr => match unreviewed(inner, &task).await {
            Ok(Some(detail)) => RunOutcome::Unreviewed {
                signal: row.signal,
                detail,
            },
            Ok(None) => outcome,
            Err(err) => {
                tracing::warn!(%run, error = %err, "cannot check the reviewed commit");
                outcome
            }
        },
        Stage::Plan | Stage::Review | Stage::SecondReview | Stage::Qa | Stage::Refine => outcome,
    }
}

async fn judge_progress(
    inner: &Inner,
    row: &RunRow,
    task: &TaskRow,
    outcome: RunOutcome,
) -> RunOutcome {
    let Some(start_checked) = row.start_checked else {
        return outcome;
    };
    let (head, checked) = work_state(inner, task).await;
    if head != row.start_head || checked > start_checked {
        return outcome;
    }
    let at = head.as_deref().map_or("no commit".to_string(), short);
    RunOutcome::NoProgress {
        detail: format!(
            "the implement run ended with no new commit on the task branch (still at {at}) and \
             no newly checked to-do item ({checked} checked, as when it started)"
        ),
        earlier: 0,
    }
}

/// Watches a run's transcript for the same tool call with the same input made again and
/// again. Only tool calls count: messages, thinking and tool results between them do not break
/// a row; a different call (another tool, or the same tool with another input) does.
#[derive(Debug)]
pub(crate) struct Repeats {
    limit: u32,
    last: Option<(String, serde_json::Value)>,
    count: u32,
}

impl Repeats {
    pub fn new(limit: u32) -> Repeats {
        Repeats {
            limit: limit.max(2),
            last: None,
            count: 0,
        }
    }

    /// How many identical calls in a row interrupt the run.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Takes the next event; says why when it makes the row reach the limit.
    pub fn see(&mut self, event: &TranscriptEvent) -> Option<String> {
        let TranscriptEvent::ToolCall { name, input, .. } = event else {
            return None;
        };
        match &self.last {
            Some((last_name, last_input)) if last_name == name && last_input == input => {
                self.count += 1;
            }
            _ => {
                self.last = Some((name.clone(), input.clone()));
                self.count = 1;
            }
        }
        (self.count == self.limit).then(|| {
            let mut shown = input.to_string();
            if shown.len() > 200 {
                let cut = (0..=200)
                    .rev()
                    .find(|i| shown.is_char_boundary(*i))
                    .unwrap_or(0);
                shown.truncate(cut);
                shown.push('…');
            }
            format!(
                "the agent called `{name}` with the same input {} times in a row ({shown})",
                self.count
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, input: serde_json::Value) -> TranscriptEvent {
        TranscriptEvent::ToolCall {
            id: Some(format!("{name}-{input}")),
            name: name.into(),
            input,
        }
    }

    #[test]
    fn the_same_call_in_a_row_trips_the_repetition_guard_once_at_the_limit() {
        let mut repeats = Repeats::new(3);
        let ls = || call("shell", serde_json::json!({"command": "ls"}));
        let other = TranscriptEvent::Message { text: "hm".into() };
        assert_eq!(repeats.see(&ls()), None);
        assert_eq!(repeats.see(&other), None, "messages do not break a row");
        assert_eq!(repeats.see(&ls()), None);
        assert_eq!(
            repeats.see(&ls()).as_deref(),
            Some(
                "the agent called `shell` with the same input 3 times in a row \
                 ({\"command\":\"ls\"})"
            )
        );
        assert_eq!(repeats.see(&ls()), None, "reported once");
        // Another input, or another tool, starts a new row.
        let mut repeats = Repeats::new(2);
        assert_eq!(repeats.see(&ls()), None);
        assert_eq!(
            repeats.see(&call("shell", serde_json::json!({"command": "pwd"}))),
            None
        );
        assert_eq!(
            repeats.see(&call("read", serde_json::json!({"command": "pwd"}))),
            None
        );
        assert!(
            repeats
                .see(&call("read", serde_json::json!({"command": "pwd"})))
                .is_some()
        );
    }

    #[test]
    fn the_refusal_names_every_item_and_what_to_do() {
        let items = domain::unchecked_items(
            "## To-Do List\n- [x] done\n- [ ] Add farewell.txt\n  - [ ] nested\n",
        );
        assert_eq!(
            unchecked_refusal(&items, "verdict ready"),
            "`verdict ready` refused: the task doc's to-do list still has 2 unchecked item(s):\n\
             - [ ] Add farewell.txt (line 3)\n- [ ] nested (line 4)\n\
             Check each item in the doc once it is done and verified, then say ready again; or, \
             if work is missing, say `atelier signal verdict needs-work --reason …` (or \
             `blocked` if only a human can do it)."
        );
    }
}
