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
        let forge = github_forge(github, secrets)?;
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

fn github_forge(github: &GitHubSettings, secrets: &SecretBox) -> Result<Arc<dyn Forge>> {
    let _ = (github, secrets, TOKEN_NAME, APP_KEY_NAME);
    Err(EngineError::Internal(
        "the GitHub forge is not built in yet".into(),
    ))
}
