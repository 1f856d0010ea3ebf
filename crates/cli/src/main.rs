//! The `atelier` binary: parses the command line and dispatches to one module per command group.
//! It owns no logic of its own beyond that: the server is `server`, the orchestration `engine`,
//! and the commands are thin clients of the HTTP API (except `serve`, `demo`, `simulator`,
//! `pipeline` and the hidden `scripted-agent`, `codex-bridge` and `opencode-bridge`, which run
//! in-process).

mod client;
mod commands;
mod config;
mod output;

use clap::{Args, Parser, Subcommand};
use commands::{
    account, codex_bridge, demo, doctor, me, opencode_bridge, pipeline, project, prompt, serve,
    signal, simulator, task,
};
use std::path::PathBuf;
use std::process::ExitCode;

const ABOUT: &str = "Atelier: a self-hosted orchestrator that turns tickets into mergeable pull \
                     requests with a team of coding agents.";

const EXAMPLES: &str = "\
Examples:
  atelier demo                                  # watch a whole task run with simulated agents
  atelier serve                                 # start the server (prints its URL)
  atelier project add ~/src/web --name web      # register a git repository
  atelier task new --project web --title 'Fix login' --body-file request.md
  atelier task logs 1 --follow                  # watch the agents work
  atelier task approve 1                        # approve the plan
  atelier pipeline check .atelier/pipelines.toml   # validate pipeline definitions (offline)
  atelier me credentials set claude-code --env ANTHROPIC_API_KEY=@key.txt   # your own key";

#[derive(Parser, Debug)]
#[command(name = "atelier", version, about = ABOUT, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command understands.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// URL of the Atelier server [default: the `url` in <data-dir>/server.json, else the one
    /// `atelier login` saved]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "ATELIER_URL",
        value_name = "URL"
    )]
    pub url: Option<String>,
    /// API token [default: the `token` in <data-dir>/server.json, else the one `atelier login`
    /// saved for that server]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "ATELIER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Where the server keeps its state [default: $XDG_DATA_HOME/atelier or
    /// ~/.local/share/atelier]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "ATELIER_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    // Boxed: its many flags would make every other command as large.
    Serve(Box<serve::ServeArgs>),
    Doctor(doctor::DoctorArgs),
    #[command(subcommand)]
    Project(project::ProjectCommand),
    #[command(subcommand)]
    Task(task::TaskCommand),
    #[command(subcommand)]
    Signal(signal::SignalCommand),
    Login(account::LoginArgs),
    #[command(subcommand)]
    Token(account::TokenCommand),
    #[command(subcommand)]
    Prompt(prompt::PromptCommand),
    #[command(subcommand)]
    Admin(account::AdminCommand),
    Audit(account::AuditArgs),
    #[command(subcommand)]
    Me(me::MeCommand),
    Demo(demo::DemoArgs),
    /// Plays one turn of a scenario file (run by the scripted harness, not by people).
    #[command(hide = true)]
    ScriptedAgent(ScriptedAgentArgs),
    Simulator(simulator::SimulatorArgs),
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Runs `codex app-server` for a long-lived Codex session (run by the codex harness).
    #[command(hide = true, name = harness::codex::bridge::SUBCOMMAND)]
    CodexBridge(codex_bridge::CodexBridgeArgs),
    /// Plays one file or task-doc step of a scenario (run by agent CLIs under the simulator).
    #[command(hide = true)]
    ScriptedStep {
        /// The step as JSON, e.g. '{"do":"check","item":"parser"}'
        step: String,
    },
    /// Runs `opencode serve` for one long-lived session (run by the OpenCode harness, not by
    /// people).
    #[command(hide = true)]
    OpencodeBridge(opencode_bridge::BridgeArgs),
}

#[derive(Args, Debug)]
struct ScriptedAgentArgs {
    #[arg(long)]
    scenario: PathBuf,
    #[arg(long)]
    iteration: u32,
    #[arg(long)]
    turn: u32,
    #[arg(long)]
    session: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A small synchronous program: no runtime, no tracing; its exit code is the turn's.
    if let Command::ScriptedAgent(args) = cli.command {
        std::process::exit(scripted_agent(args));
    }
    if let Command::ScriptedStep { step } = &cli.command {
        std::process::exit(harness::scripted::run_step(step));
    }
    // Its own single-threaded runtime (see `harness::codex::bridge::main`).
    if let Command::CodexBridge(args) = &cli.command {
        std::process::exit(codex_bridge::run(args));
    }
    // Its own single-threaded runtime: the server it starts must die with the thread that
    // started it.
    if let Command::OpencodeBridge(args) = cli.command {
        std::process::exit(opencode_bridge::run(args));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, cli.global)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, global: GlobalArgs) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(*args, &global).await,
        Command::Doctor(args) => doctor::run(args, &global).await,
        Command::Project(cmd) => project::run(cmd, &global).await,
        Command::Task(cmd) => task::run(cmd, &global).await,
        Command::Signal(cmd) => signal::run(cmd, &global).await,
        Command::Login(args) => account::login(args, &global).await,
        Command::Token(cmd) => account::token(cmd, &global).await,
        Command::Prompt(cmd) => prompt::run(cmd, &global).await,
        Command::Admin(cmd) => account::admin(cmd, &global).await,
        Command::Audit(args) => account::audit(args, &global).await,
        Command::Me(cmd) => me::run(cmd, &global).await,
        Command::Demo(args) => demo::run(args, &global).await,
        // Handled in `main` before the runtime starts; kept here so the match stays total.
        Command::ScriptedAgent(args) => std::process::exit(scripted_agent(args)),
        Command::ScriptedStep { step } => std::process::exit(harness::scripted::run_step(&step)),
        Command::CodexBridge(args) => std::process::exit(codex_bridge::run(&args)),
        Command::OpencodeBridge(args) => std::process::exit(opencode_bridge::run(args)),
        Command::Simulator(args) => simulator::run(args).await,
        Command::Pipeline(cmd) => pipeline::run(cmd, &global).await,
    }
}

fn scripted_agent(args: ScriptedAgentArgs) -> i32 {
    harness::scripted::run_agent(harness::scripted::AgentArgs {
        scenario: args.scenario,
        iteration: args.iteration,
        turn: args.turn,
        session: args.session,
    })
}
