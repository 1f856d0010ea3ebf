//! What git needs serialized in one repository, and nothing more, so tasks of one project are
//! created in parallel (and tasks of different projects never wait for each other).
//!
//! - Git's worktree records (`.git/worktrees/<name>/`) are written by `git worktree add` one
//!   file after another, and read by every command that looks at all worktrees' branches
//!   (`worktree add` itself, `fetch`, `branch -d`…). Two `worktree add`s at once fail now and
//!   then (`fatal: failed to read .git/worktrees/<other>/commondir` — measured: 2 of 5 runs of
//!   the test below before this lock). `git worktree prune` deletes records whose folder is
//!   gone, and a record being written looks like one. So writing a record, pruning and
//!   fetching take [`RepoLock::records`], one at a time; checking out the worktree's files —
//!   the slow part, every file of the repository — runs after it, beside the others
//!   (`git::Repo::register_worktree`, then `populate_worktree`).
//! - A creation's fetch is served by another's when that one started after it asked
//!   ([`RepoLock::fetch`]): 100 creations at once fetch a few times, not 100.
//!
//! Ids and port blocks are not git's business: they are allocated in store transactions (see
//! `facade::create_task_to_the_end`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::MutexGuard;
use tokio::time::Instant;

/// The locks of every repository the engine touched, by path.
#[derive(Default)]
pub(crate) struct RepoLocks {
    repos: Mutex<HashMap<PathBuf, Arc<RepoLock>>>,
}

impl RepoLocks {
    /// The lock of the repository at `path` (one per path for the engine's lifetime: a server
    /// has a handful of projects).
    pub fn of(&self, path: &Path) -> Arc<RepoLock> {
        let mut repos = self.repos.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(repos.entry(path.to_path_buf()).or_default())
    }
}

/// One repository's coordination (see the module documentation).
#[derive(Debug, Default)]
pub struct RepoLock {
    records: tokio::sync::Mutex<()>,
    /// Per remote: when the last successful fetch *started*.
    fetched: tokio::sync::Mutex<HashMap<String, Instant>>,
}

impl RepoLock {
    /// Held around whatever writes or prunes git's worktree records, and around fetches.
    pub async fn records(&self) -> MutexGuard<'_, ()> {
        self.records.lock().await
    }

    /// Fetches `remote` into `repo`, unless a fetch of it that started after this call was
    /// made has already succeeded (what it fetched is at least as new as what this one would).
    pub async fn fetch(&self, repo: &git::Repo, remote: &str) -> Result<(), git::GitError> {
        let asked = Instant::now();
        let mut fetched = self.fetched.lock().await;
        if fetched.get(remote).is_some_and(|started| *started >= asked) {
            return Ok(());
        }
        let records = self.records().await;
        let started = Instant::now();
        repo.fetch(remote).await?;
        drop(records);
        fetched.insert(remote.to_string(), started);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::api::{NewProject, NewTask, TaskView};
    use std::collections::BTreeSet;

    fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Many creations at once, on one repository and on two: every one succeeds, with its own
    /// id, port block, branch and worktree, each worktree on record in its repository and
    /// checked out on its branch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_creations_on_one_and_two_repositories_all_succeed_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = crate::insight::testing::engine(dir.path()).await;
        // Scripted agents whose program does not exist: runs fail to start, which is not what
        // this test looks at (creation is).
        let scenario = dir.path().join("plan.json");
        std::fs::write(
            &scenario,
            r#"{"runs": [[{"do": "message", "text": "hi"}]]}"#,
        )
        .expect("scenario");
        let role = serde_json::json!({"harness": "scripted", "scenario": scenario});
        let settings: crate::api::ProjectSettings = serde_json::from_value(serde_json::json!({
            "roles": {"plan": role, "implement": role, "review": role, "pr": role}
        }))
        .expect("settings");
        let mut repos = Vec::new();
        for name in ["one", "two"] {
            let parent = dir.path().join(name);
            std::fs::create_dir_all(&parent).expect("mkdir");
            let repo = testkit::sample_repo(&parent).expect("sample repo");
            engine
                .add_project(NewProject {
                    path: repo.path.display().to_string(),
                    name: Some(name.into()),
                    settings: Some(settings.clone()),
                    github: None,
                })
                .await
                .expect("project added");
            repos.push((name, repo.path));
        }
        const N: usize = 24;
        let creations: Vec<_> = (0..N)
            .map(|n| {
                let engine = engine.clone();
                let project = if n % 3 == 0 { "two" } else { "one" };
                tokio::spawn(async move {
                    engine
                        .create_task(NewTask {
                            project: project.into(),
                            title: format!("parallel {n}"),
                            body: "made beside the others".into(),
                            priority: 0,
                            technical: true,
                            pipeline: None,
                        })
                        .await
                })
            })
            .collect();
        let mut made: Vec<TaskView> = Vec::new();
        for creation in creations {
            made.push(creation.await.expect("no panic").expect("created"));
        }
        let distinct = |f: fn(&TaskView) -> String| made.iter().map(f).collect::<BTreeSet<_>>();
        assert_eq!(distinct(|t| t.id.to_string()).len(), N, "ids");
        assert_eq!(distinct(|t| t.port.to_string()).len(), N, "ports");
        assert_eq!(distinct(|t| t.branch.clone()).len(), N, "branches");
        assert_eq!(
            distinct(|t| t.worktree.clone().unwrap_or_default()).len(),
            N,
            "worktrees"
        );
        for (name, path) in &repos {
            let listed = git(path, &["worktree", "list", "--porcelain"]);
            let mine: Vec<&TaskView> = made.iter().filter(|t| t.project == *name).collect();
            assert_eq!(
                listed.matches("worktree ").count(),
                mine.len() + 1,
                "{name}: every task's worktree on record, no other: {listed}"
            );
            for task in mine {
                let worktree = std::path::Path::new(task.worktree.as_deref().expect("worktree"));
                assert_eq!(
                    git(worktree, &["symbolic-ref", "HEAD"]).trim(),
                    format!("refs/heads/{}", task.branch),
                    "{name}: {} on its branch",
                    task.id
                );
                assert_eq!(
                    git(worktree, &["status", "--porcelain"]),
                    "",
                    "{name}: {} checked out whole",
                    task.id
                );
                assert!(worktree.join("README.md").is_file(), "{name}: files there");
            }
        }
    }
}
