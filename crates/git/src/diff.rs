//! What a work tree changed against a base: the files (status, added and deleted lines, binary
//! or not) and the patch, committed and uncommitted changes together, untracked files as added.

use crate::GitError;
use crate::TaskWorktree;
use crate::cmd::check_name;

/// Untracked files reported at most (each costs one git command).
const MAX_UNTRACKED: usize = 200;

/// Files listed at most (the diff is then marked cut): a page shows every one.
pub const MAX_FILES: usize = 2_000;

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffFile {
    pub path: String,
    /// The path before a rename.
    pub old_path: Option<String>,
    pub status: DiffStatus,
    pub additions: u32,
    pub deletions: u32,
    pub binary: bool,
}

/// A work tree's changes against the merge base of its `HEAD` and a base revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkTreeDiff {
    /// The merge base (a commit id).
    pub base: String,
    pub files: Vec<DiffFile>,
    /// The unified diff, cut at `max_patch_bytes` (on a line boundary when it can be).
    pub patch: String,
    /// Whether the patch was cut, or the file list (at [`MAX_FILES`]).
    pub truncated: bool,
}

/// The changes in the task's worktree — commits since the merge base of `HEAD` and `base_rev`,
/// staged and unstaged edits, and untracked (not ignored) files as added — with the patch capped
/// at `max_patch_bytes`. Through the worktree's recipe ([`TaskWorktree`]): submodules are not
/// looked into, and no external diff program or text conversion runs.
pub async fn work_tree_diff(
    worktree: &TaskWorktree,
    base_rev: &str,
    max_patch_bytes: usize,
) -> Result<WorkTreeDiff, GitError> {
    check_name("revision", base_rev)?;
    let base = worktree
        .git_ok(["merge-base", "HEAD", base_rev])
        .await?
        .trim()
        .to_string();
    let diff = |extra: &[&'static str]| {
        let mut args: Vec<&str> = vec![
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--ignore-submodules=all",
            "-M",
        ];
        args.extend_from_slice(extra);
        args.extend([base.as_str(), "--"]);
        args
    };
    // At once: each git command costs a process start (and, confined, a sandbox's).
    let (statuses, numstat, mut patch, untracked) = tokio::try_join!(
        worktree.git_ok(diff(&["--name-status", "-z"])),
        worktree.git_ok(diff(&["--numstat", "-z"])),
        worktree.git_ok(diff(&[])),
        worktree.git_ok(["ls-files", "--others", "--exclude-standard", "-z"]),
    )?;
    let mut files = parse_name_status(&statuses);
    // By path, not a search per file: an agent decides how many files there are.
    let counts: std::collections::HashMap<String, (Option<u32>, Option<u32>)> =
        parse_numstat(&numstat)
            .into_iter()
            .map(|(path, additions, deletions)| (path, (additions, deletions)))
            .collect();
    for file in &mut files {
        if let Some((additions, deletions)) = counts.get(&file.path) {
            file.additions = additions.unwrap_or(0);
            file.deletions = deletions.unwrap_or(0);
            file.binary = additions.is_none();
        }
    }
    for path in untracked
        .split('\0')
        .filter(|p| !p.is_empty())
        .take(MAX_UNTRACKED)
    {
        // Only a file or a link is read: a named pipe (or a device) would block git.
        let readable = std::fs::symlink_metadata(worktree.path().join(path))
            .is_ok_and(|meta| meta.is_file() || meta.is_symlink());
        if !readable {
            files.push(DiffFile {
                path: path.to_string(),
                old_path: None,
                status: DiffStatus::Added,
                additions: 0,
                deletions: 0,
                binary: true,
            });
            continue;
        }
        // Its counts and (while the patch has room) its patch from one git command.
        let with_patch = patch.len() <= max_patch_bytes;
        let extra: &[&str] = if with_patch {
            &["--numstat", "-z", "--patch"]
        } else {
            &["--numstat", "-z"]
        };
        let out = no_index(worktree, extra, path).await?;
        // `-z --numstat`: `<added>\t<deleted>\t\0/dev/null\0<path>\0`, then with the patch a
        // `\0` and the patch.
        let mut parts = out.splitn(4, '\0');
        let counts: Vec<&str> = parts.next().unwrap_or_default().split('\t').collect();
        let additions = counts.first().and_then(|n| n.parse::<u32>().ok());
        let binary = counts.first().is_some_and(|n| *n == "-");
        if with_patch {
            let rest = parts.nth(2).unwrap_or_default();
            patch.push_str(rest.strip_prefix('\0').unwrap_or(rest));
        }
        files.push(DiffFile {
            path: path.to_string(),
            old_path: None,
            status: DiffStatus::Added,
            additions: additions.unwrap_or(0),
            deletions: 0,
            binary,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let cut_files = files.len() > MAX_FILES;
    files.truncate(MAX_FILES);
    let cut_patch = patch.len() > max_patch_bytes;
    if cut_patch {
        let mut cut = max_patch_bytes;
        while !patch.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(line_end) = patch[..cut].rfind('\n') {
            cut = line_end + 1;
        }
        patch.truncate(cut);
    }
    Ok(WorkTreeDiff {
        base,
        files,
        patch,
        truncated: cut_patch || cut_files,
    })
}

/// `git diff --no-index <extra…> -- /dev/null <path>`: an untracked file as an addition (git
/// exits 1 when there is a difference).
async fn no_index(worktree: &TaskWorktree, extra: &[&str], path: &str) -> Result<String, GitError> {
    let mut args = vec!["diff", "--no-index", "--no-ext-diff", "--no-textconv"];
    args.extend_from_slice(extra);
    args.extend(["--", "/dev/null", path]);
    let out = worktree.git(args).await?;
    match out.code {
        Some(0 | 1) => Ok(out.stdout),
        _ => Err(out.into_error()),
    }
}

/// `--name-status -z` output: a status, then one path (two for a rename or copy).
fn parse_name_status(text: &str) -> Vec<DiffFile> {
    let mut parts = text.split('\0').filter(|p| !p.is_empty());
    let mut files = Vec::new();
    while let Some(code) = parts.next() {
        let (status, paths) = match code.chars().next() {
            Some('A') => (DiffStatus::Added, 1),
            Some('D') => (DiffStatus::Deleted, 1),
            Some('R') => (DiffStatus::Renamed, 2),
            // A copy shows as the new file added.
            Some('C') => (DiffStatus::Added, 2),
            _ => (DiffStatus::Modified, 1),
        };
        let first = parts.next().unwrap_or_default().to_string();
        let (path, old_path) = if paths == 2 {
            let new = parts.next().unwrap_or_default().to_string();
            (new, (status == DiffStatus::Renamed).then_some(first))
        } else {
            (first, None)
        };
        files.push(DiffFile {
            path,
            old_path,
            status,
            additions: 0,
            deletions: 0,
            binary: false,
        });
    }
    files
}

/// `--numstat -z` output as `(path, additions, deletions)`; binary files count `None`.
fn parse_numstat(text: &str) -> Vec<(String, Option<u32>, Option<u32>)> {
    let mut parts = text.split('\0');
    let mut out = Vec::new();
    while let Some(record) = parts.next() {
        let mut fields = record.splitn(3, '\t');
        let (Some(added), Some(deleted), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // A rename: the path field is empty and the old and new paths follow.
        let path = if path.is_empty() {
            let _old = parts.next();
            parts.next().unwrap_or_default().to_string()
        } else {
            path.to_string()
        };
        out.push((path, added.parse().ok(), deleted.parse().ok()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_and_numstat_are_parsed_with_renames() {
        let files = parse_name_status("M\0a.txt\0R087\0old.txt\0new.txt\0D\0gone.txt\0A\0x\0");
        let summary: Vec<_> = files
            .iter()
            .map(|f| (f.path.as_str(), f.old_path.as_deref(), f.status))
            .collect();
        assert_eq!(
            summary,
            [
                ("a.txt", None, DiffStatus::Modified),
                ("new.txt", Some("old.txt"), DiffStatus::Renamed),
                ("gone.txt", None, DiffStatus::Deleted),
                ("x", None, DiffStatus::Added),
            ]
        );
        assert_eq!(
            parse_numstat("3\t1\ta.txt\x001\t0\t\0old.txt\0new.txt\0-\t-\timg.png\0"),
            [
                ("a.txt".to_string(), Some(3), Some(1)),
                ("new.txt".to_string(), Some(1), Some(0)),
                ("img.png".to_string(), None, None),
            ]
        );
    }
}
