//! Reading a branch's head without starting git: the guards ask where a task's branch stands at
//! the end and start of runs, inside the stage transition, and a `git` process costs
//! milliseconds there. The ref files are read directly when they are plain — a loose ref file
//! or a line of `packed-refs`, never through a symbolic link, content checked to be an object
//! id — and anything else (a symbolic link, a reftable repository, an unreadable file) is left
//! to one `git rev-parse`.

use crate::cmd;
use crate::error::GitError;
use std::path::{Path, PathBuf};

/// What the ref files say about a branch.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Head(String),
    Absent,
    /// Not plain enough to read here: ask git.
    AskGit,
}

/// The commit `refs/heads/<branch>` points at, seen from the work tree at `dir` (a linked
/// worktree shares its repository's branches), or `None` when there is no such branch. Read
/// from the ref files when they are plain, otherwise with one `git rev-parse`.
pub async fn branch_head(dir: &Path, branch: &str) -> Result<Option<String>, GitError> {
    cmd::check_name("branch", branch)?;
    if plain_branch_name(branch) {
        let (dir2, branch2) = (dir.to_path_buf(), branch.to_string());
        let read = tokio::task::spawn_blocking(move || read_branch(&dir2, &branch2))
            .await
            .unwrap_or(Read::AskGit);
        match read {
            Read::Head(head) => return Ok(Some(head)),
            Read::Absent => return Ok(None),
            Read::AskGit => {}
        }
    }
    let rev = format!("refs/heads/{branch}");
    let out = cmd::run(dir, ["rev-parse", "--verify", "--quiet", &rev]).await?;
    if out.success {
        return Ok(Some(out.stdout.trim().to_string()));
    }
    if out.code == Some(1) || out.stderr.trim().is_empty() {
        return Ok(None);
    }
    Err(out.into_error())
}

/// Letters, digits and `-_./`, no empty or dot-led component: a name whose ref file is
/// `refs/heads/<name>` as written.
fn plain_branch_name(branch: &str) -> bool {
    !branch.is_empty()
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && branch
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"))
}

fn read_branch(dir: &Path, branch: &str) -> Read {
    let Some(common) = common_dir(dir) else {
        return Read::AskGit;
    };
    // A repository in the reftable format keeps no ref files.
    if common.join("reftable").exists() {
        return Read::AskGit;
    }
    let loose = common.join("refs/heads").join(branch);
    match std::fs::symlink_metadata(&loose) {
        Ok(meta) if meta.is_file() => {
            return match std::fs::read_to_string(&loose) {
                Ok(text) => object_id(text.trim_end()).map_or(Read::AskGit, Read::Head),
                Err(_) => Read::AskGit,
            };
        }
        Ok(_) => return Read::AskGit,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return Read::AskGit,
    }
    let packed = common.join("packed-refs");
    match std::fs::symlink_metadata(&packed) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Read::AskGit,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Read::Absent,
        Err(_) => return Read::AskGit,
    }
    let Ok(text) = std::fs::read_to_string(&packed) else {
        return Read::AskGit;
    };
    let wanted = format!("refs/heads/{branch}");
    for line in text.lines() {
        if let Some((id, name)) = line.split_once(' ')
            && name == wanted
        {
            return object_id(id).map_or(Read::AskGit, Read::Head);
        }
    }
    Read::Absent
}

/// The repository's common git directory for the work tree at `dir`: `<dir>/.git` when it is a
/// folder; for a linked worktree (`.git` a file `gitdir: …`), the folder its `commondir` names.
fn common_dir(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some(dot_git);
    }
    if !meta.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let gitdir = dir.join(text.trim_end().strip_prefix("gitdir: ")?);
    let commondir = std::fs::read_to_string(gitdir.join("commondir")).ok()?;
    Some(gitdir.join(commondir.trim_end()))
}

/// `text` when it is a full object id (SHA-1 or SHA-256, lower-case hex).
fn object_id(text: &str) -> Option<String> {
    (matches!(text.len(), 40 | 64) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_read_from_files() {
        for name in ["main", "task/12-add-hello", "a.b_c-d"] {
            assert!(plain_branch_name(name), "{name}");
        }
        for name in [
            "",
            "a//b",
            ".hidden",
            "a/.b",
            "x.lock",
            "a b",
            "a..b/../c",
            "ü",
            "../escape",
            "a/../b",
            "/abs",
        ] {
            assert!(!plain_branch_name(name), "{name}");
        }
    }

    #[test]
    fn an_object_id_is_full_lower_case_hex() {
        assert!(object_id(&"a".repeat(40)).is_some());
        assert!(object_id(&"0".repeat(64)).is_some());
        assert!(object_id(&"A".repeat(40)).is_none());
        assert!(object_id("ref: refs/heads/main").is_none());
        assert!(object_id(&"a".repeat(41)).is_none());
    }
}
