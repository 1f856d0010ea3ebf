//! Reads for user interfaces: the caller's dashboard (agents at work, today's usage, recent
//! changes), the head of the live stream and a task's diff. Membership-filtered like the lists.

use crate::api::*;
use crate::error::{EngineError, Result};
use crate::facade::Engine;
use domain::{TaskId, TaskState};
use std::path::Path;
use store::ActivityKind;

/// Rows of recent activity the dashboard shows.
pub const DASHBOARD_RECENT: u32 = 20;

const DAY_MS: i64 = 86_400_000;

impl Engine {
    /// The SSE id (see [`StreamCursor`]) of the newest activity now: a page rendered now opens
    /// `GET /api/tasks/{id}/stream?after=<head>` (or `/api/stream`) and misses nothing that
    /// happens after its render, and gets nothing twice.
    pub fn stream_head(&self) -> Result<String> {
        let id = self.inner.store.read(|tx| tx.last_activity_id())?;
        Ok(StreamCursor {
            activity: id,
            seq: store::WHOLE,
        }
        .to_string())
    }

    /// The caller's dashboard: agents queued or running, the usage of runs started since
    /// midnight UTC today, and the newest [`DASHBOARD_RECENT`] changes — of the tasks of the
    /// projects the caller belongs to (everything for an administrator).
    pub fn dashboard(&self) -> Result<Dashboard> {
        let member = self.member_filter();
        let now = store::now_ms();
        let midnight = now - now.rem_euclid(DAY_MS);
        let (live, usage, recent) = self.inner.store.read(|tx| {
            Ok::<_, EngineError>((
                tx.live_runs_overview(member)?,
                tx.usage_since(midnight, member)?,
                tx.recent_activity(DASHBOARD_RECENT, member)?,
            ))
        })?;
        Ok(self.shown(Dashboard {
            running: live
                .into_iter()
                .map(|row| RunningAgent {
                    task: row.run.task_id,
                    title: row.title,
                    project: row.project,
                    run: row.run.id,
                    stage: row.run.stage,
                    status: row.run.status,
                    harness: row.run.harness,
                    model: row.run.model,
                    started_at: row.run.started_at,
                    last_event_at: row.last_event_at,
                })
                .collect(),
            usage_today: Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cost_usd: usage.cost_usd,
                runs: usage.runs,
            },
            recent: recent
                .into_iter()
                .map(|row| RecentActivity {
                    summary: summary(row.kind, &row.payload),
                    task: row.task,
                    title: row.title,
                    project: row.project,
                    kind: row.kind.as_str().to_string(),
                    at_ms: row.at_us / 1000,
                })
                .collect(),
        }))
    }
}

