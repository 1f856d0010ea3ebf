//! `atelier project …`: register git repositories with the server and list them.

use crate::GlobalArgs;
use crate::client::Client;
use crate::config;
use crate::output;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use domain::Stage;
use engine::api::{GitHubSetup, NewProject, ProjectSettings, ProjectView, RoleConfig};
use harness::scenario::Scenario;
use std::path::{Path, PathBuf};

/// Manage projects (the git repositories agents work on)
#[derive(Subcommand, Debug)]
#[command(
    after_help = "Example:\n  atelier project add ~/src/web --name web\n  atelier project list\n  \
                  atelier project set web --config web-settings.json"
)]
pub enum ProjectCommand {
    Add(Box<AddArgs>),
    List(ListArgs),
    Set(SetArgs),
}

/// Replace a project's settings
#[derive(Args, Debug)]
#[command(after_help = "\
The file holds the whole settings (as `atelier --json project list` shows them); they are \
validated as at `project add`. Secrets are write-only: a value shown as `(redacted)` keeps the \
stored one.

Example:
  atelier --json project list | jq '.[0].settings' > web.json   # edit, then:
  atelier project set web --config web.json")]
pub struct SetArgs {
    /// The project's name or id
    project: String,
    /// The new settings as a JSON file
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

const ADD_HELP: &str = "\
The repository must be a git repository with a default branch and a remote (default `origin`). \
Without --config or --scripted the project has no roles yet, so no stage can run.

GitHub: with --forge github (or any --github-* credential) the repository is recognised from the \
remote's URL (https or ssh form) and pull requests are opened there; credentials are read from \
files (never the command line) and stored encrypted. Without them the embedded local forge is \
used (--forge local). See docs/github.md.

Examples:
  atelier project add ~/src/web --name web --config web-settings.json
  atelier project add ~/src/api --forge github --github-token-file ~/.config/gh-token \
      --webhook-secret-file ~/.config/gh-webhook-secret
  atelier project add . --scripted ./scenarios   # simulated agents: plan.json, implement.json, review.json, pr.json";

/// Register a git repository as a project
#[derive(Args, Debug)]
#[command(after_help = ADD_HELP)]
pub struct AddArgs {
    /// Path to the repository (made absolute before it is sent)
    path: PathBuf,
    /// Name used to refer to the project [default: chosen by the server from the path]
    #[arg(long)]
    name: Option<String>,
    /// Use simulated agents: DIR holds plan.json, implement.json, review.json and pr.json
    #[arg(long, value_name = "DIR")]
    scripted: Option<PathBuf>,
    /// Project settings as a JSON file (roles per stage, remote, env files, setup hook, caps)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where pull requests live [default: github when GitHub credentials are given, else local]
    #[arg(long, value_enum)]
    forge: Option<ForgeKind>,
    /// GitHub REST API URL [default: from the remote: https://api.github.com, or
    /// https://HOST/api/v3 for GitHub Enterprise Server]
    #[arg(long, value_name = "URL")]
    github_api_url: Option<String>,
    /// File holding a GitHub token (fine-grained: contents, pull requests, checks, actions read)
    #[arg(long, value_name = "FILE")]
    github_token_file: Option<PathBuf>,
    /// GitHub App id (with --github-app-key-file and --github-installation)
    #[arg(long, value_name = "ID")]
    github_app_id: Option<u64>,
    /// File holding the GitHub App's private key (PEM)
    #[arg(long, value_name = "FILE")]
    github_app_key_file: Option<PathBuf>,
    /// The App's installation id on the repository's account
    #[arg(long, value_name = "ID")]
    github_installation: Option<u64>,
    /// File holding the secret GitHub signs webhook deliveries with
    #[arg(long, value_name = "FILE")]
    webhook_secret_file: Option<PathBuf>,
}

/// Where a project's pull requests live.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ForgeKind {
    /// The embedded forge: the task branch pushed to the project's remote
    Local,
    /// GitHub or GitHub Enterprise Server
    Github,
}

/// List the projects of the server
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  atelier project list --json")]
pub struct ListArgs {}

pub async fn run(command: ProjectCommand, global: &GlobalArgs) -> Result<()> {
    match command {
        ProjectCommand::Add(args) => add(*args, global).await,
        ProjectCommand::Set(args) => {
            let settings = read_settings(&args.config)?;
            let client = Client::new(config::resolve_target(global)?)?;
            let path = format!("/api/projects/{}/settings", args.project);
            let project: ProjectView = client
                .put(&path, &settings)
                .await
                .with_context(|| format!("cannot change the settings of {}", args.project))?;
            if global.json {
                return output::print_json(&project);
            }
            println!("updated the settings of project {}", project.name);
            Ok(())
        }
        ProjectCommand::List(ListArgs {}) => {
            let client = Client::new(config::resolve_target(global)?)?;
            let projects: Vec<ProjectView> = client.get_all("/api/projects").await?;
            if global.json {
                output::print_json(&projects)
            } else {
                print!("{}", output::projects(&projects));
                Ok(())
            }
        }
    }
}

