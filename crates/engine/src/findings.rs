//! Findings the engine writes into the task doc when work goes back to the implementer: the QA
//! agent's `qa fail` reason (`## QA Findings`), and both verdicts of a pipeline with two
//! reviewers side by side (`## Review Verdicts`). They come from the run records, not from what
//! an agent chose to write into the doc, so the implementer always has them. Each section is
//! replaced, never appended to, so writing it twice (a decision retried) changes nothing.

use crate::error::{EngineError, Result};
use domain::{Signal, Stage};
use std::io::Write;
use std::path::Path;
use store::{RunRow, TaskRow, Tx};

const QA_HEADING: &str = "## QA Findings";
const VERDICTS_HEADING: &str = "## Review Verdicts";

/// Writes the findings of the round of `stage` that just ended into the task's doc.
pub(crate) fn record(tx: &Tx<'_>, task: &TaskRow, stage: Stage) -> Result<()> {
    let runs = tx.runs_of_task(task.id)?;
    let (heading, body) = match stage {
        Stage::Qa => (QA_HEADING, qa_findings(&runs)),
        _ => (VERDICTS_HEADING, review_verdicts(&runs)),
    };
    let Some(body) = body else { return Ok(()) };
    let path = Path::new(&task.doc_path);
    let doc = crate::doc_file::read(path)
        .map_err(|e| EngineError::Internal(format!("cannot read the doc {}: {e}", task.doc_path)))?
        .unwrap_or_default();
    let updated = replace_section(&doc, heading, &body);
    replace_file(path, updated.as_bytes())
        .map_err(|e| EngineError::Internal(format!("cannot write the doc {}: {e}", task.doc_path)))
}

/// The latest QA run's `qa fail` reason.
fn qa_findings(runs: &[RunRow]) -> Option<String> {
    let run = runs.iter().rev().find(|r| r.stage == Stage::Qa)?;
    let Some(Signal::Qa { result, reason }) = &run.signal else {
        return None;
    };
    Some(format!(
        "QA run #{} said `{result}`. Fix every finding below, then the work is reviewed and \
         tested again. Its evidence is in the task's attachments.\n\n{}",
        run.iteration,
        reason.as_deref().unwrap_or("(no reason given)").trim()
    ))
}

/// Both reviewers' latest verdicts, with their agents, reasons and reviewed commits.
fn review_verdicts(runs: &[RunRow]) -> Option<String> {
    let mut lines = Vec::new();
    for (stage, who) in [
        (Stage::Review, "First reviewer"),
        (Stage::SecondReview, "Second reviewer"),
    ] {
        let Some(run) = runs.iter().rev().find(|r| r.stage == stage) else {
            continue;
        };
        let agent = [run.harness.as_deref(), run.model.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let (verdict, reason) = match &run.signal {
            Some(Signal::Verdict { verdict, reason }) => {
                (verdict.to_string(), reason.clone().unwrap_or_default())
            }
            _ => ("no verdict".to_string(), String::new()),
        };
        let commit = run
            .reviewed_commit
            .as_deref()
            .map(|c| format!(" (on {})", &c[..c.len().min(12)]))
            .unwrap_or_default();
        let reason = reason.trim().replace('\n', " ");
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        lines.push(format!("- {who} ({agent}): `{verdict}`{commit}{reason}"));
    }
    (!lines.is_empty()).then(|| {
        format!(
            "Both reviewers must say `ready`. Their findings are in `## Review Findings` and \
             `## Second Review Findings`.\n\n{}",
            lines.join("\n")
        )
    })
}

/// `doc` with the section under `heading` (up to the next heading of the same or a higher
/// level) replaced by `body`, or with the section added at the end.
pub(crate) fn replace_section(doc: &str, heading: &str, body: &str) -> String {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let section = format!("{heading}\n\n{}\n", body.trim_end());
    let lines: Vec<&str> = doc.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == heading) else {
        let mut out = doc.trim_end().to_string();
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&section);
        return out;
    };
    let ends_section = |line: &&str| {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        hashes > 0 && hashes <= level && line[hashes..].starts_with(' ')
    };
    let end = lines[start + 1..]
        .iter()
        .position(ends_section)
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out = lines[..start].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&section);
    if end < lines.len() {
        out.push('\n');
        out.push_str(&lines[end..].join("\n"));
        out.push('\n');
    }
    out
}

/// Replaces the file at `path` with `bytes` through a temporary file beside it, created anew
/// (a link an agent planted at the temporary name is removed, never followed), then renamed
/// over `path` (which replaces a link there instead of writing through it).
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("md.atelier-tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::{replace_file, replace_section};

    #[test]
    fn a_section_is_added_once_then_replaced_in_place() {
        let doc = "# Task\n\n## To-Do List\n\n- [x] a\n";
        let once = replace_section(doc, "## QA Findings", "first");
        assert_eq!(
            once,
            "# Task\n\n## To-Do List\n\n- [x] a\n\n## QA Findings\n\nfirst\n"
        );
        let twice = replace_section(&once, "## QA Findings", "second");
        assert_eq!(twice, once.replace("first", "second"));
        let middle = "# T\n\n## QA Findings\n\nold\n### detail\nx\n\n## Notes\n\nkeep\n";
        assert_eq!(
            replace_section(middle, "## QA Findings", "new"),
            "# T\n\n## QA Findings\n\nnew\n\n## Notes\n\nkeep\n"
        );
    }

    #[test]
    fn a_planted_link_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("api-token");
        std::fs::write(&secret, "hunter2").unwrap();
        let doc = dir.path().join("doc.md");
        std::fs::write(&doc, "# plan").unwrap();
        std::os::unix::fs::symlink(&secret, doc.with_extension("md.atelier-tmp")).unwrap();
        replace_file(&doc, b"# new plan").unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "hunter2");
        assert_eq!(std::fs::read_to_string(&doc).unwrap(), "# new plan");
    }
}