impl Engine {
    /// The task's changes (see [`TaskDiff`]) against the merge base of its worktree's `HEAD` and
    /// the project's default branch (on the project's remote when it has it, else the local
    /// branch). A task without a worktree — not created yet, or removed when the task ended —
    /// answers an empty diff with a `note` saying so, not an error.
    pub async fn task_diff(&self, id: TaskId) -> Result<TaskDiff> {
        let (task, project) = self.inner.store.read(|tx| {
            self.check_task(tx, id)?;
            let task = tx
                .task(id)?
                .ok_or_else(|| crate::transition::not_found(id))?;
            let project = tx
                .project(task.project_id)?
                .ok_or_else(|| crate::transition::not_found(id))?;
            Ok::<_, EngineError>((task, project))
        })?;
        let no_worktree = || TaskDiff {
            note: Some(format!(
                "task {id} has no worktree (it was removed when the task ended): its changes are                  on its branch `{}` and in its pull request",
                task.branch
            )),
            ..TaskDiff::default()
        };
        let Some(worktree) = task.worktree.as_deref().map(Path::new) else {
            return Ok(no_worktree());
        };
        if !worktree.is_dir() {
            return Ok(no_worktree());
        }
        let remote = crate::settings::parse(&project.settings_json)?.remote;
        let on_remote = format!("{remote}/{}", project.default_branch);
        let repo = git::Repo::open(Path::new(&project.path))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let base_rev = match repo.rev_parse(&on_remote).await {
            Ok(Some(_)) => on_remote,
            _ => project.default_branch.clone(),
        };
        let cannot = |e: git::GitError| {
            EngineError::Internal(format!("cannot read the changes of task {id}: {e}"))
        };
        let worktree = repo.task_worktree(worktree).map_err(cannot)?;
        let diff = git::work_tree_diff(&worktree, &base_rev, MAX_DIFF_PATCH_BYTES)
            .await
            .map_err(cannot)?;
        Ok(TaskDiff {
            base: diff.base,
            files: diff
                .files
                .into_iter()
                .map(|f| DiffFile {
                    path: f.path,
                    old_path: f.old_path,
                    status: match f.status {
                        git::DiffStatus::Added => DiffStatus::Added,
                        git::DiffStatus::Modified => DiffStatus::Modified,
                        git::DiffStatus::Deleted => DiffStatus::Deleted,
                        git::DiffStatus::Renamed => DiffStatus::Renamed,
                    },
                    additions: f.additions,
                    deletions: f.deletions,
                    binary: f.binary,
                })
                .collect(),
            patch: diff.patch,
            truncated: diff.truncated,
            note: None,
        })
    }
}

