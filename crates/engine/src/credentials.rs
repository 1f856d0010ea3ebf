//! Each user's own agent credentials and models. A user stores their harness credentials
//! (`PUT /api/me/credentials/{harness}`): the values are sealed at once with the instance's
//! [`SecretBox`], bound to user, harness and variable name, and never shown again — listing
//! gives names and when they were set. A run of a task the user owns gets them, opened only in
//! the dispatcher ([`for_run`]) and merged over the project role's `env` (the user's win), and
//! the user's model/effort for the stage instead of the role's. A run whose owner has no
//! credentials for its harness — and whose role's `env` gives none either — fails before
//! anything starts, saying which variables and where to set them.
//!
//! Tasks without an owner (made by the server itself, or before accounts) run as before, on the
//! role alone. The scripted harness needs no credentials.

use crate::api::{CredentialView, CredentialsRequest, RoleConfig, UserModel, UserModels};
use crate::error::{EngineError, Result};
use crate::facade::Engine;
use crate::secrets::SecretBox;
use domain::Stage;
use store::{CredentialRow, Tx, UserId, UserModelRow};

/// The harnesses that take credentials.
pub(crate) const HARNESSES: [&str; 3] = ["claude-code", "codex", "opencode"];
/// Codex's login file, stored as a file credential and written to `~/.codex/auth.json`.
pub(crate) const CODEX_AUTH_FILE: &str = "auth.json";
/// Longest value (a key, a token, a login file) accepted.
const MAX_VALUE: usize = 64 * 1024;
/// Most variables per harness.
const MAX_NAMES: usize = 16;

/// Claude Code's credential variables: an API key, or the subscription token of
/// `claude setup-token`, or a bearer token for a gateway.
const CLAUDE_KEYS: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_AUTH_TOKEN",
];

/// Whether `name` is a provider key variable (`…_API_KEY`): OpenAI's, Anthropic's, OpenRouter's
/// …, and the variables projects name with `api_key_env` (e.g. `ATELIER_CODEX_API_KEY`).
fn is_api_key_name(name: &str) -> bool {
    name.len() > "_API_KEY".len()
        && name.ends_with("_API_KEY")
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !crate::confine::RESERVED_ENV.contains(&name)
}

/// Whether `harness` takes the variable `name` from a user. `ANTHROPIC_BASE_URL` is allowed for
/// Claude Code so a user can point it at a gateway (and the tests at the model simulator); it is
/// not a credential by itself.
fn allowed_name(harness: &str, name: &str) -> bool {
    match harness {
        "claude-code" => CLAUDE_KEYS.contains(&name) || name == "ANTHROPIC_BASE_URL",
        "codex" | "opencode" => is_api_key_name(name),
        _ => false,
    }
}

/// What a harness's credentials look like, for messages.
fn expected(harness: &str) -> &'static str {
    match harness {
        "claude-code" => {
            "ANTHROPIC_API_KEY, or CLAUDE_CODE_OAUTH_TOKEN (from `claude setup-token`)"
        }
        "codex" => {
            "OPENAI_API_KEY (or the key variable the project's `api_key_env` names), or the login file auth.json"
        }
        _ => {
            "a provider key such as ANTHROPIC_API_KEY or OPENAI_API_KEY (or the variable the project's `api_key_env` names)"
        }
    }
}

fn check_harness(harness: &str) -> Result<()> {
    if HARNESSES.contains(&harness) {
        Ok(())
    } else {
        Err(EngineError::InvalidInput(format!(
            "harness `{harness}` takes no credentials: use one of {}",
            HARNESSES.join(", ")
        )))
    }
}

