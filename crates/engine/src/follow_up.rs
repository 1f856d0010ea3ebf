//! Following a pull request after it opens. One function, [`sync_task`], reads the pull
//! request's truth from its forge and turns it into pipeline events: merged → done, closed →
//! parked, reopened → checks again; a conflict with the moved base → a rebase run; failing
//! checks → a fixing run told the failing checks' annotations and log; all green → awaiting
//! merge; trusted comments that mention the trigger → acknowledged, batched for a window, then one
//! run carrying them, answered once when it has pushed.
//!
//! Webhook deliveries, the poller and the engine itself (after a publish, when a batching window
//! ends) only *ask* for a sync; the sync reads the forge (ETag-conditional on GitHub), so a
//! delivery and a poll that saw the same change lead to one event, and a missed delivery is
//! caught by the next poll. Syncs of one task never overlap: a request while one runs makes it
//! go round once more.

use crate::api::{ForgeSettings, GitHubSettings};
use crate::background::FORGE_CALL_LIMIT;
use crate::error::{EngineError, Result};
use crate::inner::Inner;
use crate::transition::{after_commit, apply_in, not_found};
use domain::{Event, TaskId, TaskState};
use forge::{CheckFailure, CheckState, Comment, CommentKind, Forge, Mergeable, PullRequest};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{CommentRow, CommentStatus, NewComment};

/// Which tasks are being synced, and whether another round was asked for meanwhile; when each
/// was last synced (the poller skips a task synced recently).
#[derive(Default)]
pub(crate) struct Syncs {
    running: Mutex<HashMap<TaskId, bool>>,
    last: Mutex<HashMap<TaskId, Instant>>,
    /// The syncs in flight and the outbox, so a shutdown can wait for them (they run git in the
    /// repositories).
    pub tracker: tokio_util::task::TaskTracker,
}

impl Syncs {
    /// Waits (up to `limit`) for the syncs in flight; no new one starts after the shutdown.
    pub async fn drain(&self, limit: Duration) {
        self.tracker.close();
        let _ = tokio::time::timeout(limit, self.tracker.wait()).await;
    }

    /// Marks `task` as syncing; false (and a round more asked for) when it already is.
    fn enter(&self, task: TaskId) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get_mut(&task) {
            Some(again) => {
                *again = true;
                false
            }
            None => {
                running.insert(task, false);
                true
            }
        }
    }

    /// Ends a round: true when another was asked for (the caller goes round again).
    fn leave(&self, task: TaskId) -> bool {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task, Instant::now());
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get_mut(&task) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                running.remove(&task);
                false
            }
        }
    }

    fn synced_within(&self, task: TaskId, period: Duration) -> bool {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&task)
            .is_some_and(|at| at.elapsed() < period)
    }
}

/// Asks for a sync of `task` in the background.
pub(crate) fn request_sync(inner: &Arc<Inner>, task: TaskId) {
    if inner.shutdown.is_cancelled() {
        return;
    }
    let inner = Arc::clone(inner);
    let tracker = inner.syncs.tracker.clone();
    tracker.spawn(async move {
        if let Err(err) = sync_task(&inner, task).await {
            tracing::warn!(%task, error = %err, "following the pull request failed");
        }
    });
}

/// Asks for a sync of `task` at `at` (the end of a comment batching window).
fn request_sync_at(inner: &Arc<Inner>, task: TaskId, at: Instant) {
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        tokio::select! {
            () = inner.shutdown.cancelled() => {}
            () = tokio::time::sleep_until(at.into()) => request_sync(&inner, task),
        }
    });
}

/// Syncs `task` with its forge; rounds asked for while it runs are run after it.
pub(crate) async fn sync_task(inner: &Arc<Inner>, task: TaskId) -> Result<()> {
    if !inner.syncs.enter(task) {
        return Ok(());
    }
    loop {
        let result = sync_once(inner, task).await;
        // When another round was asked for, `leave` keeps the task marked as syncing: this loop
        // still owns it and runs that round (entering again would find the mark, record one
        // more round, return — and leave the task marked for good, never synced again).
        if !inner.syncs.leave(task) {
            return result;
        }
        if let Err(err) = result {
            tracing::warn!(%task, error = %err, "following the pull request failed");
        }
    }
}