/// One line saying what an activity row records (its payload as the store writes it).
fn summary(kind: ActivityKind, payload: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
    let state = || {
        serde_json::from_value::<TaskState>(value["state"].clone())
            .map_or_else(|_| "changed".to_string(), |state| format!("now {state}"))
    };
    match (kind, text("change").as_str()) {
        (ActivityKind::Task, "created") => "created".into(),
        (ActivityKind::Task, "deleted") => "deleted".into(),
        (ActivityKind::Task, _) => state(),
        (ActivityKind::Run, change) => {
            let run = format!("{} run {}", text("stage"), value["run"]);
            match change {
                "started" => format!("{run} started (turn {})", value["turn"]),
                _ => match value["reason"].as_str() {
                    Some(reason) => format!("{run} {}: {reason}", text("status")),
                    None => format!("{run} {}", text("status")),
                },
            }
        }
        (ActivityKind::PullRequest, "checks") => format!(
            "checks {} on {}",
            text("checks"),
            text("head_sha").chars().take(7).collect::<String>()
        ),
        (ActivityKind::PullRequest, _) if value["merged"].as_bool() == Some(true) => {
            format!("pull request {} merged", text("url"))
        }
        (ActivityKind::PullRequest, _) => format!("pull request {}", text("url")),
        (ActivityKind::Transcript, _) => "transcript".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::summary;
    use store::ActivityKind;

    #[test]
    fn activity_summaries_say_what_happened() {
        let cases = [
            (
                ActivityKind::Task,
                r#"{"change":"created","title":"t","state":{"state":"running","stage":"plan"}}"#,
                "created",
            ),
            (
                ActivityKind::Task,
                r#"{"change":"state","state":{"state":"plan_gate"}}"#,
                "now plan ready: waiting for approval",
            ),
            (ActivityKind::Task, r#"{"change":"deleted"}"#, "deleted"),
            (
                ActivityKind::Run,
                r#"{"change":"started","run":3,"stage":"plan","status":"running","turn":1}"#,
                "plan run 3 started (turn 1)",
            ),
            (
                ActivityKind::Run,
                r#"{"change":"finished","run":3,"stage":"review","status":"completed","reason":null}"#,
                "review run 3 completed",
            ),
            (
                ActivityKind::Run,
                r#"{"change":"finished","run":4,"stage":"pr","status":"failed","reason":"boom"}"#,
                "pr run 4 failed: boom",
            ),
            (
                ActivityKind::PullRequest,
                r#"{"url":"https://x/pr/1","merged":false}"#,
                "pull request https://x/pr/1",
            ),
            (
                ActivityKind::PullRequest,
                r#"{"change":"checks","head_sha":"0123456789abcdef","checks":"failed"}"#,
                "checks failed on 0123456",
            ),
        ];
        for (kind, payload, want) in cases {
            assert_eq!(summary(kind, payload), want, "{payload}");
        }
    }
}

/// An engine over a fresh data directory, with rows written straight into its store (no agent
/// ever starts: the runs are recorded, not dispatched).
#[cfg(test)]
pub(crate) mod testing {
    use crate::facade::{Engine, EngineConfig, SandboxMode};
    use domain::{RunId, Stage, TaskId, TaskState};
    use store::{NewProjectRow, NewRunRow, NewTaskRow, StoreError};

    pub const API_TOKEN: &str = "atelier-test-api-token-0123456789";

    pub async fn engine(dir: &std::path::Path) -> Engine {
        let mut config = EngineConfig::new(
            dir.join("data"),
            dir.join("atelier"),
            "http://127.0.0.1:1".into(),
        );
        config.sandbox = SandboxMode::None;
        config.homes_dir = dir.join("homes");
        config.legacy_api_token = Some(API_TOKEN.into());
        Engine::start(config).await.unwrap()
    }

    /// A project `name` (at `path`) with one task in `state` and one run of it per stage given.
    pub fn task_with_runs(
        engine: &Engine,
        name: &str,
        path: &str,
        state: &TaskState,
        stages: &[Stage],
    ) -> (TaskId, Vec<RunId>) {
        task_in(engine, name, path, "/nowhere", state, stages)
    }

    /// [`task_with_runs`] with the task's worktree at `worktree`.
    pub fn task_in(
        engine: &Engine,
        name: &str,
        path: &str,
        worktree: &str,
        state: &TaskState,
        stages: &[Stage],
    ) -> (TaskId, Vec<RunId>) {
        rows_in(&engine.inner.store, name, path, worktree, state, stages)
    }

    /// [`task_in`] written straight into `store` (for tests of a part without an engine).
    pub fn rows_in(
        store: &store::Store,
        name: &str,
        path: &str,
        worktree: &str,
        state: &TaskState,
        stages: &[Stage],
    ) -> (TaskId, Vec<RunId>) {
        store
            .write(|tx| {
                let project = match tx.project_by_name(name)? {
                    Some(project) => project,
                    None => tx.insert_project(&NewProjectRow {
                        name,
                        path,
                        default_branch: "main",
                        settings_json: "{}",
                    })?,
                };
                let task = tx.allocate_task_id()?;
                tx.insert_task(&NewTaskRow {
                    pipeline_prompts: None,
                    project_prompts: None,
                    pipeline_def: None,
                    id: task,
                    project_id: project.id,
                    title: &format!("task of {name}"),
                    body: "b",
                    key: &format!("{task}-t"),
                    branch: &format!("atelier/{task}-t"),
                    base: "main",
                    state,
                    priority: 0,
                    technical: true,
                    worktree,
                    doc_path: "/nowhere/task.md",
                    port: 20000 + task.0 as u16,
                    pipeline: "standard",
                })?;
                let mut runs = vec![];
                for stage in stages {
                    runs.push(tx.insert_run(&NewRunRow {
                        task_id: task,
                        stage: *stage,
                        iteration: 0,
                        mark: "m",
                    })?);
                }
                Ok::<_, StoreError>((task, runs))
            })
            .unwrap()
    }
}

#[cfg(test)]
mod engine_tests {
    use super::testing::*;
    use crate::api::*;
    use crate::error::EngineError;
    use domain::{RunStatus, Stage, TaskState};

    fn message(n: i64) -> String {
        format!(r#"{{"type":"message","text":"{n}"}}"#)
    }

    #[tokio::test]
    async fn transcript_pages_cover_a_long_transcript_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        let running = TaskState::Running {
            stage: Stage::Implement,
        };
        let (task, runs) = task_with_runs(
            &engine,
            "p",
            "/p",
            &running,
            &[Stage::Plan, Stage::Implement],
        );
        // 20,000 events: 10,000 per run, in batches as the supervisor stores them.
        engine
            .inner
            .store
            .write(|tx| {
                for run in &runs {
                    for batch in 0..5 {
                        let events: Vec<(i64, String)> = (1..=2000)
                            .map(|i| (batch * 2000 + i, message(batch * 2000 + i)))
                            .collect();
                        tx.append_events(task, *run, &events)?;
                    }
                }
                Ok::<_, store::StoreError>(())
            })
            .unwrap();

        let last = engine
            .transcript(task, TranscriptQuery::default())
            .await
            .unwrap();
        assert_eq!(last.entries.len(), 300);
        assert!(last.earlier);
        assert_eq!(last.live_runs, vec![], "no run is at work yet");
        let tail = last.entries.last().unwrap();
        assert_eq!(
            (tail.run, tail.stage, tail.seq),
            (runs[1], Stage::Implement, 10_000)
        );
        assert_eq!(
            tail.event,
            domain::TranscriptEvent::Message {
                text: "10000".into()
            }
        );
        assert!(tail.at_ms > 0);

        // Walking back page by page from the end reads every event once, in order.
        let mut seen = last.entries.len();
        let mut first = last.entries[0].clone();
        let mut earlier = last.earlier;
        while earlier {
            let page = engine
                .transcript(
                    task,
                    TranscriptQuery::Before {
                        cursor: TranscriptCursor {
                            run: first.run,
                            seq: first.seq,
                        },
                        limit: MAX_TRANSCRIPT_LIMIT,
                    },
                )
                .await
                .unwrap();
            let end = page.entries.last().unwrap();
            assert!((end.run, end.seq) < (first.run, first.seq));
            seen += page.entries.len();
            first = page.entries[0].clone();
            earlier = page.earlier;
        }
        assert_eq!(seen, 20_000);
        assert_eq!((first.run, first.seq), (runs[0], 1));

        // After a cursor: what follows it, and the page says earlier events exist.
        let after = engine
            .transcript(
                task,
                TranscriptQuery::After {
                    cursor: TranscriptCursor {
                        run: runs[0],
                        seq: 9_999,
                    },
                    limit: 2,
                },
            )
            .await
            .unwrap();
        let keys: Vec<_> = after.entries.iter().map(|e| (e.run, e.seq)).collect();
        assert_eq!(keys, [(runs[0], 10_000), (runs[1], 1)]);
        assert!(after.earlier);
        let caught_up = engine
            .transcript(
                task,
                TranscriptQuery::After {
                    cursor: TranscriptCursor {
                        run: runs[1],
                        seq: 10_000,
                    },
                    limit: 300,
                },
            )
            .await
            .unwrap();
        assert!(caught_up.entries.is_empty() && caught_up.earlier);

        // Limits are checked; an unknown task is not found.
        for limit in [0, MAX_TRANSCRIPT_LIMIT + 1] {
            let err = engine
                .transcript(task, TranscriptQuery::Last { limit })
                .await
                .unwrap_err();
            assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
        }
        let err = engine
            .transcript(domain::TaskId(999), TranscriptQuery::default())
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::NotFound(_)), "{err}");
        engine.shutdown().await;
        // A run whose agent is at work is named, so its open tool calls show as running.
        engine
            .inner
            .store
            .write(|tx| tx.mark_run_started(runs[1], "token-hash"))
            .unwrap();
        let page = engine
            .transcript(task, TranscriptQuery::default())
            .await
            .unwrap();
        assert_eq!(page.live_runs, vec![runs[1]]);
    }

    #[tokio::test]
    async fn the_dashboard_shows_live_agents_usage_and_recent_changes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        let head_before = engine.stream_head().unwrap();
        let running = TaskState::Running {
            stage: Stage::Review,
        };
        let (task, runs) = task_with_runs(
            &engine,
            "web",
            "/web",
            &running,
            &[Stage::Plan, Stage::Review],
        );
        let (other, _) = task_with_runs(&engine, "api", "/api", &TaskState::PlanGate, &[]);
        engine
            .inner
            .store
            .write(|tx| {
                tx.mark_run_started(runs[0], "h0")?;
                tx.add_run_usage(runs[0], 100, 20, 0.5)?;
                tx.finish_run(runs[0], RunStatus::Completed, None, None)?;
                tx.mark_run_started(runs[1], "h1")?;
                tx.set_run_agent(runs[1], "codex", Some("gpt-5"))?;
                tx.add_run_usage(runs[1], 10, 2, 0.25)?;
                tx.append_events(task, runs[1], &[(1, message(1))])?;
                Ok::<_, store::StoreError>(())
            })
            .unwrap();
        let head = engine.stream_head().unwrap();
        assert_ne!(head, head_before);
        assert_eq!(
            StreamCursor::parse(&head).unwrap().activity,
            engine.inner.store.read(|tx| tx.last_activity_id()).unwrap()
        );

        let dashboard = engine.dashboard().unwrap();
        assert_eq!(dashboard.running.len(), 1, "{dashboard:#?}");
        let agent = &dashboard.running[0];
        assert_eq!(
            (
                agent.task,
                agent.run,
                agent.stage,
                agent.status,
                agent.harness.as_deref(),
                agent.model.as_deref(),
                agent.project.as_str()
            ),
            (
                task,
                runs[1],
                Stage::Review,
                RunStatus::Running,
                Some("codex"),
                Some("gpt-5"),
                "web"
            )
        );
        assert!(agent.started_at.is_some() && agent.last_event_at.is_some());
        assert_eq!(
            dashboard.usage_today,
            Usage {
                input_tokens: 110,
                output_tokens: 22,
                cost_usd: 0.75,
                runs: 2
            }
        );
        let summaries: Vec<(domain::TaskId, &str)> = dashboard
            .recent
            .iter()
            .map(|r| (r.task, r.summary.as_str()))
            .collect();
        assert_eq!(
            summaries,
            [
                (task, "review run 2 started (turn 1)"),
                (task, "plan run 1 completed"),
                (task, "plan run 1 started (turn 1)"),
                (other, "created"),
                (task, "created"),
            ]
        );

        // A member sees only their projects' tasks.
        let bob = engine
            .create_user(NewUser {
                login: "bob".into(),
                password: Some("a-long-password".into()),
                admin: false,
                technical: true,
            })
            .await
            .unwrap();
        engine.set_member("api", "bob", "member").unwrap();
        let bob_engine = engine.acting_as(crate::Identity {
            user: store::UserId(bob.id),
            login: "bob".into(),
            admin: false,
            technical: true,
            via: crate::Via::Token {
                id: 0,
                name: "test".into(),
            },
        });
        let seen = bob_engine.dashboard().unwrap();
        assert!(seen.running.is_empty());
        assert_eq!(seen.usage_today, Usage::default());
        assert_eq!(
            seen.recent.iter().map(|r| r.task).collect::<Vec<_>>(),
            [other]
        );
        engine.shutdown().await;
    }

    #[tokio::test]
    async fn first_run_setup_makes_one_administrator_with_the_api_token() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        assert!(engine.setup_needed());
        let err = engine
            .setup_first_admin("not-the-token", "ann", "a-long-password")
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Unauthorized(_)), "{err}");
        let err = engine
            .setup_first_admin(API_TOKEN, "ann", "short")
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
        assert!(engine.setup_needed(), "a refused setup changes nothing");

        let ann = engine
            .setup_first_admin(API_TOKEN, "ann", "a-long-password")
            .await
            .unwrap();
        assert_eq!(
            (
                ann.login.as_str(),
                ann.admin,
                ann.technical,
                ann.has_password
            ),
            ("ann", true, true, true)
        );
        assert!(!engine.setup_needed());
        let audit = engine.audit_log(None, 10).unwrap();
        let last = &audit[0];
        assert_eq!(
            (
                last.actor.as_str(),
                last.action.as_str(),
                last.target.as_str()
            ),
            ("setup", "user.create", "ann")
        );
        engine
            .login("ann", "a-long-password", "127.0.0.1".parse().unwrap())
            .await
            .unwrap();

        let err = engine
            .setup_first_admin(API_TOKEN, "eve", "a-long-password")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::Conflict(m) if m.contains("sign in instead")),
            "{err}"
        );
        engine.shutdown().await;
    }

    #[tokio::test]
    async fn a_task_diff_shows_committed_uncommitted_and_untracked_changes() {
        let dir = tempfile::tempdir().unwrap();
        let sample = testkit::sample_repo(dir.path()).unwrap();
        let engine = engine(dir.path()).await;
        let app = sample.path.to_str().unwrap();
        // No worktree: an empty diff that says why.
        let (gone, _) = task_with_runs(&engine, "app", app, &TaskState::PlanGate, &[]);
        engine
            .inner
            .store
            .write(|tx| tx.clear_worktree(gone))
            .unwrap();
        let diff = engine.task_diff(gone).await.unwrap();
        assert_eq!((diff.files.len(), diff.patch.as_str()), (0, ""));
        assert!(diff.note.unwrap().contains("no worktree"));

        let worktree = dir.path().join("wt");
        let wt = worktree.to_str().unwrap();
        testkit::git(
            &sample.path,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "atelier/2-t",
                wt,
                "origin/main",
            ],
        )
        .unwrap();
        testkit::set_identity(&worktree).unwrap();
        let (task, _) = task_in(&engine, "app", app, wt, &TaskState::PlanGate, &[]);
        let base = testkit::git(&worktree, &["rev-parse", "HEAD"]).unwrap();
        testkit::commit_file(&worktree, "src/new.txt", "a\nb\n", "Add new").unwrap();
        testkit::git(&worktree, &["mv", "README.md", "READ.md"]).unwrap();
        testkit::git(&worktree, &["commit", "-qm", "Rename"]).unwrap();
        std::fs::write(worktree.join("src/lib.txt"), "one\n2\nthree\nfour\n").unwrap();
        std::fs::write(worktree.join("notes.txt"), "untracked\n").unwrap();
        std::fs::write(worktree.join("blob.bin"), [0u8, 1, 2, 0, 255]).unwrap();
        // The default branch moves on: the diff is still against the merge base.
        testkit::commit_file(&sample.path, "other.txt", "x\n", "Elsewhere").unwrap();

        let diff = engine.task_diff(task).await.unwrap();
        assert_eq!(diff.base, base.trim());
        assert_eq!(diff.note, None);
        assert!(!diff.truncated);
        let files: Vec<_> = diff
            .files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.old_path.as_deref(),
                    f.status,
                    f.additions,
                    f.deletions,
                    f.binary,
                )
            })
            .collect();
        assert_eq!(
            files,
            [
                (
                    "READ.md",
                    Some("README.md"),
                    DiffStatus::Renamed,
                    0,
                    0,
                    false
                ),
                ("blob.bin", None, DiffStatus::Added, 0, 0, true),
                ("notes.txt", None, DiffStatus::Added, 1, 0, false),
                ("src/lib.txt", None, DiffStatus::Modified, 2, 1, false),
                ("src/new.txt", None, DiffStatus::Added, 2, 0, false),
            ]
        );
        for part in ["+four", "-two", "+untracked", "rename to READ.md", "+b"] {
            assert!(diff.patch.contains(part), "{part} in {}", diff.patch);
        }
        engine.shutdown().await;
    }
}
