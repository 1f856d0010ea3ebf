//! The pull request's description, rebuilt at every publish so it stays current with the
//! branch: the plan's overview, the to-do list as checked off, the review verdicts in order and
//! what the runs used. Everything in it comes from the task doc and the run records; the forge
//! renders it as markdown.

use domain::{Signal, Stage};
use store::{RunRow, TaskRow};

/// Longest section taken from the task doc, so one huge section cannot blow the forge's limit.
const SECTION_LIMIT: usize = 8_000;

/// The body of `task`'s pull request.
pub(crate) fn build(task: &TaskRow, doc: &str, runs: &[RunRow]) -> String {
    let mut body = format!("Atelier task #{}: {}\n", task.id, task.title);
    if let Some(overview) = section(doc, "Overview") {
        body.push_str(&format!("\n## Plan summary\n\n{overview}\n"));
    }
    if let Some(todo) = section(doc, "To-Do List") {
        body.push_str(&format!("\n## To-do list\n\n{todo}\n"));
    }
    let verdicts: Vec<String> = runs
        .iter()
        .filter(|run| run.stage == Stage::Review)
        .filter_map(|run| match &run.signal {
            Some(Signal::Verdict { verdict, reason }) => Some(format!(
                "- Review #{}: **{verdict}**{}",
                run.iteration,
                reason
                    .as_deref()
                    .map(|r| format!(": {}", one_line(r)))
                    .unwrap_or_default()
            )),
            _ => None,
        })
        .collect();
    if !verdicts.is_empty() {
        body.push_str(&format!(
            "\n## Review verdicts\n\n{}\n",
            verdicts.join("\n")
        ));
    }
    let input: u64 = runs.iter().map(|r| r.input_tokens).sum();
    let output: u64 = runs.iter().map(|r| r.output_tokens).sum();
    let cost: f64 = runs.iter().map(|r| r.cost_usd).sum();
    let mut per_stage = Vec::new();
    for stage in Stage::ALL {
        let count = runs.iter().filter(|r| r.stage == stage).count();
        if count > 0 {
            per_stage.push(format!("{stage} ×{count}"));
        }
    }
    body.push_str(&format!(
        "\n## Runs and usage\n\n{} runs ({}); {input} input and {output} output tokens{}.\n",
        runs.len(),
        per_stage.join(", "),
        if cost > 0.0 {
            format!(", ${cost:.2}")
        } else {
            String::new()
        }
    ));
    body
}

/// The text under the `## <heading>` of the doc, up to the next heading of level 2, trimmed and
/// bounded; `None` when missing or empty.
fn section(doc: &str, heading: &str) -> Option<String> {
    let mut lines = doc.lines();
    lines.find(|l| l.trim() == format!("## {heading}"))?;
    let text: Vec<&str> = lines.take_while(|l| !l.starts_with("## ")).collect();
    let text = text.join("\n").trim().to_string();
    if text.is_empty() {
        return None;
    }
    if text.len() > SECTION_LIMIT {
        let mut cut = SECTION_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        return Some(format!("{}\n\n…(cut)", &text[..cut]));
    }
    Some(text)
}

fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_found_and_bounded() {
        let doc = "# T\n\n## Overview\n\nDo the thing.\n\n## To-Do List\n\n- [x] a\n- [ ] b\n\n## Docs Update\n\nnone\n";
        assert_eq!(section(doc, "Overview").as_deref(), Some("Do the thing."));
        assert_eq!(
            section(doc, "To-Do List").as_deref(),
            Some("- [x] a\n- [ ] b")
        );
        assert_eq!(section(doc, "Missing"), None);
        let long = format!("## Overview\n{}", "é".repeat(SECTION_LIMIT));
        assert!(section(&long, "Overview").unwrap().ends_with("…(cut)"));
    }
}