/// Runs one forge call under the deadline every forge call has.
async fn call<T>(what: &str, fut: impl Future<Output = Result<T, forge::ForgeError>>) -> Result<T> {
    match tokio::time::timeout(FORGE_CALL_LIMIT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(EngineError::Internal(format!("{what}: {err}"))),
        Err(_) => Err(EngineError::Internal(format!(
            "{what}: the forge did not answer within {} s",
            FORGE_CALL_LIMIT.as_secs()
        ))),
    }
}

/// What one sync works with.
struct Followed {
    forge: Arc<dyn Forge>,
    repo: std::path::PathBuf,
    pr: PullRequest,
    github: Option<GitHubSettings>,
}

async fn sync_once(inner: &Arc<Inner>, id: TaskId) -> Result<()> {
    let loaded = inner.store.read(|tx| {
        let Some(task) = tx.task(id)? else {
            return Ok(None);
        };
        let Some(pr) = tx.pull_request(id)? else {
            return Ok(None);
        };
        let project = tx.project(task.project_id)?.ok_or_else(|| not_found(id))?;
        Ok::<_, EngineError>(Some((task, project, pr)))
    })?;
    let Some((task, project, pr_row)) = loaded else {
        return Ok(());
    };
    if task.state.is_done() {
        return Ok(());
    }
    let settings = crate::settings::parse(&project.settings_json)?;
    let followed = Followed {
        forge: inner.forge_for(&project)?,
        repo: project.path.clone().into(),
        pr: crate::forge_pr(&pr_row),
        github: match settings.forge {
            ForgeSettings::Github(github) => Some(*github),
            ForgeSettings::Local => None,
        },
    };
    let state = call(
        "reading the pull request",
        followed.forge.pr_state(&followed.repo, &followed.pr),
    )
    .await?;
    if state.merged {
        crate::background::mark_merged(inner, id)?;
        if followed
            .github
            .as_ref()
            .is_some_and(|g| g.delete_branch_on_merge)
        {
            let deleting = followed.forge.delete_branch(
                &followed.repo,
                &followed.pr.remote,
                &followed.pr.branch,
            );
            if let Err(err) = call("deleting the merged branch", deleting).await {
                tracing::warn!(task = %id, error = %err, "cannot delete the merged branch");
            }
        }
        return Ok(());
    }
    if !state.open {
        apply(inner, id, Event::PrClosed)?;
        return Ok(());
    }
    if task.state == TaskState::Closed {
        apply(inner, id, Event::PrReopened)?;
    }
    if let Some(github) = &followed.github {
        take_in_comments(inner, id, &followed, github).await?;
    }
    // A run that ended has its commits still to be pushed until its publish has an outcome;
    // until then the pull request's head is the one before the run: judging its checks would
    // start a fixing run for commits already replaced, and a reply would say nothing was
    // pushed. The publish asks for a sync once it is recorded; that sync follows up.
    if publish_pending(inner, id, &followed.pr)? {
        return Ok(());
    }
    answer_comments(inner, id, &followed).await?;
    if start_comment_run(inner, id, followed.github.as_ref(), &followed.pr.head_sha)? {
        return Ok(());
    }
    let task = inner
        .store
        .read(|tx| tx.task(id))?
        .ok_or_else(|| not_found(id))?;
    let followed_state = matches!(
        task.state,
        TaskState::AwaitingChecks | TaskState::AwaitingMerge { .. }
    );
    let live = inner.store.read(|tx| tx.live_run(id))?.is_some();
    if !followed_state || live {
        return Ok(());
    }
    if state.mergeable == Mergeable::Conflicting {
        let base = call(
            "fetching the base branch",
            followed
                .forge
                .fetch_base(&followed.repo, &followed.pr.remote, &followed.pr.base),
        )
        .await?;
        let brief = conflict_brief(&followed.pr, &base);
        apply(inner, id, Event::Conflicted { brief })?;
        return Ok(());
    }
    let checks = call(
        "reading the checks",
        followed
            .forge
            .checks(&followed.repo, &followed.pr, &followed.pr.head_sha),
    )
    .await?;
    let overall = checks.overall();
    let awaiting_first = overall == CheckState::Passed
        && awaits_first_checks(inner, id, &checks, followed.github.as_ref())?;
    record_checks(inner, id, &followed.pr.head_sha, &checks, awaiting_first)?;
    match overall {
        CheckState::Passed if awaiting_first => {}
        CheckState::Passed => {
            apply(inner, id, Event::ChecksPassed)?;
        }
        CheckState::Pending => {}
        CheckState::Failed => {
            let failed = checks.failed();
            let failures = call(
                "reading why the checks failed",
                followed.forge.check_failures(&followed.pr, &failed),
            )
            .await?;
            let names = failed.iter().map(|c| c.name.clone()).collect();
            let brief = checks_brief(&followed.pr, &failures);
            apply(
                inner,
                id,
                Event::ChecksFailed {
                    checks: names,
                    brief,
                },
            )?;
        }
    }
    Ok(())
}

