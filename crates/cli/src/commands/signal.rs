//! `atelier signal …`: the agent side. An agent tells Atelier that its plan is ready, asks a
//! question, gives a review verdict or reports its pull request, authenticated by the run token
//! the engine put in its environment. It never reads `server.json` or the API token.

use crate::GlobalArgs;
use crate::client::Client;
use crate::config::{self, Target};
use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use domain::{QaResult, Signal, TaskId, Verdict};
use engine::api::SignalRequest;

const SIGNAL_HELP: &str = "\
Runs inside an agent run: reads ATELIER_URL, ATELIER_RUN_TOKEN and ATELIER_TASK_ID from the \
environment the server gave the agent.

Examples:
  atelier signal plan-ready
  atelier signal question \"Should the export include archived items?\"
  atelier signal verdict needs-work --reason \"the CSV header is missing\"
  atelier signal qa fail --reason \"scenario 2: the export is empty (qa-2.txt)\"
  atelier signal refine-done
  atelier signal pr-done";

/// Tell Atelier something from inside an agent run
#[derive(Subcommand, Debug)]
#[command(after_help = SIGNAL_HELP)]
pub enum SignalCommand {
    /// The plan is written into the task doc and waits for approval
    #[command(after_help = "Example:\n  atelier signal plan-ready")]
    PlanReady,
    /// Ask the task's owner a question; the run pauses until it is answered
    #[command(
        after_help = "Example:\n  atelier signal question \"Keep the old endpoint for a release?\""
    )]
    Question {
        /// The question (several words are joined with spaces)
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// The reviewer's verdict: ready, needs-work or blocked (blocked needs --reason)
    #[command(
        after_help = "Example:\n  atelier signal verdict blocked --reason \"needs a production API key\""
    )]
    Verdict {
        #[arg(value_parser = ["ready", "needs-work", "blocked"])]
        verdict: String,
        /// Why (required for blocked: what a human must do)
        #[arg(long)]
        reason: Option<String>,
    },
    /// The QA stage's result: pass, or fail (fail needs --reason: the findings)
    #[command(
        after_help = "Example:\n  atelier signal qa fail --reason \"scenario 1: the page shows an error (qa-1.png)\""
    )]
    Qa {
        #[arg(value_parser = ["pass", "fail"])]
        result: String,
        /// What failed, how to reproduce it, and the evidence files (required for fail)
        #[arg(long)]
        reason: Option<String>,
    },
    /// The refinement pass (simplicity and security) is finished
    #[command(after_help = "Example:\n  atelier signal refine-done")]
    RefineDone,
    /// The pull request is open and green (or there was nothing to submit)
    #[command(after_help = "Example:\n  atelier signal pr-done --no-changes")]
    PrDone {
        /// Nothing is ahead of the base branch: there is no pull request to open
        #[arg(long)]
        no_changes: bool,
    },
}

impl SignalCommand {
    fn into_signal(self) -> Result<Signal> {
        let signal = match self {
            SignalCommand::PlanReady => Signal::PlanReady,
            SignalCommand::Question { text } => Signal::Question {
                text: text.join(" "),
            },
            SignalCommand::Verdict { verdict, reason } => Signal::Verdict {
                verdict: verdict.parse::<Verdict>()?,
                reason,
            },
            SignalCommand::PrDone { no_changes } => Signal::PrDone { no_changes },
            SignalCommand::Qa { result, reason } => Signal::Qa {
                result: result.parse::<QaResult>()?,
                reason,
            },
            SignalCommand::RefineDone => Signal::RefineDone,
        };
        signal.validate()?;
        Ok(signal)
    }
}

pub async fn run(command: SignalCommand, global: &GlobalArgs) -> Result<()> {
    let signal = command.into_signal()?;
    let run_token = env("ATELIER_RUN_TOKEN")?;
    let url = config::normalize_url(&env("ATELIER_URL")?).context("ATELIER_URL is invalid")?;
    let task_id = env("ATELIER_TASK_ID")?;
    let task = task_id
        .trim()
        .parse::<i64>()
        .map(TaskId)
        .map_err(|_| anyhow!("ATELIER_TASK_ID is not a task id: `{task_id}`"))?;

    let client = Client::new(Target {
        url,
        token: run_token,
    })?;
    let _: serde_json::Value = client
        .post("/api/signal", &SignalRequest { task, signal })
        .await
        .context("the signal was refused")?;
    if global.json {
        println!("{}", serde_json::json!({ "ok": true }));
    } else {
        println!("signal accepted");
    }
    Ok(())
}

fn env(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => bail!("atelier signal runs inside an agent run: {name} is not set"),
    }
}
