//! The task page: what needs the human first (the plan gate with the plan in view, the
//! question with an answer box, the block with the action that lifts it), the task doc, the
//! stage timeline (every run; a needs-work round stands out from a clean pass), the pull
//! request, the live transcript and the diff against the base. Only the actions the state
//! machine allows now are offered.

use super::error_page;
use super::layout::{
    Page, Section, checks_badge, duration, is_web_address, shell, state_badge, time,
};
use super::markdown;
use super::transcript;
use super::viewer::Viewer;
use crate::backend::Backend;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use domain::{Signal, TaskId, TaskState, Verdict};
use engine::api::{
    AttachmentView, ChecksView, RunView, TaskAction, TaskDetail, TaskDiff, TaskView,
    TranscriptQuery,
};
use maud::{Markup, html};

/// The header the page's script sends when it only wants the live regions again.
const PARTIAL: &str = "x-atelier-partial";

pub(crate) async fn page<B: Backend>(
    viewer: Viewer<B>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    let id = TaskId(id);
    // Read before the data: the page's stream resumes from here, so no change is missed.
    let stream = match super::stream_after_now(&viewer.backend, &format!("/api/tasks/{id}/stream"))
    {
        Ok(stream) => stream,
        Err(err) => return error_page(&viewer, err),
    };
    let detail = match viewer.backend.task(id).await {
        Ok(detail) => detail,
        Err(err) => return error_page(&viewer, err),
    };
    let partial = headers.contains_key(PARTIAL);
    let transcript = if partial {
        None
    } else {
        match viewer
            .backend
            .transcript(
                id,
                TranscriptQuery::Last {
                    limit: transcript::PAGE,
                },
            )
            .await
        {
            Ok(page) => Some(page),
            Err(err) => return error_page(&viewer, err),
        }
    };
    let attached = match viewer.backend.attachments(id) {
        Ok(list) => list,
        Err(err) => return error_page(&viewer, err),
    };
    let task = &detail.task;
    let actions = &detail.actions;
    let body = html! {
        div #task-head .page-head data-region="1" {
            div {
                p.crumbs { a href={ "/projects/" (task.project) } { (task.project) } " / " (task.key) }
                h1 { (task.title) }
                p #task-state data-state=(task.state.name()) { (state_badge(&task.state)) }
            }
            (action_bar(&detail, actions))
        }
        div.task-grid {
            div.task-main {
                div #attention data-region="1" { (attention(&detail, actions)) }
                section #doc-panel .panel aria-labelledby="doc-h" data-region="1" {
                    h2 #doc-h { "Task doc" }
                    div #doc .doc { (markdown::render(&detail.doc)) }
                    // Offered to those the API lets edit it now (the engine's one rule).
                    @if actions.contains(&TaskAction::EditDoc) {
                        details #doc-edit {
                            summary { "Edit the doc" }
                            form #edit-doc data-api={ "/api/tasks/" (id) "/doc" } data-method="PUT" data-then="reload" {
                                label for="doc-text" { "Task doc (markdown)" }
                                textarea #doc-text name="doc" rows="16" spellcheck="false" { (detail.doc) }
                                p.form-error role="alert" {}
                                button type="submit" { "Save the doc" }
                            }
                        }
                    }
                }
            }
            aside.task-side {
                section #timeline-panel .panel aria-labelledby="timeline-h" data-region="1" {
                    h2 #timeline-h { "Timeline" }
                    (timeline(&detail.runs))
                }
                section #pr .panel aria-labelledby="pr-h" data-region="1" { (pull_request(&detail)) }
                section #attachments .panel aria-labelledby="attachments-h" data-region="1" { (attachments(id, &attached)) }
            }
        }
        @if let Some(page) = &transcript {
            (transcript::section(id, &page.entries, page.earlier, &page.live_runs))
        }
        section #diff-panel .panel aria-labelledby="diff-h" {
            details #diff-details data-src={ "/tasks/" (id) "/diff" } {
                summary { h2 #diff-h .inline { "Changes against " (task.branch) "'s base" } }
                // Without script the link opens the diff as a page; with it, opening the panel
                // loads the diff here.
                div #diff { p { a href={ "/tasks/" (id) "/changes" } { "Show the diff" } } }
            }
        }
    };
    let page_info = Page {
        title: &task.title,
        stream: Some(stream),
        section: Section::Projects,
    };
    shell(Some(&viewer), page_info, body).into_response()
}

