//! Rows → API views, project lookup by name or id, and which signals each stage takes.

use crate::api::*;
use crate::error::{EngineError, Result};
use crate::settings;
use domain::pipeline_def::StageSignal;
use domain::{Pipeline, ProjectId, QaResult, RunStatus, Signal, Stage, TaskId, TaskState, Verdict};
use store::{PrChecksRow, ProjectRow, PullRequestRow, RunRow, TaskRow, Tx};

/// Shown instead of the values of roles' `env` (they hold credentials).
pub(crate) const REDACTED: &str = "(redacted)";

pub(crate) fn project(row: ProjectRow) -> Result<ProjectView> {
    let mut settings = settings::parse(&row.settings_json)?;
    crate::forges::redact_github(&mut settings);
    for role in settings.roles.values_mut() {
        for value in role.env.values_mut() {
            *value = REDACTED.to_string();
        }
    }
    Ok(ProjectView {
        id: row.id,
        settings,
        name: row.name,
        path: row.path,
        default_branch: row.default_branch,
        created_at: row.created_at,
    })
}

pub(crate) fn find_project(tx: &Tx<'_>, name_or_id: &str) -> Result<ProjectRow> {
    let by_name = tx.project_by_name(name_or_id)?;
    let found = match (by_name, name_or_id.parse::<i64>()) {
        (Some(row), _) => Some(row),
        (None, Ok(id)) => tx.project(ProjectId(id))?,
        (None, Err(_)) => None,
    };
    found.ok_or_else(|| no_project(name_or_id))
}

/// The "no such project" error (also what a project the caller may not see answers).
pub(crate) fn no_project(name_or_id: &str) -> EngineError {
    EngineError::NotFound(format!(
        "no project `{name_or_id}`: list projects with `atelier project list` or add one with `atelier project add PATH`"
    ))
}

/// A task row as the API shows it, with its pull request's address read from `tx`.
pub(crate) fn task_in(tx: &Tx<'_>, row: TaskRow, project: String) -> Result<TaskView> {
    let pr = tx.pull_request(row.id)?;
    let checks = match &pr {
        Some(pr) => match tx.pr_checks(row.id)? {
            Some(checks) if checks.head_sha == pr.head_sha => Some(checks.overall),
            // A new head whose checks are not read yet, on a pull request still followed.
            Some(_) if !pr.merged && !row.state.is_done() && row.state != TaskState::Closed => {
                Some("pending".to_string())
            }
            _ => None,
        },
        None => None,
    };
    let mut view = task(row, project);
    view.pull_request_url = pr.map(|pr| pr.url);
    view.checks = checks;
    Ok(view)
}

/// A task row as the API shows it, without reading its pull request (a task just created,
/// or deleted, has none to show).
pub(crate) fn task(row: TaskRow, project: String) -> TaskView {
    TaskView {
        id: row.id,
        project,
        title: row.title,
        key: row.key,
        branch: row.branch,
        state: row.state,
        priority: row.priority,
        technical: row.technical,
        worktree: row.worktree,
        doc_path: row.doc_path,
        port: row.port,
        review_rounds: row.review_rounds,
        runs_started: row.runs_started,
        created_at: row.created_at,
        updated_at: row.updated_at,
        pipeline: row.pipeline,
        pull_request_url: None,
        checks: None,
    }
}

pub(crate) fn run(row: RunRow) -> RunView {
    RunView {
        id: row.id,
        stage: row.stage,
        status: row.status,
        iteration: row.iteration,
        turns: row.turns,
        session: row.session,
        signal: row.signal,
        reason: row.reason,
        created_at: row.created_at,
        started_at: row.started_at,
        ended_at: row.ended_at,
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        cost_usd: row.cost_usd,
        harness: row.harness,
        model: row.model,
        reviewed_commit: row.reviewed_commit,
    }
}

fn pull_request(row: PullRequestRow, checks: Option<PrChecksRow>) -> PullRequestView {
    PullRequestView {
        url: row.url,
        title: row.title,
        branch: row.branch,
        base: row.base,
        head_sha: row.head_sha,
        merged: row.merged,
        created_at: row.created_at,
        checks: checks.map(|c| ChecksView {
            head_sha: c.head_sha,
            overall: c.overall,
            read_at: c.read_at,
            checks: c
                .checks
                .into_iter()
                .map(|c| CheckView {
                    name: c.name,
                    state: c.state,
                    url: c.url,
                    counted: c.counted,
                })
                .collect(),
        }),
    }
}

