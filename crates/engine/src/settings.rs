//! Project settings: validation with clear errors, and the values derived from them.

use crate::api::{ProjectSettings, RoleConfig};
use crate::error::{EngineError, Result};
use domain::{Policy, Stage};
use harness::Harness;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Largest port block a project may reserve per task (blocks are laid out on a 100-port grid).
pub(crate) const MAX_PORT_BLOCK: u16 = 100;

pub(crate) fn parse(json: &str) -> Result<ProjectSettings> {
    serde_json::from_str(json)
        .map_err(|e| EngineError::Internal(format!("stored project settings are unreadable: {e}")))
}

pub(crate) fn policy(settings: &ProjectSettings) -> Policy {
    Policy {
        max_review_rounds: settings.max_review_rounds,
        max_total_runs: settings.max_total_runs,
        max_ci_fix_rounds: settings.max_ci_fix_rounds,
        max_conflict_rounds: settings.max_conflict_rounds,
        max_repeated_tool_calls: settings.max_repeated_tool_calls,
    }
}

/// The role of a stage a project does not configure: Claude Code with its `sonnet` alias.
pub(crate) fn default_role() -> RoleConfig {
    RoleConfig {
        harness: "claude-code".into(),
        model: Some("sonnet".into()),
        ..RoleConfig::default()
    }
}

pub(crate) fn role(settings: &ProjectSettings, stage: Stage) -> Result<&RoleConfig, String> {
    settings.roles.get(&stage).ok_or_else(|| {
        format!(
            "the project has no agent for the {stage} stage: set `roles.{stage}` in its settings \
             (e.g. `atelier project add PATH --scripted DIR`)"
        )
    })
}

/// Checks settings before they are stored, each role against its harness (a model that does not
/// belong to the harness fails here, before anything starts).
pub(crate) fn validate(
    settings: &ProjectSettings,
    harnesses: &BTreeMap<&'static str, Arc<dyn Harness>>,
) -> Result<()> {
    let bad = |msg: String| {
        Err(EngineError::InvalidInput(format!(
            "project settings: {msg}"
        )))
    };
    for (stage, role) in &settings.roles {
        let Some(harness) = harnesses.get(role.harness.as_str()) else {
            let names: Vec<&str> = harnesses.keys().copied().collect();
            return bad(format!(
                "roles.{stage}.harness `{}` is not available in this build (available: {})",
                role.harness,
                names.join(", ")
            ));
        };
        let role_settings = serde_json::to_value(role)
            .map_err(|e| EngineError::Internal(format!("role settings: {e}")))?;
        if let Err(err) = harness.check_role(role.model.as_deref(), &role_settings) {
            return bad(format!("roles.{stage}: {err}"));
        }
        if role.session == Some(domain::SessionMode::LongLived) && !harness.long_lived() {
            return bad(format!(
                "roles.{stage}: the {} harness has no long-lived session mode: remove `session` \
                 or set it to \"one-shot\"",
                role.harness
            ));
        }
        if role.harness == "scripted" {
            match &role.scenario {
                None => {
                    return bad(format!(
                        "roles.{stage} uses the scripted harness but has no `scenario` file"
                    ));
                }
                Some(path) if !path.is_absolute() => {
                    return bad(format!(
                        "roles.{stage}.scenario must be an absolute path, got {}",
                        path.display()
                    ));
                }
                Some(path) if !path.is_file() => {
                    return bad(format!(
                        "roles.{stage}.scenario {} does not exist",
                        path.display()
                    ));
                }
                Some(_) => {}
            }
        }
        for name in role.env.keys() {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return bad(format!(
                    "roles.{stage}.env: `{name}` is not a variable name"
                ));
            }
            if crate::confine::RESERVED_ENV.contains(&name.as_str()) {
                return bad(format!(
                    "roles.{stage}.env: `{name}` is set by Atelier for every agent and cannot be overridden"
                ));
            }
        }
        if role.timeout_secs == Some(0) {
            return bad(format!("roles.{stage}.timeout_secs must be at least 1"));
        }
    }
    if settings.slots == 0 {
        return bad("slots must be at least 1".into());
    }
    if settings.port_block == 0 || settings.port_block > MAX_PORT_BLOCK {
        return bad(format!("port_block must be between 1 and {MAX_PORT_BLOCK}"));
    }
    if settings.max_review_rounds == 0 || settings.max_total_runs == 0 {
        return bad("max_review_rounds and max_total_runs must be at least 1".into());
    }
    if settings.max_repeated_tool_calls < 2 {
        return bad(format!(
            "max_repeated_tool_calls must be at least 2 (it is {}): one call is not a repetition",
            settings.max_repeated_tool_calls
        ));
    }
    for (key, text) in &settings.prompts {
        crate::prompt::check_project_prompt(key, text).or_else(bad)?;
    }
    if let Err(err) = crate::task_pipeline::check_settings(settings) {
        return bad(err);
    }
    if let crate::api::ForgeSettings::Github(github) = &settings.forge {
        validate_github(github).or_else(bad)?;
    }
    if settings.remote.is_empty() || settings.remote.starts_with('-') {
        return bad(format!(
            "remote `{}` is not a valid remote name",
            settings.remote
        ));
    }
    for file in &settings.env_files {
        let path = Path::new(file);
        let escapes = path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)));
        if file.is_empty() || escapes {
            return bad(format!(
                "env file `{file}` must be a relative path inside the repository (no `..`, not absolute)"
            ));
        }
    }
    Ok(())
}

/// Checks a project's GitHub settings: a repository, one way to authenticate, sane windows.
fn validate_github(github: &crate::api::GitHubSettings) -> Result<(), String> {
    let named = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !named(&github.owner) || !named(&github.repo) {
        return Err(format!(
            "forge.owner/forge.repo `{}/{}` is not a GitHub repository name",
            github.owner, github.repo
        ));
    }
    for (field, url) in [
        ("api_url", &github.api_url),
        ("clone_url", &github.clone_url),
    ] {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "forge.{field} `{url}` must be an http(s) URL (the server pushes over HTTPS with its token)"
            ));
        }
    }
    let app = (
        github.app_id.is_some(),
        github.app_private_key.is_some(),
        github.installation_id.is_some(),
    );
    match (github.token.is_some(), app) {
        (true, (false, false, false)) | (false, (true, true, true)) => {}
        (true, _) => {
            return Err(
                "forge: give either a token or a GitHub App (app_id, app_private_key, installation_id), not both"
                    .into(),
            );
        }
        (false, (false, false, false)) => {
            return Err(
                "forge: GitHub needs credentials: a token (`--github-token-file`) or a GitHub App (`--github-app-id`, `--github-app-key-file`, `--github-installation`)"
                    .into(),
            );
        }
        (false, _) => {
            return Err(
                "forge: a GitHub App needs all of app_id, app_private_key and installation_id"
                    .into(),
            );
        }
    }
    if !github.trigger.starts_with('@') || github.trigger.len() < 2 {
        return Err(format!(
            "forge.trigger `{}` must be a mention such as `@atelier`",
            github.trigger
        ));
    }
    if github.poll_secs == 0 {
        return Err("forge.poll_secs must be at least 1".into());
    }
    Ok(())
}
