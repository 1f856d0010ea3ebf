//! `atelier task …`: create tasks, inspect them, drive them through their gates and follow their
//! agents' transcripts live.

use crate::GlobalArgs;
use crate::client::Client;
use crate::config;
use crate::output;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use domain::Stage;
use engine::api::{FollowItem, LogEntry, NewTask, TaskDetail, TaskView};
use futures::StreamExt;
use serde_json::json;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

/// Create and drive tasks (one unit of work: a doc, a worktree, a pipeline)
#[derive(Subcommand, Debug)]
#[command(
    after_help = "Example:\n  atelier task new --project web --title 'Fix login' --body-file request.md\n  atelier task list --project web"
)]
pub enum TaskCommand {
    New(NewArgs),
    List(ListArgs),
    /// Show a task: state, what it waits for, runs, pull request, doc path
    #[command(after_help = "Example:\n  atelier task show 12\n  atelier task show 12 --json")]
    Show(IdArg),
    /// Approve the plan at the plan gate; implementation starts
    #[command(after_help = "Example:\n  atelier task approve 12")]
    Approve(IdArg),
    RequestChanges(RequestChangesArgs),
    Answer(AnswerArgs),
    Run(RunArgs),
    /// Stop the task's agent (interrupt, then kill after the grace period)
    #[command(after_help = "Example:\n  atelier task stop 12")]
    Stop(IdArg),
    /// Continue a stopped or blocked task from the stage it stopped at
    #[command(after_help = "Example:\n  atelier task resume 12")]
    Resume(IdArg),
    /// Merge the task's pull request (as a human would on the forge)
    #[command(after_help = "Example:\n  atelier task merge 12")]
    Merge(IdArg),
    /// Delete a task: its worktree and branch, its branch on the remote (unless the project sets
    /// keep_remote_branch_on_delete), its doc and every record of it (stop its agent first)
    #[command(after_help = "Example:\n  atelier task delete 12")]
    Delete(IdArg),
    Logs(LogsArgs),
}

const NEW_HELP: &str = "\
The request (markdown) comes from --body-file, or from stdin when it is not a terminal.

Examples:
  atelier task new --project web --title 'Fix login' --body-file request.md
  echo 'The login button does nothing on Safari.' | atelier task new --project web --title 'Fix login'
  atelier task new --project web --title 'Bump the copyright year' --pipeline yolo --body-file req.md";

/// Create a task from a request; the plan stage starts right away
#[derive(Args, Debug)]
#[command(after_help = NEW_HELP)]
pub struct NewArgs {
    /// Project name or id
    #[arg(long)]
    project: String,
    /// Short title of the change
    #[arg(long)]
    title: String,
    /// File holding the request in markdown (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Higher runs first when agents queue for a slot
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i64,
    /// The owner is not technical: product questions only, and the plan gate passes automatically
    #[arg(long)]
    non_technical: bool,
    /// The pipeline the task runs: `standard` (plan → gate → implement ⇄ review → pr), `full`
    /// (… → qa → refine → pr), `yolo` (implement → pr, no plan, no review) or one the project
    /// defines; default: the project's `default_pipeline`
    #[arg(long, value_name = "NAME")]
    pipeline: Option<String>,
}

/// List tasks
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  atelier task list --project web")]
pub struct ListArgs {
    /// Only the tasks of this project (name or id)
    #[arg(long)]
    project: Option<String>,
}

// The argument of the commands that take only a task id.
#[derive(Args, Debug)]
pub struct IdArg {
    /// Task id (see `atelier task list`)
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    id: i64,
}

/// Send the plan back to the planner at the plan gate; its session continues with the feedback
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  atelier task request-changes 12 --feedback \"Split the migration into its own step.\""
)]
pub struct RequestChangesArgs {
    /// Task id
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    id: i64,
    /// What the plan should change
    #[arg(long)]
    feedback: String,
}

/// Answer the question an agent asked; its session resumes with the answer
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  atelier task answer 12 \"Use PostgreSQL; we already run it.\"")]
pub struct AnswerArgs {
    /// Task id
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    id: i64,
    /// The answer
    text: String,
}

/// Start (or re-run) a stage of a task
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  atelier task run 12 --stage review")]
pub struct RunArgs {
    /// Task id
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    id: i64,
    /// Stage to run [default: the stage the task is at]
    #[arg(long, value_parser = ["plan", "implement", "review", "pr"])]
    stage: Option<String>,
}

/// Print a task's transcript: every event of every run
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  atelier task logs 12 --follow\n  atelier task logs 12 --json | jq ."
)]
pub struct LogsArgs {
    /// Task id
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    id: i64,
    /// Keep streaming live events until no agent of the task is queued or running
    #[arg(long, short)]
    follow: bool,
}

