//! Guards in the engine, not in prompts: what an agent cannot talk past. The pure rules live in
//! the domain (`domain::todo`, and `decide` for what happens to the task); this module gathers
//! the facts they need from the world — the task doc, the worktree's git HEAD — and words the
//! refusals an agent reads as the error output of its `atelier signal …` command.

use crate::error::{EngineError, Result};
use domain::{Signal, TodoItem, Verdict};
use store::{RunRow, TaskRow};

/// The most unchecked items a refusal lists by name (the rest are counted).
const LISTED_ITEMS: usize = 20;

/// Checks a signal against the guards before it is recorded; the refusal is what the agent's
/// `atelier signal …` prints.
pub(crate) async fn check_signal(_run: &RunRow, task: &TaskRow, signal: &Signal) -> Result<()> {
    if let Signal::Verdict {
        verdict: Verdict::Ready,
        ..
    } = signal
    {
        let doc = read_doc(task).await?;
        let unchecked = domain::unchecked_items(&doc);
        if !unchecked.is_empty() {
            return Err(EngineError::InvalidState(unchecked_refusal(&unchecked)));
        }
    }
    Ok(())
}

/// The task doc's text (an absent doc reads as empty: it has no to-do items).
pub(crate) async fn read_doc(task: &TaskRow) -> Result<String> {
    match tokio::fs::read_to_string(&task.doc_path).await {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(EngineError::Internal(format!(
            "cannot read the doc of task {}: {e}",
            task.id
        ))),
    }
}

/// Why `verdict ready` is refused while items are unchecked, naming them.
pub(crate) fn unchecked_refusal(unchecked: &[TodoItem]) -> String {
    let mut text = format!(
        "`verdict ready` refused: the task doc's to-do list still has {} unchecked item(s):\n",
        unchecked.len()
    );
    for item in unchecked.iter().take(LISTED_ITEMS) {
        text.push_str(&format!("- [ ] {} (line {})\n", item.text, item.line));
    }
    if unchecked.len() > LISTED_ITEMS {
        text.push_str(&format!("… and {} more\n", unchecked.len() - LISTED_ITEMS));
    }
    text.push_str(
        "Check each item in the doc once it is done and verified, then say ready again; or, if \
         work is missing, say `atelier signal verdict needs-work --reason …` (or `blocked` if \
         only a human can do it).",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_every_item_and_what_to_do() {
        let items = domain::unchecked_items(
            "## To-Do List\n- [x] done\n- [ ] Add farewell.txt\n  - [ ] nested\n",
        );
        assert_eq!(
            unchecked_refusal(&items),
            "`verdict ready` refused: the task doc's to-do list still has 2 unchecked item(s):\n\
             - [ ] Add farewell.txt (line 3)\n- [ ] nested (line 4)\n\
             Check each item in the doc once it is done and verified, then say ready again; or, \
             if work is missing, say `atelier signal verdict needs-work --reason …` (or \
             `blocked` if only a human can do it)."
        );
    }
}
