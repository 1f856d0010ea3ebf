//! The git commands the hub runs on its bare repositories: create and seed one, read its
//! branches, judge mergeability (`git merge-tree --write-tree`), commit a file to a branch and
//! merge a head into a base without a work tree. Every command runs with the hub's scrubbed
//! environment, never the test's.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

pub(crate) type Env = [(String, String)];

/// A finished git command: exit code and output.
pub(crate) struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `git args` in `dir`; `extra` adds variables; `stdin` is written to its input.
pub(crate) async fn run(
    env: &Env,
    dir: &Path,
    args: &[&str],
    extra: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Result<Out, String> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting git {args:?}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .await
            .map_err(|e| format!("writing to git {args:?}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("running git {args:?}: {e}"))?;
    Ok(Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Like [`run`], failing unless git exits 0; returns trimmed stdout.
pub(crate) async fn ok(
    env: &Env,
    dir: &Path,
    args: &[&str],
    extra: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Result<String, String> {
    let out = run(env, dir, args, extra, stdin).await?;
    if out.code != Some(0) {
        return Err(format!("git {args:?} failed: {}", out.stderr.trim()));
    }
    Ok(out.stdout.trim().to_string())
}

/// `git init --bare` at `bare`, receive-pack enabled, seeded with every branch of `from`.
pub(crate) async fn create_bare(
    env: &Env,
    bare: &Path,
    from: &Path,
    default_branch: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(bare).map_err(|e| format!("creating {}: {e}", bare.display()))?;
    ok(
        env,
        bare,
        &["init", "--quiet", "--bare", "-b", default_branch],
        &[],
        None,
    )
    .await?;
    ok(
        env,
        bare,
        &["config", "http.receivepack", "true"],
        &[],
        None,
    )
    .await?;
    let target = bare.display().to_string();
    ok(
        env,
        from,
        &["push", "--quiet", &target, "refs/heads/*:refs/heads/*"],
        &[],
        None,
    )
    .await?;
    Ok(())
}

/// Every branch of the bare repository: name → sha.
pub(crate) async fn branches(env: &Env, bare: &Path) -> BTreeMap<String, String> {
    let out = ok(
        env,
        bare,
        &[
            "for-each-ref",
            "--format=%(refname:short) %(objectname)",
            "refs/heads",
        ],
        &[],
        None,
    )
    .await
    .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, sha)| (name.to_string(), sha.to_string()))
        .collect()
}

/// The commit `rev` names, if any.
pub(crate) async fn resolve(env: &Env, bare: &Path, rev: &str) -> Option<String> {
    let spec = format!("{rev}^{{commit}}");
    ok(
        env,
        bare,
        &["rev-parse", "--verify", "--quiet", &spec],
        &[],
        None,
    )
    .await
    .ok()
    .filter(|s| !s.is_empty())
}

/// How many commits `head` has that `base` has not.
pub(crate) async fn ahead(env: &Env, bare: &Path, base: &str, head: &str) -> u64 {
    let range = format!("{base}..{head}");
    ok(env, bare, &["rev-list", "--count", &range], &[], None)
        .await
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Whether `head` merges into `base` without conflicts; `None` when git cannot tell.
pub(crate) async fn mergeable(env: &Env, bare: &Path, base: &str, head: &str) -> Option<bool> {
    let out = run(
        env,
        bare,
        &["merge-tree", "--write-tree", base, head],
        &[],
        None,
    )
    .await
    .ok()?;
    match out.code {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => None,
    }
}

/// Commits `path` = `content` on top of `branch`; returns the new sha.
pub(crate) async fn commit_file(
    env: &Env,
    bare: &Path,
    branch: &str,
    path: &str,
    content: &str,
    message: &str,
) -> Result<String, String> {
    let parent = resolve(env, bare, branch)
        .await
        .ok_or(format!("no branch {branch}"))?;
    let blob = ok(
        env,
        bare,
        &["hash-object", "-w", "--stdin"],
        &[],
        Some(content.as_bytes()),
    )
    .await?;
    let scratch = tempfile::tempdir().map_err(|e| format!("temp index: {e}"))?;
    let index_path = scratch.path().join("index").display().to_string();
    let with_index = [("GIT_INDEX_FILE", index_path.as_str())];
    ok(env, bare, &["read-tree", &parent], &with_index, None).await?;
    let cacheinfo = format!("100644,{blob},{path}");
    ok(
        env,
        bare,
        &["update-index", "--add", "--cacheinfo", &cacheinfo],
        &with_index,
        None,
    )
    .await?;
    let tree = ok(env, bare, &["write-tree"], &with_index, None).await?;
    let commit = ok(
        env,
        bare,
        &["commit-tree", &tree, "-p", &parent, "-m", message],
        &[],
        None,
    )
    .await?;
    update_branch(env, bare, branch, &commit, &parent).await?;
    Ok(commit)
}

/// Merges `head` into `branch` with a merge commit; returns its sha.
pub(crate) async fn merge(
    env: &Env,
    bare: &Path,
    branch: &str,
    head: &str,
    message: &str,
) -> Result<String, String> {
    let base = resolve(env, bare, branch)
        .await
        .ok_or(format!("no branch {branch}"))?;
    let out = run(
        env,
        bare,
        &["merge-tree", "--write-tree", &base, head],
        &[],
        None,
    )
    .await?;
    if out.code != Some(0) {
        return Err(format!("{head} does not merge cleanly into {branch}"));
    }
    let tree = out.stdout.lines().next().unwrap_or_default().to_string();
    let commit = ok(
        env,
        bare,
        &["commit-tree", &tree, "-p", &base, "-p", head, "-m", message],
        &[],
        None,
    )
    .await?;
    update_branch(env, bare, branch, &commit, &base).await?;
    Ok(commit)
}

async fn update_branch(
    env: &Env,
    bare: &Path,
    branch: &str,
    new: &str,
    old: &str,
) -> Result<(), String> {
    let refname = format!("refs/heads/{branch}");
    ok(env, bare, &["update-ref", &refname, new, old], &[], None).await?;
    Ok(())
}
