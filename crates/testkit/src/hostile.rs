//! What a hostile agent can plant in the git files it may write, to make the server's own git
//! (which runs outside the sandbox) run a command: each plant names a `marker` file that the
//! planted command would create, so a test asserts the marker never appears.
//!
//! - [`plant_pointer`]: the worktree's `.git` pointer file rewritten to a git folder made in the
//!   worktree, whose config sets `core.fsmonitor`;
//! - [`plant_commondir`]: the worktree entry's `commondir` rewritten to a common folder whose
//!   config sets `core.fsmonitor`;
//! - [`plant_main_commondir`]: a `commondir` file written into the repository's own `.git`,
//!   leading to a copy whose config sets `core.hooksPath` to a folder with a
//!   `reference-transaction` hook (run by every ref update);
//! - [`plant_submodule`]: a submodule in the worktree (a gitlink in its index, `.gitmodules`
//!   with `ignore = none`) whose own config has a clean filter its attributes apply, so a
//!   `git status` that looks into submodules runs it.

use crate::repo::git;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// `touch <marker>` as a shell command (the marker's path quoted).
fn touch(marker: &Path) -> String {
    format!("touch '{}'", marker.display())
}

/// The worktree's own git folder (`<repo>/.git/worktrees/<name>`), as git reports it.
pub fn entry_of(worktree: &Path) -> anyhow::Result<PathBuf> {
    let out = git(
        worktree,
        &["rev-parse", "--path-format=absolute", "--git-dir"],
    )?;
    Ok(PathBuf::from(out.trim()))
}

/// Rewrites `<worktree>/.git` to point at `<worktree>/.evil/.git`, a git folder (with a copy
/// of the worktree's index) whose config runs `touch <marker>` as its fsmonitor.
pub fn plant_pointer(worktree: &Path, marker: &Path) -> anyhow::Result<()> {
    let entry = entry_of(worktree)?;
    let evil = worktree.join(".evil");
    git(worktree, &["init", "--quiet", ".evil"])?;
    git(&evil, &["config", "core.fsmonitor", &touch(marker)])?;
    std::fs::copy(entry.join("index"), evil.join(".git/index")).context("copying the index")?;
    std::fs::write(
        worktree.join(".git"),
        format!("gitdir: {}\n", evil.join(".git").display()),
    )
    .context("rewriting the .git pointer")
}

/// Rewrites the worktree entry's `commondir` to `<worktree>/.evil-common`, a bare repository
/// whose config runs `touch <marker>` as its fsmonitor.
pub fn plant_commondir(worktree: &Path, marker: &Path) -> anyhow::Result<()> {
    let entry = entry_of(worktree)?;
    let evil = worktree.join(".evil-common");
    git(worktree, &["init", "--quiet", "--bare", ".evil-common"])?;
    git(&evil, &["config", "core.fsmonitor", &touch(marker)])?;
    std::fs::write(entry.join("commondir"), format!("{}\n", evil.display()))
        .context("rewriting commondir")
}

/// Writes `<repo>/.git/commondir`, leading to a bare copy of the repository (at `evil`) whose
/// config sets `core.hooksPath` to a folder whose `reference-transaction` hook runs
/// `touch <marker>`.
pub fn plant_main_commondir(repo: &Path, evil: &Path, marker: &Path) -> anyhow::Result<()> {
    let evil_str = evil.to_str().context("a UTF-8 path")?;
    git(repo, &["clone", "--quiet", "--bare", ".", evil_str])?;
    let hooks = evil.join("evil-hooks");
    std::fs::create_dir_all(&hooks)?;
    let hook = hooks.join("reference-transaction");
    std::fs::write(&hook, format!("#!/bin/sh\n{}\n", touch(marker)))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    git(
        evil,
        &["config", "core.hooksPath", hooks.to_str().context("UTF-8")?],
    )?;
    std::fs::write(repo.join(".git/commondir"), format!("{evil_str}\n"))
        .context("writing commondir")
}

/// Makes `<worktree>/sub` a submodule the worktree's index records (with `ignore = none` in
/// `.gitmodules`), whose own config defines a clean filter running `touch <marker>` that its
/// attributes apply to its file, left modified so that looking into it runs the filter.
pub fn plant_submodule(worktree: &Path, marker: &Path) -> anyhow::Result<()> {
    let sub = worktree.join("sub");
    git(worktree, &["init", "--quiet", "sub"])?;
    crate::repo::set_identity(&sub)?;
    std::fs::write(sub.join(".gitattributes"), "s filter=evil\n")?;
    std::fs::write(sub.join("s"), "s\n")?;
    git(&sub, &["add", "."])?;
    git(&sub, &["commit", "--quiet", "-m", "s"])?;
    git(
        &sub,
        &[
            "config",
            "filter.evil.clean",
            &format!("sh -c \"{}; cat\"", touch(marker)),
        ],
    )?;
    let head = git(&sub, &["rev-parse", "HEAD"])?;
    git(
        worktree,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{},sub", head.trim()),
        ],
    )?;
    std::fs::write(
        worktree.join(".gitmodules"),
        "[submodule \"sub\"]\n\tpath = sub\n\turl = ./sub\n\tignore = none\n",
    )?;
    std::fs::write(sub.join("s"), "s, changed\n")?;
    Ok(())
}