fn action_bar(detail: &TaskDetail, actions: &[TaskAction]) -> Markup {
    let id = detail.task.id;
    let can = |wanted: TaskAction| actions.contains(&wanted);
    let stages: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            TaskAction::Run { stage } => Some(stage.as_str()),
            _ => None,
        })
        .collect();
    html! {
        div.actions #task-actions {
            @if can(TaskAction::Stop) {
                button #stop .danger type="button" data-action={ "/api/tasks/" (id) "/stop" } data-confirm="Stop the agent now?" { "Stop" }
            }
            @if can(TaskAction::Resume) {
                button #resume type="button" data-action={ "/api/tasks/" (id) "/resume" } { "Resume" }
            }
            @if can(TaskAction::Delete) {
                button #delete .secondary type="button" data-method="DELETE" data-action={ "/api/tasks/" (id) }
                    data-then={ "/projects/" (detail.task.project) } data-confirm="Delete this task, its worktree and its branch?" { "Delete" }
            }
            @if can(TaskAction::Merge) {
                button #merge type="button" data-action={ "/api/tasks/" (id) "/merge" } { "Merge" }
            }
            @if !stages.is_empty() {
                form #rerun .inline data-api={ "/api/tasks/" (id) "/run" } data-method="POST" data-then="reload" {
                    label for="rerun-stage" .visually-hidden { "Stage to run again" }
                    select #rerun-stage name="stage" {
                        @for stage in &stages { option value=(stage) { (stage) } }
                    }
                    button.secondary type="submit" { "Re-run stage" }
                    p.form-error role="alert" {}
                }
            }
        }
    }
}

/// What the human is asked for now, first on the page.
fn attention(detail: &TaskDetail, actions: &[TaskAction]) -> Markup {
    let id = detail.task.id;
    let can = |wanted: TaskAction| actions.contains(&wanted);
    match &detail.task.state {
        TaskState::PlanGate => html! {
            section #gate .panel.attention aria-labelledby="gate-h" {
                h2 #gate-h { "The plan is ready for your review" }
                p { "Read the plan in the task doc below, then approve it or ask for changes." }
                div.gate-forms {
                    @if can(TaskAction::ApprovePlan) {
                        form #approve data-api={ "/api/tasks/" (id) "/approve" } data-method="POST" data-then="reload" {
                            button type="submit" { "Approve plan" }
                            p.form-error role="alert" {}
                        }
                    }
                    @if can(TaskAction::RequestPlanChanges) {
                        form #request-changes data-api={ "/api/tasks/" (id) "/request-changes" } data-method="POST" data-then="reload" {
                            label for="feedback" { "Request changes" }
                            textarea #feedback name="feedback" rows="3" required placeholder="What should the plan do differently?" {}
                            button.secondary type="submit" { "Send to the planner" }
                            p.form-error role="alert" {}
                        }
                    }
                }
            }
        },
        TaskState::NeedsInput { stage, question } => html! {
            section #question-panel .panel.attention aria-labelledby="question-h" {
                h2 #question-h { "The " (stage) " agent asks" }
                div #question .doc { (markdown::render(question)) }
                @if can(TaskAction::Answer) {
                    form #answer data-api={ "/api/tasks/" (id) "/answer" } data-method="POST" data-then="reload" {
                        label for="answer-text" { "Your answer" }
                        textarea #answer-text name="text" rows="3" required {}
                        button type="submit" { "Answer" }
                        p.form-error role="alert" {}
                    }
                }
            }
        },
        TaskState::Blocked { stage, reason } => html! {
            section #blocked .panel.attention.bad aria-labelledby="blocked-h" {
                h2 #blocked-h { "Blocked at " (stage) ": " (reason.code()) }
                div.doc { (markdown::render(reason.detail())) }
                p { "Fix what it says, then " strong { "Resume" } " to continue at " (stage) "." }
            }
        },
        TaskState::Stopped { stage } => html! {
            section #stopped .panel.attention aria-labelledby="stopped-h" {
                h2 #stopped-h { "Stopped at " (stage) }
                p { "Resume to continue where it stopped." }
            }
        },
        TaskState::Waiting {
            stage,
            reason,
            retry_at,
            attempt,
        } => html! {
            section.panel.attention {
                h2 { "Waiting to retry " (stage) " (attempt " (attempt) ")" }
                p { (reason) } p.muted { "Next try at " (time(*retry_at)) }
            }
        },
        TaskState::AwaitingMerge { merge_error } => html! {
            section.panel.attention {
                h2 { "The pull request is green: review and merge it" }
                @if let Some(error) = merge_error { p.error { "The last merge failed: " (error) } }
            }
        },
        _ => html! {},
    }
}