/// Checks a credentials request for `harness` (names and sizes only; values are never echoed).
fn check_request(harness: &str, req: &CredentialsRequest) -> Result<()> {
    let bad = |msg: String| {
        Err(EngineError::InvalidInput(format!(
            "credentials for {harness}: {msg}"
        )))
    };
    if req.env.is_empty() && req.files.is_empty() {
        return bad("give at least one variable (`env`); to remove them, DELETE /api/me/credentials/{harness}".into());
    }
    if req.env.len() + req.files.len() > MAX_NAMES {
        return bad(format!("at most {MAX_NAMES} variables"));
    }
    for name in req.env.keys() {
        if !allowed_name(harness, name) {
            return bad(format!(
                "`{name}` is not a {harness} credential variable: use {}{}",
                expected(harness),
                if harness == "claude-code" {
                    ", and ANTHROPIC_BASE_URL for a gateway"
                } else {
                    ""
                }
            ));
        }
    }
    for name in req.files.keys() {
        if harness != "codex" || name != CODEX_AUTH_FILE {
            return bad(format!(
                "file `{name}` is not taken: only codex takes a file, its login `{CODEX_AUTH_FILE}`"
            ));
        }
    }
    for (name, value) in req.env.iter().chain(&req.files) {
        if value.is_empty() || value.len() > MAX_VALUE || value.contains('\0') {
            return bad(format!(
                "the value of `{name}` must be 1 to {MAX_VALUE} bytes without NUL characters"
            ));
        }
        if req.env.contains_key(name) && value.chars().any(|c| c == '\n' || c == '\r') {
            return bad(format!(
                "the value of `{name}` has a line break (a file read with a trailing newline is trimmed by the CLI)"
            ));
        }
    }
    Ok(())
}

/// The associated data a user's credential is sealed with: it opens for that user, harness and
/// name only (a row copied to another user or variable does not open).
fn bound(user: UserId, harness: &str, name: &str) -> String {
    format!("user:{user}/{harness}/{name}")
}

fn check_model_text(stage: Stage, what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty()
        || value.len() > 200
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(EngineError::InvalidInput(format!(
            "models.{stage}.{what} `{value}` must be 1-200 characters without spaces"
        )));
    }
    Ok(())
}

fn views(rows: Vec<CredentialRow>) -> Vec<CredentialView> {
    let mut out: Vec<CredentialView> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(view) if view.harness == row.harness => {
                view.names.push(row.name);
                view.updated_at = view.updated_at.max(row.updated_at);
            }
            _ => out.push(CredentialView {
                harness: row.harness,
                names: vec![row.name],
                updated_at: row.updated_at,
            }),
        }
    }
    out
}

fn models_view(rows: Vec<UserModelRow>) -> UserModels {
    UserModels {
        models: rows
            .into_iter()
            .map(|r| {
                (
                    r.stage,
                    UserModel {
                        model: r.model,
                        effort: r.effort,
                    },
                )
            })
            .collect(),
    }
}