/// Keeps the checks just read for the task page and the board (a change reaches the live
/// stream).
fn record_checks(
    inner: &Inner,
    id: TaskId,
    head_sha: &str,
    checks: &forge::Checks,
    awaiting_first: bool,
) -> Result<()> {
    let (rows, overall) = shown_checks(checks, awaiting_first);
    inner
        .store
        .write(|tx| tx.record_pr_checks(id, head_sha, overall, &rows))?;
    Ok(())
}

/// The checks as people are shown them: each check, and a required one that has not reported
/// yet as pending; overall `pending` while the first checks of a push are awaited, `none` when
/// nothing reported and nothing is required (which counts as passed), else the counted checks
/// together.
fn shown_checks(
    checks: &forge::Checks,
    awaiting_first: bool,
) -> (Vec<store::CheckRow>, &'static str) {
    let counted = checks.counted();
    let mut rows: Vec<store::CheckRow> = checks
        .checks
        .iter()
        .map(|check| store::CheckRow {
            name: check.name.clone(),
            state: check_state(check.state).to_string(),
            url: check.url.clone(),
            counted: counted.iter().any(|c| std::ptr::eq(*c, check)),
        })
        .collect();
    for name in checks.required.iter().flatten() {
        if !checks.checks.iter().any(|c| &c.name == name) {
            rows.push(store::CheckRow {
                name: name.clone(),
                state: "pending".into(),
                url: None,
                counted: true,
            });
        }
    }
    let overall = match checks.overall() {
        _ if awaiting_first => "pending",
        CheckState::Passed if rows.is_empty() => "none",
        state => check_state(state),
    };
    (rows, overall)
}

/// A check state as the API and the store say it.
fn check_state(state: CheckState) -> &'static str {
    match state {
        CheckState::Pending => "pending",
        CheckState::Passed => "passed",
        CheckState::Failed => "failed",
    }
}

/// Whether a GitHub pull request with no checks at all was pushed too recently to call it green:
/// CI registers its check runs a moment after the push. Asks for a sync when the grace ends.
fn awaits_first_checks(
    inner: &Arc<Inner>,
    id: TaskId,
    checks: &forge::Checks,
    github: Option<&GitHubSettings>,
) -> Result<bool> {
    let Some(github) = github else {
        return Ok(false);
    };
    if !checks.checks.is_empty() || checks.required.is_some() {
        return Ok(false);
    }
    let published_at = inner.store.read(|tx| {
        Ok::<_, EngineError>(
            tx.intents_of_task(id)?
                .iter()
                .filter(|i| i.kind == Ok(store::IntentKind::OpenPr))
                .filter_map(|i| i.done_at)
                .max(),
        )
    })?;
    let Some(published_at) = published_at else {
        return Ok(false);
    };
    let grace_ms = github.checks_grace_secs.saturating_mul(1000) as i64;
    let wait_ms = published_at + grace_ms - store::now_ms();
    if wait_ms <= 0 {
        return Ok(false);
    }
    request_sync_at(
        inner,
        id,
        Instant::now() + Duration::from_millis(wait_ms as u64),
    );
    Ok(true)
}

