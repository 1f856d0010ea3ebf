//! `atelier simulator`: the model simulator as a command. Serves the Anthropic Messages, OpenAI
//! Responses and OpenAI Chat Completions APIs, answering from scenario files, until SIGINT or
//! SIGTERM; for running the real agent CLIs offline.

use anyhow::{Context, Result};
use clap::Args;
use simulator::{Options, Simulator};
use std::io::Write;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
The engine's prompt must contain a line `Atelier-Stage: <stage> #<iteration>`; the simulator \
plays run <iteration> of <scenarios>/<stage>.json (the scripted agent's format) in the vocabulary \
of whichever CLI calls it. Every request is listed at GET /_sim/requests.

Examples:
  atelier simulator --listen 127.0.0.1:18080 --scenarios tests/scenarios
  ANTHROPIC_BASE_URL=http://127.0.0.1:18080 claude -p 'Atelier-Stage: plan #0 ...'";

/// Run the model simulator (a fake model API that plays scenario files)
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct SimulatorArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: String,
    /// Directory of `<stage>.json` scenario files
    #[arg(long, value_name = "DIR")]
    scenarios: PathBuf,
    /// Also append every request to this JSONL file
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Wait this long before each model answer (a model's thinking time; probes and model
    /// lists are answered at once)
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
}

pub async fn run(args: SimulatorArgs) -> Result<()> {
    super::serve::init_tracing("warn");
    let scenarios = std::path::absolute(&args.scenarios)
        .with_context(|| format!("bad scenarios directory {}", args.scenarios.display()))?;
    if !scenarios.is_dir() {
        anyhow::bail!(
            "the scenarios directory {} does not exist",
            scenarios.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let options = Options {
        scenarios_dir: scenarios,
        record_file: args.record.clone(),
        latency: std::time::Duration::from_millis(args.latency_ms),
    };
    let sim = Simulator::start_with(listener, options)
        .await
        .with_context(|| match &args.record {
            Some(path) => format!("cannot open the record file {}", path.display()),
            None => "cannot start the simulator".into(),
        })?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "Atelier simulator listening on {}", sim.url())
            .and_then(|()| stdout.flush())
            .context("cannot write to stdout")?;
    }
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(err) => {
            tracing::warn!(%err, "cannot watch SIGTERM; stop the simulator with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
