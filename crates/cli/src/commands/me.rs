//! `atelier me …`: the caller's own agent credentials and models. Values are read from files or
//! stdin, never from the command line (where `ps` and shell history would show them), and the
//! server never shows them again.

use crate::GlobalArgs;
use crate::client::Client;
use crate::config;
use crate::output;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use domain::Stage;
use engine::api::{CredentialView, CredentialsRequest, UserModel, UserModels};
use std::io::Read;

/// Your own agent credentials and models (used by the runs of the tasks you create)
#[derive(Subcommand, Debug)]
#[command(
    after_help = "Examples:\n  atelier me credentials set claude-code --env ANTHROPIC_API_KEY=@key.txt\n  \
                        atelier me credentials list\n  atelier me models set plan opus --effort high"
)]
pub enum MeCommand {
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    #[command(subcommand)]
    Models(ModelsCommand),
}

const CREDENTIALS_HELP: &str = "\
Each run of a task you created uses your credentials for its harness. Values are write-only: \
they are stored encrypted and never shown again; `list` shows names and when they were set.

Variables per harness:
  claude-code  ANTHROPIC_API_KEY, or CLAUDE_CODE_OAUTH_TOKEN (from `claude setup-token`);
               ANTHROPIC_AUTH_TOKEN; ANTHROPIC_BASE_URL (a gateway, not a credential)
  codex        OPENAI_API_KEY or the variable the project's `api_key_env` names (any *_API_KEY),
               or the login file: --file auth.json=@~/.codex/auth.json
  opencode     provider keys (any *_API_KEY: ANTHROPIC_API_KEY, OPENAI_API_KEY, …)

Examples:
  claude setup-token > ~/.config/claude-token   # then:
  atelier me credentials set claude-code --env CLAUDE_CODE_OAUTH_TOKEN=@~/.config/claude-token
  pass show openai | atelier me credentials set codex --env OPENAI_API_KEY=@-
  atelier me credentials list
  atelier me credentials delete codex";

/// Manage your harness credentials (write-only)
#[derive(Subcommand, Debug)]
#[command(after_help = CREDENTIALS_HELP)]
pub enum CredentialsCommand {
    /// Set your credentials for a harness (replaces all you had for it)
    #[command(after_help = CREDENTIALS_HELP)]
    Set(SetArgs),
    /// List your credentials: harness, names, when set (never the values)
    #[command(after_help = CREDENTIALS_HELP)]
    List,
    /// Remove your credentials for a harness
    #[command(after_help = CREDENTIALS_HELP)]
    Delete {
        /// claude-code, codex or opencode
        harness: String,
    },
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// claude-code, codex or opencode
    harness: String,
    /// A variable, its value read from a file: NAME=@FILE (NAME=@- reads stdin); one trailing
    /// newline is dropped
    #[arg(long = "env", value_name = "NAME=@FILE")]
    env: Vec<String>,
    /// A file for the agent's home (codex only: auth.json=@FILE)
    #[arg(long = "file", value_name = "NAME=@FILE")]
    file: Vec<String>,
}

const MODELS_HELP: &str = "\
The model must fit the harness of the project's role for that stage (checked when a run starts: \
a run with a model its harness cannot run fails before it starts, saying so).

Examples:
  atelier me models set plan opus --effort high
  atelier me models set implement claude-sonnet-4-5
  atelier me models unset plan
  atelier me models list";

/// Manage your model (and effort) per stage, overriding the projects' roles for your tasks
#[derive(Subcommand, Debug)]
#[command(after_help = MODELS_HELP)]
pub enum ModelsCommand {
    /// Use MODEL for STAGE in your tasks
    #[command(after_help = MODELS_HELP)]
    Set {
        /// plan, implement, review or pr
        stage: Stage,
        model: String,
        /// The harness's effort/variant (e.g. low, medium, high)
        #[arg(long)]
        effort: Option<String>,
    },
    /// Go back to the project's model for STAGE
    #[command(after_help = MODELS_HELP)]
    Unset { stage: Stage },
    /// Your models per stage
    #[command(after_help = MODELS_HELP)]
    List,
}