pub async fn run(command: TaskCommand, global: &GlobalArgs) -> Result<()> {
    match command {
        TaskCommand::New(args) => new(args, global).await,
        TaskCommand::List(args) => {
            let path = match &args.project {
                Some(project) => format!("/api/tasks?project={}", query_escape(project)),
                None => "/api/tasks".to_string(),
            };
            let mut tasks: Vec<TaskView> = client(global)?.get_all(&path).await?;
            // The API lists oldest first; people read the newest first.
            tasks.reverse();
            if global.json {
                return output::print_json(&tasks);
            }
            print!("{}", output::tasks(&tasks));
            Ok(())
        }
        TaskCommand::Show(IdArg { id }) => {
            let detail: TaskDetail = client(global)?
                .get(&format!("/api/tasks/{id}"))
                .await
                .with_context(|| format!("cannot show task {id}"))?;
            if global.json {
                return output::print_json(&detail);
            }
            print!("{}", output::task_detail(&detail));
            Ok(())
        }
        TaskCommand::Approve(IdArg { id }) => action(global, id, "approve", &json!({})).await,
        TaskCommand::RequestChanges(args) => {
            let body = json!({ "feedback": args.feedback });
            action(global, args.id, "request-changes", &body).await
        }
        TaskCommand::Answer(args) => {
            action(global, args.id, "answer", &json!({ "text": args.text })).await
        }
        TaskCommand::Run(args) => {
            let stage = args.stage.as_deref().map(str::parse::<Stage>).transpose()?;
            action(global, args.id, "run", &json!({ "stage": stage })).await
        }
        TaskCommand::Stop(IdArg { id }) => action(global, id, "stop", &json!({})).await,
        TaskCommand::Resume(IdArg { id }) => action(global, id, "resume", &json!({})).await,
        TaskCommand::Merge(IdArg { id }) => action(global, id, "merge", &json!({})).await,
        TaskCommand::Delete(IdArg { id }) => delete(global, id).await,
        TaskCommand::Logs(args) => logs(args, global).await,
    }
}

fn client(global: &GlobalArgs) -> Result<Client> {
    Client::new(config::resolve_target(global)?)
}

async fn new(args: NewArgs, global: &GlobalArgs) -> Result<()> {
    // The request is read before the server is contacted: a typo in the path fails fast.
    let body = read_body(args.body_file.as_ref())?;
    let request = NewTask {
        project: args.project,
        title: args.title,
        body,
        priority: args.priority,
        technical: !args.non_technical,
        pipeline: args.pipeline,
    };
    let task: TaskView = client(global)?
        .post("/api/tasks", &request)
        .await
        .context("cannot create the task")?;
    if global.json {
        return output::print_json(&task);
    }
    print!("created {}", output::task_summary(&task));
    println!("  follow it with `atelier task logs {} --follow`", task.id);
    Ok(())
}

fn read_body(file: Option<&PathBuf>) -> Result<String> {
    const HOW: &str = "give the request with --body-file FILE or on stdin \
                       (e.g. `echo 'Fix the login bug' | atelier task new --project P --title T`)";
    let (body, source) = match file {
        Some(path) if path.as_os_str() == "-" => (read_stdin()?, "stdin".to_string()),
        Some(path) => {
            let body = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the request body file {}: check the path",
                    path.display()
                )
            })?;
            (body, path.display().to_string())
        }
        None if !std::io::stdin().is_terminal() => (read_stdin()?, "stdin".to_string()),
        None => bail!("the task has no request: {HOW}"),
    };
    if body.trim().is_empty() {
        bail!("the request from {source} is empty: {HOW}");
    }
    Ok(body)
}

fn read_stdin() -> Result<String> {
    let mut body = String::new();
    std::io::stdin()
        .read_to_string(&mut body)
        .context("cannot read the request from stdin")?;
    Ok(body)
}

/// `POST /api/tasks/{id}/{verb}` and print the task it returns.
async fn action(global: &GlobalArgs, id: i64, verb: &str, body: &serde_json::Value) -> Result<()> {
    let task: TaskView = client(global)?
        .post(&format!("/api/tasks/{id}/{verb}"), body)
        .await
        .with_context(|| format!("cannot {verb} task {id}"))?;
    if global.json {
        return output::print_json(&task);
    }
    print!("{}", output::task_summary(&task));
    Ok(())
}

async fn delete(global: &GlobalArgs, id: i64) -> Result<()> {
    let task: TaskView = client(global)?
        .delete(&format!("/api/tasks/{id}"))
        .await
        .with_context(|| format!("cannot delete task {id}"))?;
    if global.json {
        return output::print_json(&task);
    }
    println!("deleted task {} ({})", task.id, task.title);
    Ok(())
}