/// Whether a publish of the task is pending, or was recorded after `pr` was read (its head is
/// not the recorded one).
fn publish_pending(inner: &Inner, id: TaskId, pr: &PullRequest) -> Result<bool> {
    inner.store.read(|tx| {
        let publishing = tx.intents_of_task(id)?.iter().any(|intent| {
            intent.outcome.is_none() && matches!(intent.kind, Ok(store::IntentKind::OpenPr))
        });
        let moved = tx
            .pull_request(id)?
            .is_some_and(|row| row.head_sha != pr.head_sha);
        Ok::<_, EngineError>(publishing || moved)
    })
}

/// Applies `event` to the task and acts on the commit; `Ok(false)` when the rules refused it.
fn apply(inner: &Arc<Inner>, id: TaskId, event: Event) -> Result<bool> {
    let outcome = inner.store.write(|tx| {
        let task = tx.task(id)?.ok_or_else(|| not_found(id))?;
        match apply_in(tx, &task, &event) {
            Ok((_, applied)) => Ok(Some(applied)),
            Err(EngineError::Conflict(_) | EngineError::InvalidState(_)) => Ok(None),
            Err(err) => Err(err),
        }
    })?;
    match outcome {
        Some(applied) => {
            after_commit(inner, applied);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Records comments seen for the first time: trusted ones that mention the trigger wait for a
/// run, the others are ignored with the reason. Every comment waiting or taken is acknowledged
/// on the forge (👀) once.
async fn take_in_comments(
    inner: &Arc<Inner>,
    id: TaskId,
    followed: &Followed,
    github: &GitHubSettings,
) -> Result<()> {
    let comments = call(
        "reading the comments",
        followed.forge.comments(&followed.pr),
    )
    .await?;
    inner.store.write(|tx| {
        for comment in &comments {
            let verdict = triage(comment, github);
            let (status, reason) = match &verdict {
                Ok(()) => (CommentStatus::Pending, None),
                Err(reason) => (CommentStatus::Ignored, Some(reason.as_str())),
            };
            let inserted = tx.insert_comment(&NewComment {
                task_id: id,
                kind: comment.kind.as_str(),
                comment_id: comment.id,
                author: &comment.author,
                association: &comment.association,
                body: &comment.body,
                path: comment.path.as_deref(),
                line: comment.line,
                url: comment.url.as_deref(),
                status,
                reason,
            })?;
            if inserted && let Err(reason) = &verdict {
                tracing::info!(task = %id, author = %comment.author, %reason, "ignored a pull-request comment");
            }
        }
        Ok::<_, EngineError>(())
    })?;
    inner.hub.changed(id);
    let unacknowledged = inner.store.read(|tx| tx.unacknowledged_comments(id))?;
    for row in unacknowledged {
        let comment = comment_of(&row);
        call(
            "acknowledging a comment",
            followed.forge.acknowledge(&followed.pr, &comment),
        )
        .await?;
        inner
            .store
            .write(|tx| tx.mark_acknowledged(id, &row.kind, row.comment_id))?;
    }
    Ok(())
}

/// Whether a comment starts a run, or why not.
fn triage(comment: &Comment, github: &GitHubSettings) -> std::result::Result<(), String> {
    if comment.body.contains(forge::REPLY_MARKER_PREFIX) {
        return Err("Atelier's own reply".into());
    }
    if !mentions(&comment.body, &github.trigger) {
        return Err(format!("does not mention {}", github.trigger));
    }
    let trusted_user = github
        .trusted_users
        .iter()
        .any(|u| u.eq_ignore_ascii_case(&comment.author));
    let trusted_association = github
        .trusted_associations
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&comment.association));
    if !trusted_user && !trusted_association {
        return Err(format!(
            "{} ({}) is not a trusted author: trusted are {} and the users {}",
            comment.author,
            comment.association,
            github.trusted_associations.join("/"),
            if github.trusted_users.is_empty() {
                "(none)".to_string()
            } else {
                github.trusted_users.join(", ")
            }
        ));
    }
    Ok(())
}

/// Whether `body` mentions `trigger` as a word (`@atelier` but not `@atelier-bot`).
fn mentions(body: &str, trigger: &str) -> bool {
    let lower = body.to_lowercase();
    let trigger = trigger.to_lowercase();
    lower.match_indices(&trigger).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + trigger.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
        !word(before) && !word(after)
    })
}

