//! Which forge a project's pull requests live on: the embedded local forge, or GitHub built from
//! the project's settings with its sealed credentials opened. Forges are kept per project (their
//! ETag cache and GitHub App installation token live in them) and rebuilt when the project's
//! settings change.

use crate::api::{ForgeSettings, GitHubSettings};
use crate::error::{EngineError, Result};
use crate::secrets::SecretBox;
use domain::ProjectId;
use forge::Forge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::ProjectRow;

/// A project's forge and the settings (JSON) it was built from.
type Built = (String, Arc<dyn Forge>);

/// The forges of the projects, built on first use.
#[derive(Default)]
pub(crate) struct Forges {
    built: Mutex<HashMap<ProjectId, Built>>,
}

impl Forges {
    /// The forge of `project`: `local` for the embedded one, else built from its settings.
    pub fn get(
        &self,
        project: &ProjectRow,
        local: &Arc<dyn Forge>,
        secrets: &SecretBox,
        call_timeout: Duration,
    ) -> Result<Arc<dyn Forge>> {
        let settings = crate::settings::parse(&project.settings_json)?;
        let ForgeSettings::Github(github) = &settings.forge else {
            return Ok(Arc::clone(local));
        };
        let mut built = self
            .built
            .lock()
            .map_err(|_| EngineError::Internal("the forge cache is poisoned".into()))?;
        if let Some((json, forge)) = built.get(&project.id)
            && *json == project.settings_json
        {
            return Ok(Arc::clone(forge));
        }
        let forge = github_forge(github, secrets, call_timeout)?;
        built.insert(
            project.id,
            (project.settings_json.clone(), Arc::clone(&forge)),
        );
        Ok(forge)
    }
}

/// Names under which the GitHub secrets are sealed (bound as associated data).
pub(crate) const TOKEN_NAME: &str = "github.token";
pub(crate) const APP_KEY_NAME: &str = "github.app_private_key";
pub(crate) const WEBHOOK_SECRET_NAME: &str = "github.webhook_secret";

/// Opens a sealed setting (plain values of settings not sealed yet are taken as they are).
pub(crate) fn open_secret(secrets: &SecretBox, name: &str, value: &str) -> Result<String> {
    if SecretBox::is_sealed(value) {
        secrets.open(name, value)
    } else {
        Ok(value.to_string())
    }
}

/// A GitHub forge for `github`, its credentials opened from their sealed form.
fn github_forge(
    github: &GitHubSettings,
    secrets: &SecretBox,
    call_timeout: Duration,
) -> Result<Arc<dyn Forge>> {
    let auth = match (&github.token, &github.app_private_key) {
        (Some(token), _) => forge::GitHubAuth::Token(open_secret(secrets, TOKEN_NAME, token)?),
        (None, Some(key)) => forge::GitHubAuth::App {
            app_id: github.app_id.unwrap_or_default(),
            private_key_pem: open_secret(secrets, APP_KEY_NAME, key)?,
            installation_id: github.installation_id.unwrap_or_default(),
        },
        (None, None) => {
            return Err(EngineError::InvalidInput(format!(
                "the GitHub project {}/{} has no credentials: set a token or a GitHub App",
                github.owner, github.repo
            )));
        }
    };
    let mut config = forge::GitHubConfig::new(
        &github.api_url,
        &github.owner,
        &github.repo,
        &github.clone_url,
        auth,
    );
    config.call_timeout = call_timeout;
    let forge = forge::GitHubForge::new(config)
        .map_err(|e| EngineError::InvalidInput(format!("GitHub settings: {e}")))?;
    Ok(Arc::new(forge))
}