/// One line per run: stage, iteration, harness and model, verdict, duration, tokens.
fn timeline(runs: &[RunView]) -> Markup {
    html! {
        @if runs.is_empty() { p.empty { "No runs yet." } }
        ol #timeline .timeline {
            @for run in runs {
                @let signal = signal_name(run.signal.as_ref());
                @let needs_work = matches!(run.signal, Some(Signal::Verdict { verdict: Verdict::NeedsWork, .. }));
                li id={ "run-" (run.id.0) } class={ "run status-" (run.status.as_str()) @if needs_work { " needs-work" } }
                    data-stage=(run.stage.as_str()) data-signal=(signal) data-status=(run.status.as_str()) {
                    div.run-head {
                        strong { (run.stage) } " " span.muted { "round " (run.iteration + 1) }
                        " " span.run-status { (run.status.as_str()) }
                        @if !signal.is_empty() { " " span.verdict { (signal.replace('-', " ")) } }
                    }
                    div.run-meta.muted {
                        @if let Some(harness) = &run.harness {
                            span.agent { (harness) @if let Some(model) = &run.model { " · " (model) } }
                        }
                        @if let (Some(start), Some(end)) = (run.started_at, run.ended_at) { span { (duration(end - start)) } }
                        @else if let Some(start) = run.started_at { span.elapsed data-since=(start) { "running" } }
                        @if run.input_tokens + run.output_tokens > 0 {
                            span { (tokens(run.input_tokens + run.output_tokens)) " tokens" }
                        }
                        @if run.cost_usd > 0.0 { span { "$" (format!("{:.2}", run.cost_usd)) } }
                        @if let Some(commit) = &run.reviewed_commit {
                            span.reviewed title="the commit this verdict was given on" { "on " code { (commit.chars().take(10).collect::<String>()) } }
                        }
                    }
                    @if let Some(reason) = &run.reason { div.run-reason { (reason) } }
                }
            }
        }
    }
}

