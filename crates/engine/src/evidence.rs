//! The evidence bundle gathered at publish time: the task's runs, the commands its agents ran
//! (from the stored transcript), its doc and its attachments go into `pr_body::build`, whose
//! markdown is the pull request's body and is kept as `evidence.md` in the task's attachments,
//! replaced at every publish. The doc folder is writable to the task's agent, so the doc is read
//! only when it is a regular file (never through a symlink) and the bundle is written through the
//! attachments' own open-folder helpers.

use crate::attachments;
use crate::error::{EngineError, Result};
use crate::inner::Inner;
use crate::pr_body::{self, EVIDENCE_FILE, Evidence};
use domain::{RunId, Stage, TranscriptEvent};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use store::TaskRow;

/// The most of the task doc read (a larger doc is read up to this).
const DOC_LIMIT: u64 = 2_000_000;

/// The bundle of `task` as it stands now.
pub(crate) fn bundle(inner: &Inner, task: &TaskRow) -> Result<String> {
    let (runs, stored) = inner.store.read(|tx| {
        Ok::<_, EngineError>((tx.runs_of_task(task.id)?, tx.task_command_events(task.id)?))
    })?;
    let events: Vec<(RunId, Stage, TranscriptEvent)> = stored
        .into_iter()
        .filter_map(|event| {
            let decoded = serde_json::from_str(&event.json).ok()?;
            Some((event.run, event.stage, decoded))
        })
        .collect();
    let commands = pr_body::test_runs(&events);
    let doc = read_doc(&task.doc_path);
    let attachments = match attachments::list_in(&attachments::folder_of(&task.doc_path)?) {
        Ok(list) => list.into_iter().map(|a| a.name).collect(),
        Err(err) => {
            tracing::warn!(task = %task.id, error = %err, "cannot list the attachments for the evidence bundle");
            Vec::new()
        }
    };
    let server_url = Some(inner.config.server_url.as_str()).filter(|url| !url.is_empty());
    Ok(pr_body::build(&Evidence {
        task: task.id,
        title: &task.title,
        doc: &doc,
        runs: &runs,
        commands: &commands,
        attachments: &attachments,
        server_url,
    }))
}

/// Keeps `bundle` as `evidence.md` in the task's attachments, replacing the previous one.
pub(crate) fn keep(task: &TaskRow, bundle: &str) -> Result<()> {
    let dir = attachments::folder_of(&task.doc_path)?;
    attachments::write_in(&dir, EVIDENCE_FILE, bundle.as_bytes())
}

/// The task doc's text, empty when it is missing, unreadable or not a regular file (a symlink
/// planted in the doc folder is not followed).
fn read_doc(path: &str) -> String {
    let read = || -> std::io::Result<String> {
        let seen = std::fs::symlink_metadata(path)?;
        if !seen.is_file() {
            return Ok(String::new());
        }
        let file = std::fs::File::open(path)?;
        let opened = file.metadata()?;
        if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
            return Ok(String::new());
        }
        let mut bytes = Vec::new();
        file.take(DOC_LIMIT).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doc_is_read_only_when_it_is_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("doc.md");
        std::fs::write(&doc, "## Overview\n\nHi.\n").unwrap();
        assert_eq!(read_doc(doc.to_str().unwrap()), "## Overview\n\nHi.\n");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "## Overview\n\nhunter2\n").unwrap();
        let planted = dir.path().join("planted.md");
        std::os::unix::fs::symlink(&secret, &planted).unwrap();
        assert_eq!(read_doc(planted.to_str().unwrap()), "");
        assert_eq!(read_doc(dir.path().join("missing").to_str().unwrap()), "");
    }
}