impl Engine {
    /// Sets the caller's credentials for `harness` (replacing all they had for it), sealed.
    pub fn set_credentials(
        &self,
        harness: &str,
        req: &CredentialsRequest,
    ) -> Result<CredentialView> {
        let who = self.identity()?;
        check_harness(harness)?;
        check_request(harness, req)?;
        let sealed = req
            .env
            .iter()
            .chain(&req.files)
            .map(|(name, value)| {
                Ok((
                    name.clone(),
                    self.inner
                        .secrets
                        .seal(&bound(who.user, harness, name), value)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = self.inner.store.write(|tx| {
            tx.replace_credentials(who.user, harness, &sealed)?;
            let names: Vec<&str> = sealed.iter().map(|(n, _)| n.as_str()).collect();
            self.audit_in(tx, "credentials.set", harness, Some(&names.join(", ")))?;
            Ok::<_, EngineError>(tx.credentials_of(who.user, Some(harness))?)
        })?;
        views(rows)
            .pop()
            .ok_or_else(|| EngineError::Internal("the credentials just stored are missing".into()))
    }

    /// The caller's credentials: harness, names and when they were set (never the values).
    pub fn list_credentials(&self) -> Result<Vec<CredentialView>> {
        let who = self.identity()?;
        let rows = self
            .inner
            .store
            .read(|tx| tx.credentials_of(who.user, None))?;
        Ok(views(rows))
    }

    /// Removes the caller's credentials for `harness`.
    pub fn delete_credentials(&self, harness: &str) -> Result<()> {
        let who = self.identity()?;
        check_harness(harness)?;
        self.inner.store.write(|tx| {
            if tx.delete_credentials(who.user, harness)? == 0 {
                return Err(EngineError::NotFound(format!(
                    "you have no credentials for {harness}"
                )));
            }
            self.audit_in(tx, "credentials.delete", harness, None)
        })
    }

    /// The caller's models per stage.
    pub fn user_models(&self) -> Result<UserModels> {
        let who = self.identity()?;
        Ok(models_view(
            self.inner.store.read(|tx| tx.user_models(who.user))?,
        ))
    }

    /// Replaces the caller's models per stage (checked against each harness when a run starts:
    /// the same model may serve projects on different harnesses).
    pub fn set_user_models(&self, req: &UserModels) -> Result<UserModels> {
        let who = self.identity()?;
        for (stage, m) in &req.models {
            check_model_text(*stage, "model", &m.model)?;
            if let Some(effort) = &m.effort {
                check_model_text(*stage, "effort", effort)?;
            }
        }
        let rows = self.inner.store.write(|tx| {
            for row in tx.user_models(who.user)? {
                tx.set_user_model(who.user, row.stage, None)?;
            }
            for (stage, m) in &req.models {
                tx.set_user_model(who.user, *stage, Some((&m.model, m.effort.as_deref())))?;
            }
            let detail: Vec<String> = req
                .models
                .iter()
                .map(|(stage, m)| format!("{stage}={}", m.model))
                .collect();
            self.audit_in(tx, "models.set", &who.login, Some(&detail.join(", ")))?;
            Ok::<_, EngineError>(tx.user_models(who.user)?)
        })?;
        Ok(models_view(rows))
    }
}

/// What a task's owner brings to its runs, read in the dispatcher's transaction (still sealed).
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub user: UserId,
    pub login: String,
    credentials: Vec<CredentialRow>,
    models: Vec<UserModelRow>,
}

/// The owner of `task` and what they set, or `None` for a task nobody owns.
pub(crate) fn owner_of(tx: &Tx<'_>, task: domain::TaskId) -> Result<Option<Owner>> {
    let Some(user) = tx.task_owner(task)? else {
        return Ok(None);
    };
    let Some(row) = tx.user(user)? else {
        return Ok(None);
    };
    Ok(Some(Owner {
        user,
        login: row.login,
        credentials: tx.credentials_of(user, None)?,
        models: tx.user_models(user)?,
    }))
}

/// What a run is given: its role with credentials opened (the owner's over the role's) and the
/// owner's model; and codex's login file when the owner set one.
#[derive(Debug)]
pub(crate) struct ForRun {
    pub role: RoleConfig,
    pub codex_auth: Option<String>,
}

/// Whether the role (opened) already gives the harness a credential.
fn role_has_credentials(role: &RoleConfig) -> bool {
    let named = role.api_key_env.as_deref();
    let has = |name: &str| role.env.get(name).is_some_and(|v| !v.is_empty());
    match role.harness.as_str() {
        "claude-code" => CLAUDE_KEYS.iter().any(|k| has(k)),
        "codex" | "opencode" => {
            named.is_some_and(has) || role.env.keys().any(|k| is_api_key_name(k) && has(k))
        }
        _ => true,
    }
}

/// The role a run of `stage` gets: `role` with its `env` opened, then, for an owned task, the
/// owner's credentials for the harness merged over it and the owner's model for the stage. An
/// `Err` is the reason the run fails before it starts.
pub(crate) fn for_run(
    secrets: &SecretBox,
    role: &RoleConfig,
    stage: Stage,
    owner: Option<&Owner>,
    harness: &dyn harness::Harness,
) -> std::result::Result<ForRun, String> {
    let mut role = secrets.open_role(role).map_err(|e| e.to_string())?;
    let Some(owner) = owner else {
        return Ok(ForRun {
            role,
            codex_auth: None,
        });
    };
    if !HARNESSES.contains(&role.harness.as_str()) {
        return Ok(ForRun {
            role,
            codex_auth: None,
        });
    }
    let mut codex_auth = None;
    let mut own_credential = false;
    for row in owner
        .credentials
        .iter()
        .filter(|c| c.harness == role.harness)
    {
        let value = secrets
            .open(
                &bound(owner.user, &row.harness, &row.name),
                &row.sealed_value,
            )
            .map_err(|e| format!("{e} (`atelier me credentials set {}`)", row.harness))?;
        if row.name == CODEX_AUTH_FILE {
            codex_auth = Some(value);
            own_credential = true;
        } else {
            own_credential |= row.name != "ANTHROPIC_BASE_URL";
            role.env.insert(row.name.clone(), value);
        }
    }
    if !own_credential && !role_has_credentials(&role) {
        let h = &role.harness;
        return Err(format!(
            "{login} (the task's owner) has no credentials for the {h} harness of the {stage} \
             stage: set {expected} with `atelier me credentials set {h} --env NAME=@FILE` \
             (PUT /api/me/credentials/{h}), then resume the task",
            login = owner.login,
            expected = expected(h),
        ));
    }
    if let Some(own) = owner.models.iter().find(|m| m.stage == stage) {
        role.model = Some(own.model.clone());
        if own.effort.is_some() {
            role.effort.clone_from(&own.effort);
        }
        let settings = serde_json::to_value(&role).map_err(|e| e.to_string())?;
        harness
            .check_role(role.model.as_deref(), &settings)
            .map_err(|e| {
                format!(
                    "the model `{}` {} set for the {stage} stage does not fit the {} harness of \
                     this project: {e}; change it with `atelier me models set {stage} MODEL` \
                     (PUT /api/me/models)",
                    own.model, owner.login, role.harness
                )
            })?;
    }
    Ok(ForRun { role, codex_auth })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn owner(secrets: &SecretBox, creds: &[(&str, &str, &str)]) -> Owner {
        let user = UserId(7);
        Owner {
            user,
            login: "ann".into(),
            credentials: creds
                .iter()
                .map(|(h, n, v)| CredentialRow {
                    harness: (*h).into(),
                    name: (*n).into(),
                    sealed_value: secrets.seal(&bound(user, h, n), v).unwrap(),
                    updated_at: 1,
                })
                .collect(),
            models: vec![],
        }
    }

    fn claude() -> harness::claude::ClaudeHarness {
        harness::claude::ClaudeHarness::new("/bin/false")
    }

    fn role(env: &[(&str, &str)]) -> RoleConfig {
        RoleConfig {
            harness: "claude-code".into(),
            model: Some("sonnet".into()),
            env: env
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ..RoleConfig::default()
        }
    }

    #[test]
    fn sealed_credentials_open_only_for_their_user_harness_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::open_or_create(dir.path()).unwrap();
        let sealed = sb
            .seal(&bound(UserId(1), "codex", "OPENAI_API_KEY"), "sk-canary")
            .unwrap();
        assert!(!sealed.contains("sk-canary"));
        assert_eq!(
            sb.open(&bound(UserId(1), "codex", "OPENAI_API_KEY"), &sealed)
                .unwrap(),
            "sk-canary"
        );
        for other in [
            bound(UserId(2), "codex", "OPENAI_API_KEY"),
            bound(UserId(1), "opencode", "OPENAI_API_KEY"),
            bound(UserId(1), "codex", "SIM_API_KEY"),
            "OPENAI_API_KEY".to_string(),
        ] {
            assert!(sb.open(&other, &sealed).is_err(), "{other}");
        }
    }

    #[test]
    fn names_are_checked_per_harness() {
        let req = |names: &[&str]| CredentialsRequest {
            env: names.iter().map(|n| ((*n).into(), "v".into())).collect(),
            files: BTreeMap::new(),
        };
        assert!(
            check_request(
                "claude-code",
                &req(&["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"])
            )
            .is_ok()
        );
        assert!(check_request("claude-code", &req(&["CLAUDE_CODE_OAUTH_TOKEN"])).is_ok());
        assert!(check_request("claude-code", &req(&["OPENAI_API_KEY"])).is_err());
        assert!(check_request("claude-code", &req(&["PATH"])).is_err());
        assert!(check_request("codex", &req(&["OPENAI_API_KEY", "SIM_API_KEY"])).is_ok());
        assert!(check_request("codex", &req(&["HOME"])).is_err());
        assert!(check_request("opencode", &req(&["OPENROUTER_API_KEY"])).is_ok());
        assert!(check_request("opencode", &req(&["_API_KEY"])).is_err());
        assert!(check_request("opencode", &req(&["lower_API_KEY"])).is_err());
        assert!(check_request("codex", &req(&[])).is_err());
        assert!(check_harness("scripted").is_err());
        let mut file = req(&[]);
        file.files.insert("auth.json".into(), "{}".into());
        assert!(check_request("codex", &file).is_ok());
        assert!(check_request("opencode", &file).is_err());
        let mut newline = req(&[]);
        newline.env.insert("OPENAI_API_KEY".into(), "sk\n".into());
        let err = check_request("codex", &newline).unwrap_err().to_string();
        assert!(!err.contains("sk\n"), "values are never echoed: {err}");
        let shown = format!("{:?}", req(&["OPENAI_API_KEY"]));
        assert!(!shown.contains("\"v\""), "Debug hides values: {shown}");
    }

    #[test]
    fn the_owner_s_credentials_win_and_their_absence_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::open_or_create(dir.path()).unwrap();
        let h = claude();
        let ann = owner(
            &sb,
            &[
                ("claude-code", "ANTHROPIC_API_KEY", "sk-ann"),
                ("codex", "OPENAI_API_KEY", "sk-x"),
            ],
        );
        let out = for_run(
            &sb,
            &role(&[("ANTHROPIC_API_KEY", "sk-role")]),
            Stage::Plan,
            Some(&ann),
            &h,
        )
        .unwrap();
        assert_eq!(out.role.env["ANTHROPIC_API_KEY"], "sk-ann");
        assert!(
            !out.role.env.contains_key("OPENAI_API_KEY"),
            "only the harness's own"
        );
        // No owner: the role alone, as before.
        let out = for_run(&sb, &role(&[]), Stage::Plan, None, &h).unwrap();
        assert!(out.role.env.is_empty());
        // An owner without credentials, a role without any: fails, saying where to set them.
        let bob = owner(
            &sb,
            &[("claude-code", "ANTHROPIC_BASE_URL", "http://127.0.0.1:1")],
        );
        let err = for_run(&sb, &role(&[]), Stage::Plan, Some(&bob), &h).unwrap_err();
        assert!(
            err.contains("claude-code") && err.contains("ANTHROPIC_API_KEY"),
            "{err}"
        );
        assert!(
            err.contains("atelier me credentials set claude-code"),
            "{err}"
        );
        assert!(err.contains("PUT /api/me/credentials/claude-code"), "{err}");
        // … unless the role's env (a service setup) gives one.
        assert!(
            for_run(
                &sb,
                &role(&[("ANTHROPIC_API_KEY", "sk-role")]),
                Stage::Plan,
                Some(&bob),
                &h
            )
            .is_ok()
        );
    }

    #[test]
    fn the_owner_s_model_overrides_the_role_s_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::open_or_create(dir.path()).unwrap();
        let h = claude();
        let mut ann = owner(&sb, &[("claude-code", "ANTHROPIC_API_KEY", "sk-ann")]);
        ann.models.push(UserModelRow {
            stage: Stage::Plan,
            model: "opus".into(),
            effort: Some("high".into()),
            updated_at: 1,
        });
        let out = for_run(&sb, &role(&[]), Stage::Plan, Some(&ann), &h).unwrap();
        assert_eq!(
            (out.role.model.as_deref(), out.role.effort.as_deref()),
            (Some("opus"), Some("high"))
        );
        let out = for_run(&sb, &role(&[]), Stage::Review, Some(&ann), &h).unwrap();
        assert_eq!(
            out.role.model.as_deref(),
            Some("sonnet"),
            "other stages keep the role's"
        );
        ann.models[0].model = "gpt-5.5".into();
        let err = for_run(&sb, &role(&[]), Stage::Plan, Some(&ann), &h).unwrap_err();
        assert!(
            err.contains("gpt-5.5") && err.contains("atelier me models set plan"),
            "{err}"
        );
    }
}