pub async fn run(command: MeCommand, global: &GlobalArgs) -> Result<()> {
    let client = Client::new(config::resolve_target(global)?)?;
    match command {
        MeCommand::Credentials(CredentialsCommand::Set(args)) => {
            let mut req = CredentialsRequest::default();
            let mut stdin_used = false;
            for (spec, into) in args
                .env
                .iter()
                .map(|s| (s, false))
                .chain(args.file.iter().map(|s| (s, true)))
            {
                let (name, value) = read_value(spec, &mut stdin_used, into)?;
                if into {
                    req.files.insert(name, value);
                } else {
                    req.env.insert(name, value);
                }
            }
            let view: CredentialView = client
                .put(&format!("/api/me/credentials/{}", args.harness), &req)
                .await?;
            if global.json {
                output::print_json(&view)?;
            } else {
                println!(
                    "Set {} credentials: {}",
                    view.harness,
                    view.names.join(", ")
                );
            }
        }
        MeCommand::Credentials(CredentialsCommand::List) => {
            let views: Vec<CredentialView> = client.get("/api/me/credentials").await?;
            if global.json {
                output::print_json(&views)?;
            } else if views.is_empty() {
                println!("No credentials set: `atelier me credentials set --help` shows how.");
            } else {
                for view in views {
                    println!(
                        "{:<12} {}  (set {})",
                        view.harness,
                        view.names.join(", "),
                        output::when(view.updated_at)
                    );
                }
            }
        }
        MeCommand::Credentials(CredentialsCommand::Delete { harness }) => {
            let _: serde_json::Value = client
                .delete(&format!("/api/me/credentials/{harness}"))
                .await?;
            println!("Removed your {harness} credentials.");
        }
        MeCommand::Models(command) => {
            let mut models: UserModels = client.get("/api/me/models").await?;
            if !matches!(command, ModelsCommand::List) {
                match command {
                    ModelsCommand::Set {
                        stage,
                        model,
                        effort,
                    } => {
                        models.models.insert(stage, UserModel { model, effort });
                    }
                    ModelsCommand::Unset { stage } => {
                        models.models.remove(&stage);
                    }
                    ModelsCommand::List => {}
                }
                models = client.put("/api/me/models", &models).await?;
            }
            if global.json {
                output::print_json(&models)?;
            } else if models.models.is_empty() {
                println!("No models of your own: your tasks use the projects' roles.");
            } else {
                for (stage, m) in &models.models {
                    match &m.effort {
                        Some(effort) => println!("{stage:<10} {} (effort {effort})", m.model),
                        None => println!("{stage:<10} {}", m.model),
                    }
                }
            }
        }
    }
    Ok(())
}

/// `NAME=@FILE` (or `NAME=@-` for stdin, once) → the name and the value read, without one
/// trailing newline. A plain `NAME=value` is refused: values never go on the command line.
fn read_value(spec: &str, stdin_used: &mut bool, file: bool) -> Result<(String, String)> {
    let flag = if file { "--file" } else { "--env" };
    let Some((name, source)) = spec.split_once('=') else {
        bail!("{flag} `{spec}`: write NAME=@FILE (the value is read from FILE, or stdin with @-)");
    };
    let Some(path) = source.strip_prefix('@') else {
        bail!(
            "{flag} {name}: give the value as @FILE or @- (stdin), not on the command line, \
             where other users' `ps` and your shell history would see it"
        );
    };
    let mut value = if path == "-" {
        if std::mem::replace(stdin_used, true) {
            bail!("{flag} {name}: only one value can be read from stdin");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the value from stdin")?;
        text
    } else {
        let path = expand_home(path);
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the value of {name} from {}", path.display()))?
    };
    if !file {
        if value.ends_with('\n') {
            value.pop();
        }
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok((name.to_string(), value))
}

fn expand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(path),
    }
}