async fn logs(args: LogsArgs, global: &GlobalArgs) -> Result<()> {
    if args.follow {
        return follow(args.id, global).await;
    }
    let id = args.id;
    let response = client(global)?
        .get_stream(&format!("/api/tasks/{id}/logs"))
        .await
        .with_context(|| format!("cannot read the logs of task {id}"))?;
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("the log stream of task {id} broke"))?;
        pending.extend_from_slice(&chunk);
        while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            if print_log_line(&line, id, global.json)? {
                return Ok(());
            }
        }
    }
    if !pending.iter().all(u8::is_ascii_whitespace) && print_log_line(&pending, id, global.json)? {
        return Ok(());
    }
    Ok(())
}

/// How often a broken live stream is picked up again (with `Last-Event-ID`) before giving up.
const STREAM_RECONNECTS: u32 = 5;

/// `task logs --follow`: the task's Server-Sent Events, printed as the transcript; once the
/// stored backlog is through (`caught-up`) and after every change of the task or its runs, the
/// task is asked whether any agent is still queued or running (or its pull request still waits
/// for checks), and the follow ends when none is. A broken stream resumes where it broke.
async fn follow(id: i64, global: &GlobalArgs) -> Result<()> {
    let client = client(global)?;
    let mut last_id: Option<String> = None;
    let mut caught_up = false;
    let mut reconnects = 0;
    loop {
        let path = match &last_id {
            Some(last) => format!("/api/tasks/{id}/stream?after={last}"),
            None => format!("/api/tasks/{id}/stream"),
        };
        let response = client
            .get_stream(&path)
            .await
            .with_context(|| format!("cannot follow task {id}"))?;
        let mut body = response.bytes_stream();
        let mut pending = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let block: String = pending.drain(..end + 2).collect();
                let message = SseMessage::parse(&block);
                if let Some(message_id) = &message.id {
                    last_id = Some(message_id.clone());
                }
                match message.event.as_str() {
                    "transcript" => {
                        let entry: LogEntry =
                            serde_json::from_str(&message.data).with_context(|| {
                                format!("unexpected event in the stream of task {id}")
                            })?;
                        print_item(&FollowItem::Event(entry), id, global.json)?;
                    }
                    "caught-up" => caught_up = true,
                    "task" | "run" if caught_up => {}
                    _ => continue,
                }
                if caught_up
                    && matches!(message.event.as_str(), "caught-up" | "task" | "run")
                    && let Some(state) = settled(&client, id).await?
                {
                    print_item(&FollowItem::End { state }, id, global.json)?;
                    return Ok(());
                }
            }
        }
        reconnects += 1;
        if reconnects > STREAM_RECONNECTS {
            bail!("the live stream of task {id} kept breaking: is the server still running?");
        }
    }
}

/// One Server-Sent Events message.
struct SseMessage {
    id: Option<String>,
    event: String,
    data: String,
}

impl SseMessage {
    fn parse(block: &str) -> SseMessage {
        let mut message = SseMessage {
            id: None,
            event: "message".into(),
            data: String::new(),
        };
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => message.id = Some(value.to_string()),
                "event" => message.event = value.to_string(),
                "data" => message.data.push_str(value),
                _ => {}
            }
        }
        message
    }
}

/// The task's state once it no longer moves on without a human (the engine's `in_motion`);
/// `None` while it does.
async fn settled(client: &Client, id: i64) -> Result<Option<domain::TaskState>> {
    let detail: TaskDetail = client.get(&format!("/api/tasks/{id}")).await?;
    Ok((!detail.in_motion).then_some(detail.task.state))
}

fn print_item(item: &FollowItem, id: i64, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(item)?);
    } else {
        match item {
            FollowItem::Event(entry) => println!("{}", output::log_entry(entry)),
            FollowItem::End { state } => println!("task {id} is now: {state}"),
        }
    }
    Ok(())
}

/// Prints one NDJSON line; `true` once the end marker arrived.
fn print_log_line(line: &[u8], id: i64, json: bool) -> Result<bool> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if text.is_empty() {
        return Ok(false);
    }
    let item: FollowItem = serde_json::from_str(text)
        .with_context(|| format!("unexpected line in the log stream of task {id}: {text}"))?;
    if json {
        println!("{text}");
    } else {
        match &item {
            FollowItem::Event(entry) => println!("{}", output::log_entry(entry)),
            FollowItem::End { state } => println!("task {id} is now: {state}"),
        }
    }
    Ok(matches!(item, FollowItem::End { .. }))
}

/// Percent-encodes a query value (everything but unreserved characters).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("web app&x=1"), "web%20app%26x%3D1");
        assert_eq!(query_escape("web-1"), "web-1");
    }
}