/// Seals the GitHub secrets of `settings` that are not sealed yet; true when one was.
pub(crate) fn seal_github(
    secrets: &SecretBox,
    settings: &mut crate::api::ProjectSettings,
) -> Result<bool> {
    let ForgeSettings::Github(github) = &mut settings.forge else {
        return Ok(false);
    };
    let mut changed = false;
    for (name, value) in [
        (TOKEN_NAME, &mut github.token),
        (APP_KEY_NAME, &mut github.app_private_key),
        (WEBHOOK_SECRET_NAME, &mut github.webhook_secret),
    ] {
        if let Some(value) = value
            && !SecretBox::is_sealed(value)
        {
            *value = secrets.seal(name, value)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// `settings` as the API shows them: the GitHub secrets replaced by a placeholder.
pub(crate) fn redact_github(settings: &mut crate::api::ProjectSettings) {
    if let ForgeSettings::Github(github) = &mut settings.forge {
        for value in [
            &mut github.token,
            &mut github.app_private_key,
            &mut github.webhook_secret,
        ]
        .into_iter()
        .flatten()
        {
            *value = crate::views::REDACTED.to_string();
        }
    }
}

/// The GitHub settings of a project whose remote is a GitHub repository: owner, repository, API
/// and clone URLs recognised from the remote's URL (https or ssh form), trust rules kept from
/// `settings` when it already names GitHub, the credentials of `setup`.
pub(crate) async fn github_from_remote(
    repo: &git::Repo,
    settings: &crate::api::ProjectSettings,
    setup: &crate::api::GitHubSetup,
) -> Result<ForgeSettings> {
    let url = repo.remote_url(&settings.remote).await.map_err(|e| {
        EngineError::InvalidInput(format!(
            "--forge github needs the remote `{}`: {e}",
            settings.remote
        ))
    })?;
    let url = url.trim();
    let auth = forge::GitHubAuth::Token(String::new());
    let config =
        forge::GitHubConfig::for_remote(url, setup.api_url.as_deref(), auth).map_err(|e| {
            EngineError::InvalidInput(format!(
                "the remote `{}` ({url}) is not a GitHub repository: {e}; use --forge local",
                settings.remote
            ))
        })?;
    let mut github = match &settings.forge {
        ForgeSettings::Github(given) => (**given).clone(),
        ForgeSettings::Local => GitHubSettings::default(),
    };
    github.api_url = config.api_url;
    github.owner = config.owner;
    github.repo = config.repo;
    github.clone_url = config.clone_url;
    github.token = setup.token.clone();
    github.app_id = setup.app_id;
    github.app_private_key = setup.app_private_key.clone();
    github.installation_id = setup.installation_id;
    if setup.webhook_secret.is_some() {
        github.webhook_secret = setup.webhook_secret.clone();
    }
    Ok(ForgeSettings::Github(Box::new(github)))
}

/// Puts back the stored secrets where `new` carries them as the API shows them (redacted):
/// role `env` values and the GitHub token, App key and webhook secret. A redacted value with
/// nothing stored behind it is an error.
pub(crate) fn keep_redacted(
    new: &mut crate::api::ProjectSettings,
    stored: &crate::api::ProjectSettings,
) -> Result<()> {
    let redacted = crate::views::REDACTED;
    for (stage, role) in new.roles.iter_mut() {
        for (name, value) in role.env.iter_mut() {
            if value == redacted {
                *value = stored
                    .roles
                    .get(stage)
                    .and_then(|r| r.env.get(name))
                    .cloned()
                    .ok_or_else(|| {
                        EngineError::InvalidInput(format!(
                            "roles.{stage}.env.{name} is `{redacted}` but no value is stored for it: give the value"
                        ))
                    })?;
            }
        }
    }
    if let ForgeSettings::Github(github) = &mut new.forge {
        let old = match &stored.forge {
            ForgeSettings::Github(old) => Some(old.as_ref()),
            ForgeSettings::Local => None,
        };
        for (field, value, kept) in [
            (
                "token",
                &mut github.token,
                old.and_then(|o| o.token.clone()),
            ),
            (
                "app_private_key",
                &mut github.app_private_key,
                old.and_then(|o| o.app_private_key.clone()),
            ),
            (
                "webhook_secret",
                &mut github.webhook_secret,
                old.and_then(|o| o.webhook_secret.clone()),
            ),
        ] {
            if value.as_deref() == Some(redacted) {
                *value = Some(kept.ok_or_else(|| {
                    EngineError::InvalidInput(format!(
                        "forge.{field} is `{redacted}` but no value is stored for it: give the value"
                    ))
                })?);
            }
        }
    }
    Ok(())
}
