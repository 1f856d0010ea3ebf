//! The stage prompt handed to an agent at the start of a run. Role prompts proper (files,
//! strict variables, overrides) arrive with the real harnesses; this gives every agent the
//! context it needs: the task doc, its role, and how to signal.

use domain::Stage;
use store::TaskRow;

pub(crate) fn render(stage: Stage, task: &TaskRow) -> String {
    let role = match stage {
        Stage::Plan => {
            "You are the planner. Read the request in the task doc, explore the code read-only, \
             write the plan into the task doc, then run `atelier signal plan-ready` \
             (or `atelier signal question \"…\"` to ask the user)."
        }
        Stage::Implement => {
            "You are the implementer. Address the Review Findings section first if present, then \
             work the unchecked to-do items in the worktree and check each off. Never ask \
             questions. Ending your turn means done."
        }
        Stage::Review => {
            "You are the reviewer. If any item is unchecked, list them as findings and end. \
             Otherwise verify every item strictly, run the tests, then give exactly one verdict: \
             `atelier signal verdict ready|needs-work|blocked --reason \"…\"`. Never edit code."
        }
        Stage::Pr => {
            "You prepare the pull request. Commit what is uncommitted; if nothing is ahead of the \
             base branch run `atelier signal pr-done --no-changes`, else `atelier signal pr-done`."
        }
    };
    format!(
        "{role}\n\nTask {id}: {title}\nTask doc: {doc}\nWorktree: {worktree}\n",
        id = task.id,
        title = task.title,
        doc = task.doc_path,
        worktree = task.worktree.as_deref().unwrap_or("(removed)"),
    )
}
