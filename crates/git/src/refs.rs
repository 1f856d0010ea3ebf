//! Reading a branch's head without starting git: the guards ask where a task's branch stands at
//! the end and start of runs, inside the stage transition, and a `git` process costs
//! milliseconds there. The ref files of the repository's own `.git` folder (never a `.git`
//! file's pointer: a worktree's is the agent's to rewrite) are read directly when they are
//! plain — every folder on the way a real folder, the ref a regular file of at most 4 KiB (and
//! `packed-refs` at most 16 MiB), its content an object id. A symbolic link, a linked folder or
//! a special file on the way is taken for no branch at all (git would follow it, or block on a
//! pipe); what is merely unusual (a reftable repository, an oversized file) is left to one
//! `git rev-parse`, with the repository's `.git` folder named outright (a `dir` whose `.git` is
//! a pointer file is no repository here).

use crate::cmd;
use crate::error::GitError;
use std::path::Path;

/// What the ref files say about a branch.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Head(String),
    Absent,
    /// A symbolic link, a linked folder or a special file (a pipe would block any reader, git
    /// included) where a ref should be: something only an agent would plant. No head.
    Planted,
    /// Not plain enough to read here, but harmless to git: ask it.
    AskGit,
}

/// The commit `refs/heads/<branch>` points at in the repository whose main work tree is `dir`,
/// or `None` when there is no such branch. Read from the ref files when they are plain,
/// otherwise with one `git rev-parse`.
pub async fn branch_head(dir: &Path, branch: &str) -> Result<Option<String>, GitError> {
    cmd::check_name("branch", branch)?;
    if plain_branch_name(branch) {
        let (dir2, branch2) = (dir.to_path_buf(), branch.to_string());
        let read = tokio::task::spawn_blocking(move || read_branch(&dir2, &branch2))
            .await
            .unwrap_or(Read::AskGit);
        match read {
            Read::Head(head) => return Ok(Some(head)),
            Read::Absent | Read::Planted => return Ok(None),
            Read::AskGit => {}
        }
    }
    let rev = format!("refs/heads/{branch}");
    let common = dir.join(".git");
    let options = cmd::CommandOptions {
        env: cmd::explicit_repo(&common, &common, dir),
        timeout: None,
    };
    let view = crate::confine::View::reading(&common);
    let out = cmd::run_in(
        dir,
        ["rev-parse", "--verify", "--quiet", &rev],
        &options,
        Some(&view),
    )
    .await?;
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

/// Ref files larger than this are not plain (a loose ref is one line).
const MAX_REF_BYTES: u64 = 4096;
/// `packed-refs` larger than this is left to git.
const MAX_PACKED_BYTES: u64 = 16 << 20;

fn read_branch(dir: &Path, branch: &str) -> Read {
    let common = dir.join(".git");
    // Every folder from `.git` down to the ref's own must be a real folder, not a link.
    if !real_dir(&common) {
        return Read::AskGit;
    }
    // A repository in the reftable format keeps no ref files.
    if std::fs::symlink_metadata(common.join("reftable")).is_ok() {
        return Read::AskGit;
    }
    let mut parts: Vec<&str> = vec!["refs", "heads"];
    parts.extend(branch.split('/'));
    let Some(file) = parts.pop() else {
        return Read::AskGit;
    };
    let mut folder = common.clone();
    for part in parts {
        folder.push(part);
        match std::fs::symlink_metadata(&folder) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Read::Planted,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return packed(&common, branch);
            }
            Err(_) => return Read::AskGit,
        }
    }
    let loose = folder.join(file);
    match std::fs::symlink_metadata(&loose) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_REF_BYTES => {
            match read_capped(&loose, MAX_REF_BYTES) {
                Some(text) => object_id(text.trim_end()).map_or(Read::AskGit, Read::Head),
                None => Read::AskGit,
            }
        }
        Ok(meta) if meta.is_file() => Read::AskGit,
        Ok(_) => Read::Planted,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => packed(&common, branch),
        Err(_) => Read::AskGit,
    }
}

/// The branch in `<common>/packed-refs` (absent when there is no such file or line).
fn packed(common: &Path, branch: &str) -> Read {
    let path = common.join("packed-refs");
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_PACKED_BYTES => {}
        Ok(meta) if meta.is_file() => return Read::AskGit,
        Ok(_) => return Read::Planted,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Read::Absent,
        Err(_) => return Read::AskGit,
    }
    let Some(text) = read_capped(&path, MAX_PACKED_BYTES) else {
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

fn real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir())
}

/// The text of the regular file at `path`, opened without following a final symbolic link (and
/// without blocking on a pipe put there meanwhile), if it is UTF-8 and at most `cap` bytes.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(cap + 1).read_to_string(&mut text).ok()?;
    (text.len() as u64 <= cap).then_some(text)
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