async fn add(args: AddArgs, global: &GlobalArgs) -> Result<()> {
    // Everything local is checked before the server is contacted.
    let path = args.path.canonicalize().with_context(|| {
        format!(
            "project path {} does not exist: give the path of a git repository",
            args.path.display()
        )
    })?;
    let mut settings = match &args.config {
        Some(file) => Some(read_settings(file)?),
        None => None,
    };
    if let Some(dir) = &args.scripted {
        let roles = scripted_roles(dir)?;
        settings
            .get_or_insert_with(ProjectSettings::default)
            .roles
            .extend(roles);
    }
    let github = github_setup(&args)?;
    let request = NewProject {
        path: path.display().to_string(),
        name: args.name,
        settings,
        github,
    };

    let client = Client::new(config::resolve_target(global)?)?;
    let project: ProjectView = client
        .post("/api/projects", &request)
        .await
        .with_context(|| format!("cannot add project {}", path.display()))?;
    if global.json {
        return output::print_json(&project);
    }
    let stages: Vec<&str> = project.settings.roles.keys().map(|s| s.as_str()).collect();
    println!(
        "added project {} (id {}) at {}, default branch {}",
        project.name, project.id, project.path, project.default_branch
    );
    if stages.is_empty() {
        println!(
            "no roles configured yet: no stage can run until the settings give each stage a role"
        );
    } else {
        println!("roles: {}", stages.join(", "));
    }
    Ok(())
}

/// The GitHub credentials the flags name, read from their files; `None` for the local forge.
fn github_setup(args: &AddArgs) -> Result<Option<GitHubSetup>> {
    let read = |file: &Option<PathBuf>, what: &str| -> Result<Option<String>> {
        file.as_ref()
            .map(|file| {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the {what} file {}", file.display()))?;
                let text = text.trim().to_string();
                if text.is_empty() {
                    bail!("the {what} file {} is empty", file.display());
                }
                Ok(text)
            })
            .transpose()
    };
    let setup = GitHubSetup {
        api_url: args.github_api_url.clone(),
        token: read(&args.github_token_file, "GitHub token")?,
        app_id: args.github_app_id,
        app_private_key: read(&args.github_app_key_file, "GitHub App key")?,
        installation_id: args.github_installation,
        webhook_secret: read(&args.webhook_secret_file, "webhook secret")?,
    };
    let credentials =
        setup.token.is_some() || setup.app_id.is_some() || setup.app_private_key.is_some();
    match args.forge {
        Some(ForgeKind::Local) if credentials || setup.webhook_secret.is_some() => {
            bail!("--forge local takes no GitHub credentials or webhook secret")
        }
        Some(ForgeKind::Local) => Ok(None),
        Some(ForgeKind::Github) if !credentials => bail!(
            "--forge github needs credentials: --github-token-file FILE, or --github-app-id, \
             --github-app-key-file and --github-installation"
        ),
        Some(ForgeKind::Github) => Ok(Some(setup)),
        None if credentials => Ok(Some(setup)),
        None => Ok(None),
    }
}

fn read_settings(file: &Path) -> Result<ProjectSettings> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the settings file {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "invalid project settings in {}: see `ProjectSettings` in the docs",
            file.display()
        )
    })
}

/// A scripted role for every stage of the standard pipeline, and for each other stage whose
/// scenario is there, playing `DIR/<stage>.json` (each checked to load).
pub fn scripted_roles(dir: &Path) -> Result<Vec<(Stage, RoleConfig)>> {
    let mut roles = scripted_roles_for(dir, &Stage::STANDARD)?;
    let more: Vec<Stage> = Stage::ALL
        .into_iter()
        .filter(|s| !Stage::STANDARD.contains(s) && dir.join(format!("{s}.json")).is_file())
        .collect();
    roles.extend(scripted_roles_for(dir, &more)?);
    Ok(roles)
}

/// A scripted role for each of `stages`, playing `DIR/<stage>.json` (each checked to load).
pub fn scripted_roles_for(dir: &Path, stages: &[Stage]) -> Result<Vec<(Stage, RoleConfig)>> {
    let dir = std::path::absolute(dir)
        .with_context(|| format!("cannot make {} absolute", dir.display()))?;
    if !dir.is_dir() {
        bail!("scenario directory {} does not exist", dir.display());
    }
    let needed: Vec<String> = stages.iter().map(|s| format!("{s}.json")).collect();
    stages
        .iter()
        .map(|&stage| {
            let file = dir.join(format!("{stage}.json"));
            if !file.is_file() {
                bail!(
                    "scenario file {} does not exist: the scenario directory needs {}",
                    file.display(),
                    needed.join(", ")
                );
            }
            Scenario::load(&file)?;
            let role = RoleConfig {
                harness: "scripted".into(),
                scenario: Some(file),
                ..RoleConfig::default()
            };
            Ok((stage, role))
        })
        .collect()
}