fn comment_of(row: &CommentRow) -> Comment {
    Comment {
        kind: CommentKind::parse(&row.kind).unwrap_or(CommentKind::Issue),
        id: row.comment_id,
        author: row.author.clone(),
        association: row.association.clone(),
        body: row.body.clone(),
        path: row.path.clone(),
        line: row.line,
        url: row.url.clone(),
    }
}

/// Starts one run for the waiting comments once the batching window of the oldest has passed
/// and no run is live; before that, asks for a sync when it will have. True when a run started.
fn start_comment_run(
    inner: &Arc<Inner>,
    id: TaskId,
    github: Option<&GitHubSettings>,
    head: &str,
) -> Result<bool> {
    let Some(github) = github else {
        return Ok(false);
    };
    let pending = inner.store.read(|tx| tx.pending_comments(id))?;
    let Some(oldest) = pending.first() else {
        return Ok(false);
    };
    let window_ms = github.comment_window_secs.saturating_mul(1000) as i64;
    let wait_ms = oldest.received_at + window_ms - store::now_ms();
    if wait_ms > 0 {
        request_sync_at(
            inner,
            id,
            Instant::now() + Duration::from_millis(wait_ms as u64),
        );
        return Ok(false);
    }
    // A live run or a state that does not take comments: they wait for a later sync (the end
    // of a run publishes, which syncs).
    let brief = comments_brief(&pending, &github.trigger, head);
    apply(inner, id, Event::CommentsReceived { brief })
}

/// Answers, once each, the comments of runs that have ended: with the commits the run pushed.
/// Idempotent on the forge (the reply carries a marker), so a crash after posting never posts
/// twice.
async fn answer_comments(inner: &Arc<Inner>, id: TaskId, followed: &Followed) -> Result<()> {
    let unanswered = inner.store.read(|tx| tx.unanswered_comments(id))?;
    let pr = &followed.pr;
    for row in unanswered {
        let Some(run) = row.run_id else { continue };
        let body = reply_body(inner, run, &followed.repo, pr).await;
        let key = format!("run-{run}-{}-{}", row.kind, row.comment_id);
        call(
            "replying to a comment",
            followed.forge.reply(pr, &comment_of(&row), &key, &body),
        )
        .await?;
        crate::crash::point("after-reply");
        inner
            .store
            .write(|tx| tx.mark_replied(id, &row.kind, row.comment_id))?;
    }
    Ok(())
}

/// What a run that carried comments changed: the commits it added on top of the head before it.
async fn reply_body(inner: &Inner, run: domain::RunId, repo: &Path, pr: &PullRequest) -> String {
    let before = inner
        .store
        .read(|tx| tx.run_brief(run))
        .ok()
        .flatten()
        .and_then(|brief| {
            brief
                .lines()
                .find_map(|l| l.strip_prefix(HEAD_LINE).map(|s| s.trim().to_string()))
        });
    let commits = match before {
        Some(before) if before != pr.head_sha => match git::Repo::open(repo).await {
            Ok(repo) => repo
                .commit_lines(&before, &pr.head_sha)
                .await
                .unwrap_or_default(),
            Err(_) => String::new(),
        },
        _ => String::new(),
    };
    if commits.trim().is_empty() {
        format!("Atelier looked at this (run {run}) and pushed no new commits.")
    } else {
        let list: Vec<String> = commits.lines().map(|l| format!("- {l}")).collect();
        format!(
            "Atelier addressed this in run {run} and pushed:\n\n{}",
            list.join("\n")
        )
    }
}

/// The brief line that records the head a follow-up run started from.
const HEAD_LINE: &str = "Head before this run: ";

fn comments_brief(comments: &[CommentRow], trigger: &str, head: &str) -> String {
    let mut brief = format!(
        "Reviewers asked for changes on the pull request (comments mentioning {trigger}). \
         Address each one: make the change, run the relevant tests, commit. A comment you cannot \
         address is explained in your final message.\n\n{HEAD_LINE}{head}\n\n"
    );
    for comment in comments {
        let place = match (&comment.path, comment.line) {
            (Some(path), Some(line)) => format!(" on `{path}` line {line}"),
            (Some(path), None) => format!(" on `{path}`"),
            _ => String::new(),
        };
        brief.push_str(&format!(
            "### {} ({}){place}\n\n{}\n\n",
            comment.author,
            kind_name(&comment.kind),
            comment.body.trim()
        ));
    }
    brief
}