fn pull_request(detail: &TaskDetail) -> Markup {
    html! {
        h2 #pr-h { "Pull request" }
        @if let Some(pr) = &detail.pull_request {
            @if is_web_address(&pr.url) {
                p { a.pr-link href=(pr.url) rel="noopener noreferrer" { (pr.url) } }
            } @else {
                p { span.pr-link { (pr.url) } " (on the local forge: the branch, merged here)" }
            }
            // The title it was opened with on the forge (the task's title, untrusted user text: escaped).
            @if !pr.title.is_empty() { p #pr-title .pr-title { (pr.title) } }
            p.muted { (pr.branch) " → " (pr.base) @if pr.merged { " · merged" } }
            @if let Some(checks) = &pr.checks { (pr_checks(checks, &pr.head_sha)) }
            @if !detail.comments.is_empty() {
                h3 { "Comments" }
                ul.comments {
                    @for c in &detail.comments {
                        li data-comment=(c.id) data-comment-status=(c.status) {
                            strong { (c.author) } " (" (c.association) ") · "
                            @match c.url.as_deref().filter(|url| is_web_address(url)) {
                                Some(url) => a href=(url) rel="noopener noreferrer" { (comment_kind(&c.kind)) },
                                None => (comment_kind(&c.kind)),
                            }
                            " · " (c.status)
                            @if let Some(reason) = &c.reason { " (" (reason) ")" }
                            @if let Some(run) = c.run { " → " a href={ "#run-" (run.0) } { "run " (run.0) } }
                        }
                    }
                }
            }
        } @else {
            p.muted { "None yet: the pr stage opens it." }
        }
    }
}

/// A pull request comment's kind, in words.
fn comment_kind(kind: &str) -> &str {
    match kind {
        "issue" => "comment",
        "review" => "review",
        "review_comment" => "comment on the code",
        other => other,
    }
}

/// The checks last read: each with its state and, when the forge gave a web address, a link.
fn pr_checks(checks: &ChecksView, head: &str) -> Markup {
    let short = |sha: &str| sha.chars().take(7).collect::<String>();
    html! {
        h3 { "Checks " (checks_badge(&checks.overall)) }
        @if checks.head_sha != head {
            p.muted { "Read on an earlier push (" code { (short(&checks.head_sha)) } "); the new head's are not read yet." }
        }
        @if checks.checks.is_empty() {
            p.muted { "None reported for " code { (short(&checks.head_sha)) } "." }
        } @else {
            ul.checks {
                @for check in &checks.checks {
                    li data-checks=(check.state) {
                        span.badge data-checks=(check.state) { (check.state) } " "
                        @match check.url.as_deref().filter(|u| is_web_address(u)) {
                            Some(url) => a href=(url) rel="noopener noreferrer" { (check.name) },
                            None => span { (check.name) },
                        }
                        @if !check.counted { span.muted { " (not required)" } }
                    }
                }
            }
        }
        p.muted { "Last read " (time(checks.read_at)) "." }
    }
}

fn tokens(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn signal_name(signal: Option<&Signal>) -> String {
    match signal {
        None => String::new(),
        Some(Signal::PlanReady) => "plan-ready".into(),
        Some(Signal::Question { .. }) => "question".into(),
        Some(Signal::Verdict { verdict, .. }) => verdict.to_string(),
        Some(Signal::PrDone { no_changes: true }) => "pr-done-no-changes".into(),
        Some(Signal::PrDone { .. }) => "pr-done".into(),
        Some(Signal::Qa { result, .. }) => format!("qa {result}"),
        Some(Signal::RefineDone) => "refine-done".into(),
    }
}

/// The attachments, each a download (never rendered: agents write them), and the upload form.
fn attachments(id: TaskId, list: &[AttachmentView]) -> Markup {
    html! {
        h2 #attachments-h { "Attachments" }
        @if list.is_empty() { p.muted { "None." } }
        ul.plain {
            @for a in list {
                li { a href={ "/api/tasks/" (id) "/attachments/" (a.name) } download=(a.name) { (a.name) }
                    " " span.muted { (size(a.size)) } }
            }
        }
        form #attach data-api="upload" data-to={ "/api/tasks/" (id) "/attachments/" } data-then="reload" {
            label for="attach-files" { "Attach files" }
            input #attach-files type="file" name="files" multiple required;
            p.form-error role="alert" {}
            button.secondary type="submit" { "Upload" }
        }
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// `GET /tasks/{id}/diff`: the diff fragment the page's script loads when its panel is opened.
pub(crate) async fn diff<B: Backend>(viewer: Viewer<B>, Path(id): Path<i64>) -> Response {
    match viewer.backend.task_diff(TaskId(id)).await {
        Ok(diff) => diff_markup(&diff).into_response(),
        Err(err) => super::failure(err, viewer.who.admin).into_response(),
    }
}

/// `GET /tasks/{id}/changes`: the diff as a page of its own, where the task page's diff panel
/// links without script.
pub(crate) async fn changes<B: Backend>(viewer: Viewer<B>, Path(id): Path<i64>) -> Response {
    let id = TaskId(id);
    let (detail, diff) = match viewer.backend.task(id).await {
        Ok(detail) => match viewer.backend.task_diff(id).await {
            Ok(diff) => (detail, diff),
            Err(err) => return error_page(&viewer, err),
        },
        Err(err) => return error_page(&viewer, err),
    };
    let task = &detail.task;
    subpage(
        &viewer,
        task,
        html! { "Changes against " (task.branch) "'s base" },
        html! { section #diff-panel .panel aria-label="Diff" { div #diff { (diff_markup(&diff)) } } },
    )
}

/// A page of its own about one part of a task (its changes, its earlier events — what the task
/// page links to without script): the project and the task as crumbs, `heading`, then
/// `content`. Not followed live: the task page is.
pub(crate) fn subpage<B: Backend>(
    viewer: &Viewer<B>,
    task: &TaskView,
    heading: Markup,
    content: Markup,
) -> Response {
    let body = html! {
        div.page-head {
            div {
                p.crumbs { a href={ "/projects/" (task.project) } { (task.project) } " / " a href={ "/tasks/" (task.id) } { (task.key) } }
                h1 { (heading) }
            }
        }
        (content)
    };
    let page = Page {
        title: &task.title,
        stream: None,
        section: Section::Projects,
    };
    shell(Some(viewer), page, body).into_response()
}

/// The files with their counts, then the unified diff with added, removed and hunk lines marked.
fn diff_markup(diff: &TaskDiff) -> Markup {
    html! {
        @if let Some(note) = &diff.note { p.muted { (note) } }
        @else if diff.files.is_empty() { p.muted { "No changes against the base yet." } }
        @else {
            p.muted { (diff.files.len()) " files against " code { (diff.base.chars().take(12).collect::<String>()) } }
            div.table-wrap { table.diff-files {
                thead { tr { th scope="col" { "File" } th scope="col" { "Change" } th scope="col" { "+" } th scope="col" { "−" } } }
                tbody {
                    @for f in &diff.files {
                        tr {
                            td { code { @if let Some(old) = &f.old_path { (old) " → " } (f.path) } }
                            td { (format!("{:?}", f.status).to_lowercase()) @if f.binary { " (binary)" } }
                            td.num.add { (f.additions) } td.num.del { (f.deletions) }
                        }
                    }
                }
            } }
            pre.diff { @for line in diff.patch.lines() { (diff_line(line)) "\n" } }
            @if diff.truncated { p.muted { "The diff is cut here; see the branch for the rest." } }
        }
    }
}

fn diff_line(line: &str) -> Markup {
    let class = if line.starts_with("+++") || line.starts_with("---") || line.starts_with("diff ") {
        "file"
    } else if line.starts_with('+') {
        "add"
    } else if line.starts_with('-') {
        "del"
    } else if line.starts_with("@@") {
        "hunk"
    } else {
        ""
    };
    html! { @if class.is_empty() { (line) } @else { span class=(class) { (line) } } }
}
