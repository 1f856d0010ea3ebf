//! `atelier prompt …` (administrators): the instance's stage prompts and plan template. List
//! them, print the text in force of one, override one with a file's text (the server checks it
//! as at load: an unknown variable is refused, naming its line), or put the built-in text back.
//! The web UI's prompt editor does the same through the same API (`/api/prompts`).

use crate::GlobalArgs;
use crate::client::Client;
use crate::{config, output};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use engine::api::PromptView;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The instance's prompts (administrators)
#[derive(Subcommand, Debug)]
#[command(after_help = "\
Examples:
  atelier prompt list
  atelier prompt show plan.md > plan.md
  atelier prompt set plan.md --from plan.md
  atelier prompt reset plan.md

A project's own prompts are its settings' `prompts` (`atelier project set --help`).")]
pub enum PromptCommand {
    /// List the prompts: whether each is overridden, and the variables it may use
    List,
    /// Print the text in force of one prompt
    Show {
        /// The prompt, e.g. `plan.md` (`atelier prompt list` names them)
        name: String,
    },
    /// Override a prompt with a file's text
    Set {
        /// The prompt, e.g. `plan.md`
        name: String,
        /// The file holding the new text (`-`: read stdin)
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Remove a prompt's override: the built-in text is in force again
    Reset {
        /// The prompt, e.g. `plan.md`
        name: String,
    },
}

pub async fn run(command: PromptCommand, global: &GlobalArgs) -> Result<()> {
    let client = Client::new(config::resolve_target(global)?)?;
    let (prompt, what) = match command {
        PromptCommand::List => {
            let prompts: Vec<PromptView> = client.get("/api/prompts").await?;
            if global.json {
                return output::print_json(&prompts);
            }
            for prompt in prompts {
                let variables = prompt
                    .variables
                    .iter()
                    .map(|v| format!("{{{{{v}}}}}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let origin = if prompt.overridden {
                    "overridden"
                } else {
                    "built-in"
                };
                println!("{:<18} {origin:<10}  {variables}", prompt.file);
            }
            return Ok(());
        }
        PromptCommand::Show { name } => {
            let prompts: Vec<PromptView> = client.get("/api/prompts").await?;
            let Some(prompt) = prompts.into_iter().find(|p| p.file == name) else {
                bail!("there is no prompt `{name}`: `atelier prompt list` names them");
            };
            if global.json {
                return output::print_json(&prompt);
            }
            print!("{}", prompt.text);
            if !prompt.text.ends_with('\n') {
                println!();
            }
            return Ok(());
        }
        PromptCommand::Set { name, from } => {
            let text = read_text(&from)?;
            let path = prompt_path(&name)?;
            let prompt: PromptView = client.put(&path, &json!({ "text": text })).await?;
            (prompt, "overridden")
        }
        PromptCommand::Reset { name } => {
            let path = prompt_path(&name)?;
            let prompt: PromptView = client.delete(&path).await?;
            (prompt, "back to its built-in text")
        }
    };
    if global.json {
        return output::print_json(&prompt);
    }
    println!("prompt {}: {what}", prompt.file);
    Ok(())
}

/// `/api/prompts/<name>`, for a name that is one path segment: a prompt's name is a file name
/// (`plan.md`), and anything else (`../x`, `a/b`) would name another route.
fn prompt_path(name: &str) -> Result<String> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        bail!("there is no prompt `{name}`: `atelier prompt list` names them");
    }
    Ok(format!("/api/prompts/{name}"))
}

/// The text of `from` (`-`: stdin), which must not be empty.
fn read_text(from: &Path) -> Result<String> {
    let text = if from.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the prompt from stdin")?;
        text
    } else {
        std::fs::read_to_string(from)
            .with_context(|| format!("cannot read the prompt file {}", from.display()))?
    };
    if text.trim().is_empty() {
        bail!("the new text is empty: `atelier prompt reset` puts the built-in text back");
    }
    Ok(text)
}