fn kind_name(kind: &str) -> &'static str {
    match CommentKind::parse(kind) {
        Some(CommentKind::Review) => "review",
        Some(CommentKind::ReviewComment) => "inline review comment",
        _ => "comment",
    }
}

fn checks_brief(pr: &PullRequest, failures: &[CheckFailure]) -> String {
    let names: Vec<&str> = failures.iter().map(|f| f.name.as_str()).collect();
    let mut brief = format!(
        "The pull request's checks failed on commit {}: {}. Find the real error below, fix it, \
         run the failing check's command locally where you can, and commit.\n\n{HEAD_LINE}{}\n\n",
        pr.head_sha,
        names.join(", "),
        pr.head_sha
    );
    for failure in failures {
        brief.push_str(&format!("### Check `{}`\n\n", failure.name));
        if let Some(summary) = &failure.summary {
            brief.push_str(&format!("{}\n\n", summary.trim()));
        }
        for a in &failure.annotations {
            brief.push_str(&format!(
                "- {}:{}: {} {}{}\n",
                a.path,
                a.start_line,
                a.level,
                a.title
                    .as_deref()
                    .map(|t| format!("{t}: "))
                    .unwrap_or_default(),
                a.message
            ));
        }
        if !failure.annotations.is_empty() {
            brief.push('\n');
        }
        if let Some(log) = &failure.log_excerpt {
            brief.push_str(&format!(
                "Log of the failing step:\n\n```\n{}\n```\n\n",
                log.trim_end()
            ));
        }
    }
    brief
}

fn conflict_brief(pr: &PullRequest, base_sha: &str) -> String {
    format!(
        "The base branch `{base}` moved (now {base_sha}) and the pull request no longer merges \
         into it. This run you rebase: Atelier has fetched it as `{remote}/{base}`. Run \
         `git rebase {remote}/{base}`, resolve every conflict keeping both sides' intent, \
         `git add` the resolved files and `git rebase --continue` until it is done, run the \
         tests, then signal pr-done. Never push: Atelier pushes the rebased branch.\n\n\
         {HEAD_LINE}{head}\n",
        base = pr.base,
        remote = pr.remote,
        head = pr.head_sha
    )
}