/// Whether the task moves on without a human: an agent queued or running, or a pull request
/// waiting for its checks (a fixing run may follow). Followers end when it is not.
pub(crate) fn in_motion(runs: &[RunRow], state: &domain::TaskState) -> bool {
    runs.iter()
        .any(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running))
        || *state == domain::TaskState::AwaitingChecks
}

pub(crate) fn detail(tx: &Tx<'_>, id: TaskId) -> Result<TaskDetail> {
    let row = tx
        .task(id)?
        .ok_or_else(|| crate::transition::not_found(id))?;
    let project = tx
        .project(row.project_id)?
        .ok_or_else(|| crate::transition::not_found(id))?;
    let actions = actions(tx, &row, &project)?;
    let project = project.name;
    let doc = match crate::doc_file::read(std::path::Path::new(&row.doc_path)) {
        Ok(doc) => doc.unwrap_or_default(),
        Err(err) => {
            tracing::warn!(task = %row.id, error = %err, "the task doc is not shown");
            format!("*The task doc is not shown: {err}.*")
        }
    };
    let runs = tx.runs_of_task(id)?;
    Ok(TaskDetail {
        actions,
        in_motion: in_motion(&runs, &row.state),
        runs: runs.into_iter().map(run).collect(),
        pull_request: match tx.pull_request(id)? {
            Some(pr) => Some(pull_request(pr, tx.pr_checks(id)?)),
            None => None,
        },
        comments: tx
            .comments(id)?
            .into_iter()
            .map(|c| CommentView {
                kind: c.kind,
                id: c.comment_id,
                author: c.author,
                association: c.association,
                status: c.status.as_str().to_string(),
                reason: c.reason,
                run: c.run_id,
                acknowledged: c.acknowledged,
                url: c.url,
            })
            .collect(),
        task: task_in(tx, row, project)?,
        doc,
    })
}

/// What a user may do to the task now: the actions the rules accept (`domain::allowed_actions`),
/// without a merge on GitHub, where Atelier never merges.
pub(crate) fn actions(tx: &Tx<'_>, row: &TaskRow, project: &ProjectRow) -> Result<Vec<TaskAction>> {
    let settings = settings::parse(&project.settings_json)?;
    let on_github = matches!(settings.forge, ForgeSettings::Github(_));
    Ok(
        domain::allowed_actions(&tx.snapshot(row)?, &settings::policy(&settings))
            .into_iter()
            .filter(|action| !(on_github && *action == domain::Action::Merge))
            .map(TaskAction::from)
            .collect(),
    )
}

pub(crate) fn signal_name(signal: &Signal) -> &'static str {
    match signal {
        Signal::PlanReady => "plan-ready",
        Signal::Question { .. } => "question",
        Signal::Verdict { .. } => "verdict",
        Signal::PrDone { .. } => "pr-done",
        Signal::Qa { .. } => "qa",
        Signal::RefineDone => "refine-done",
    }
}

/// Any stage may ask a question; otherwise a stage takes the signals its pipeline routes
/// (`verdict blocked` wherever `ready` is: it waits for a human). An implementer signals
/// `pr-done` only where its pipeline routes it (yolo: no review, it publishes).
pub(crate) fn signal_fits(pipeline: &Pipeline, stage: Stage, signal: &Signal) -> bool {
    let routed = |s: StageSignal| pipeline.signals(stage).contains(&s);
    match signal {
        Signal::Question { .. } => true,
        Signal::PlanReady => routed(StageSignal::PlanReady),
        Signal::Verdict { verdict, .. } => match verdict {
            Verdict::Ready | Verdict::Blocked => routed(StageSignal::Ready),
            Verdict::NeedsWork => routed(StageSignal::NeedsWork),
        },
        Signal::PrDone { .. } => routed(StageSignal::PrDone),
        Signal::Qa { result, .. } => routed(match result {
            QaResult::Pass => StageSignal::Pass,
            QaResult::Fail => StageSignal::Fail,
        }),
        Signal::RefineDone => routed(StageSignal::RefineDone),
    }
}

/// The pipeline a task row records (one this version cannot run is a corrupt row).
pub(crate) fn pipeline(row: &TaskRow) -> Result<Pipeline> {
    store::task_pipeline(row).map_err(|e| EngineError::Internal(e.to_string()))
}