/// Polls the pull requests of every followed task: each tick syncs those not synced within their
/// project's poll period (the local forge every tick).
pub(crate) async fn poll(inner: Arc<Inner>) {
    let mut interval = tokio::time::interval(inner.config.merge_poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let followed = inner.store.read(|tx| {
            let mut out = Vec::new();
            for id in tx.tasks_to_follow()? {
                let Some(task) = tx.task(id)? else { continue };
                let Some(project) = tx.project(task.project_id)? else {
                    continue;
                };
                let period = match crate::settings::parse(&project.settings_json)?.forge {
                    ForgeSettings::Github(github) => Duration::from_secs(github.poll_secs),
                    ForgeSettings::Local => Duration::ZERO,
                };
                out.push((id, period));
            }
            Ok::<_, EngineError>(out)
        });
        match followed {
            Ok(followed) => {
                for (task, period) in followed {
                    if !inner.syncs.synced_within(task, period) {
                        request_sync(&inner, task);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot list the pull requests to follow"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, state: CheckState) -> forge::Check {
        forge::Check {
            name: name.into(),
            kind: forge::CheckKind::CheckRun,
            state,
            id: Some(1),
            url: Some(format!("https://ci.example/{name}")),
        }
    }

    #[test]
    fn checks_are_shown_as_the_engine_judges_them() {
        let shown = |checks: &forge::Checks, awaiting_first| {
            let (rows, overall) = shown_checks(checks, awaiting_first);
            let rows: Vec<(String, String, bool)> = rows
                .into_iter()
                .map(|r| (r.name, r.state, r.counted))
                .collect();
            (rows, overall)
        };
        let row = |name: &str, state: &str, counted| (name.to_string(), state.to_string(), counted);
        // Nothing reported, nothing required: no CI (counted as passed), unless the first
        // checks of a push are still awaited.
        let none = forge::Checks::default();
        assert_eq!(shown(&none, false), (vec![], "none"));
        assert_eq!(shown(&none, true), (vec![], "pending"));
        // A required check that has not reported is shown pending; one not required does not
        // count.
        let some = forge::Checks {
            head_sha: "abc".into(),
            checks: vec![
                check("lint", CheckState::Failed),
                check("build", CheckState::Passed),
            ],
            required: Some(vec!["build".into(), "test".into()]),
        };
        assert_eq!(
            shown(&some, false),
            (
                vec![
                    row("lint", "failed", false),
                    row("build", "passed", true),
                    row("test", "pending", true)
                ],
                "pending"
            )
        );
        let failing = forge::Checks {
            required: None,
            ..some
        };
        assert_eq!(shown(&failing, false).1, "failed");
    }

    #[test]
    fn a_round_asked_for_during_a_sync_is_run_by_its_owner_then_the_task_is_free() {
        let syncs = Syncs::default();
        let task = TaskId(7);
        assert!(syncs.enter(task), "the first request owns the sync");
        assert!(
            !syncs.enter(task),
            "a request meanwhile asks for one more round"
        );
        assert!(
            !syncs.enter(task),
            "requests meanwhile fold into that one round"
        );
        assert!(
            syncs.leave(task),
            "the owner goes round again, still owning the sync"
        );
        assert!(!syncs.leave(task), "no further round: the sync ends");
        assert!(syncs.enter(task), "the next request starts a sync again");
    }

    #[test]
    fn a_mention_is_a_whole_word() {
        assert!(mentions("@atelier please rename", "@atelier"));
        assert!(mentions("Thanks! @Atelier, fix the typo.", "@atelier"));
        assert!(!mentions("@atelier-bot rename", "@atelier"));
        assert!(!mentions("mail me@atelier.dev", "@atelier"));
        assert!(!mentions("no mention here", "@atelier"));
    }

    fn comment(author: &str, association: &str, body: &str) -> Comment {
        Comment {
            kind: CommentKind::Issue,
            id: 1,
            author: author.into(),
            association: association.into(),
            body: body.into(),
            path: None,
            line: None,
            url: None,
        }
    }

    #[test]
    fn only_trusted_mentions_start_runs_and_the_reason_says_why_not() {
        let github = GitHubSettings {
            trusted_users: vec!["outside-friend".into()],
            ..GitHubSettings::default()
        };
        assert_eq!(
            triage(&comment("ann", "MEMBER", "@atelier fix it"), &github),
            Ok(())
        );
        assert_eq!(
            triage(
                &comment("outside-friend", "NONE", "@atelier fix it"),
                &github
            ),
            Ok(())
        );
        let untrusted =
            triage(&comment("mallory", "NONE", "@atelier rm -rf"), &github).unwrap_err();
        assert!(
            untrusted.contains("mallory (NONE) is not a trusted author"),
            "{untrusted}"
        );
        assert_eq!(
            triage(&comment("ann", "OWNER", "looks good"), &github),
            Err("does not mention @atelier".into())
        );
        let own = format!("done {}", forge::reply_marker("run-3-issue-1"));
        assert_eq!(
            triage(&comment("bot", "NONE", &format!("@atelier {own}")), &github),
            Err("Atelier's own reply".into())
        );
    }

    #[test]
    fn a_checks_brief_carries_names_annotations_and_the_log() {
        let pr = PullRequest {
            url: "u".into(),
            number: Some(1),
            branch: "atelier/1-x".into(),
            base: "main".into(),
            head_sha: "abc123".into(),
            remote: "origin".into(),
        };
        let failure = CheckFailure {
            name: "test".into(),
            url: None,
            summary: Some("1 failed".into()),
            annotations: vec![forge::Annotation {
                path: "src/lib.rs".into(),
                start_line: 3,
                end_line: 3,
                level: "failure".into(),
                title: None,
                message: "assertion failed".into(),
            }],
            log_excerpt: Some("##[error]Process completed with exit code 101.".into()),
        };
        let brief = checks_brief(&pr, &[failure]);
        for part in [
            "checks failed on commit abc123: test",
            "- src/lib.rs:3: failure assertion failed",
            "##[error]Process completed with exit code 101.",
            "Head before this run: abc123",
        ] {
            assert!(brief.contains(part), "{part:?} missing from {brief}");
        }
    }
}
