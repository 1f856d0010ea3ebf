//! The codex role's model and settings, validated with errors that name the offending key, and
//! the TOML quoting of values passed to Codex with `-c key=value`.
//!
//! Settings keys read here (every other key of the role is ignored, since the engine passes the
//! whole role): `base_url` (an OpenAI Responses endpoint, e.g. `http://127.0.0.1:8080/v1`),
//! `api_key_env` (the variable holding its key, default `ATELIER_CODEX_API_KEY`), `max_retries`
//! (request and stream retries, default 2), `env` (variables added to the agent's environment) and
//! `session` (`one-shot`, the default: `codex exec` per turn; `long-lived`: one `codex app-server`
//! for the whole run, see `super::bridge`).

use crate::HarnessError;
use crate::role_settings::SettingsReader;
use domain::SessionMode;
use serde_json::Value;

/// The environment variable that holds the API key of the `base_url` provider by default.
pub const DEFAULT_API_KEY_ENV: &str = "ATELIER_CODEX_API_KEY";

/// Request and stream retries of the `base_url` provider by default (Codex's own default retries
/// a dead endpoint for minutes).
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// The largest accepted `max_retries`.
const MAX_RETRIES_LIMIT: u64 = 100;

/// Variables `settings.env` may not set: every task has its own `HOME`, and Codex keeps its
/// state (sessions, logs) in `$HOME/.codex`.
const RESERVED_ENV: [&str; 2] = ["HOME", "CODEX_HOME"];

/// What the codex harness reads from a role's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodexSettings {
    /// The Responses API endpoint of Atelier's own provider entry; `None` keeps Codex's default
    /// provider (OpenAI, with credentials from `$HOME/.codex`).
    pub base_url: Option<String>,
    /// The variable that holds the provider's API key (only with `base_url`).
    pub api_key_env: Option<String>,
    /// Request and stream retries of the provider (only with `base_url`).
    pub max_retries: Option<u32>,
    /// Variables added to (or replacing those of) the agent's environment, in key order.
    pub env: Vec<(String, String)>,
    /// One process per turn (`codex exec`, the default) or one for the whole run (`codex
    /// app-server` behind the bridge).
    pub session: SessionMode,
}

impl CodexSettings {
    /// Reads and checks the codex keys of a role's settings (`null` means no settings).
    pub fn parse(settings: &Value) -> Result<CodexSettings, HarnessError> {
        let map = match settings {
            Value::Null => return Ok(CodexSettings::default()),
            Value::Object(map) => map,
            other => {
                return Err(config(format!(
                    "the codex role settings must be an object, not {other}"
                )));
            }
        };
        let base_url = optional_string(map.get("base_url"), "base_url")?;
        if let Some(url) = &base_url {
            check_base_url(url)?;
        }
        let api_key_env = optional_string(map.get("api_key_env"), "api_key_env")?;
        if let Some(name) = &api_key_env {
            check_env_name(name, "api_key_env")?;
        }
        let max_retries = match map.get("max_retries") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64() {
                Some(n) if n <= MAX_RETRIES_LIMIT => u32::try_from(n).ok(),
                _ => {
                    return Err(config(format!(
                        "the codex setting `max_retries` must be a whole number from 0 to \
                         {MAX_RETRIES_LIMIT}, not {value}"
                    )));
                }
            },
        };
        if base_url.is_none() {
            for key in ["api_key_env", "max_retries"] {
                if map.get(key).is_some_and(|v| !v.is_null()) {
                    return Err(config(format!(
                        "the codex setting `{key}` configures the `base_url` provider; set \
                         `base_url` too or remove `{key}`"
                    )));
                }
            }
        }
        let env = parse_env(map.get("env"))?;
        let session = crate::session_of(settings)?.unwrap_or_default();
        Ok(CodexSettings {
            base_url,
            api_key_env,
            max_retries,
            env,
            session,
        })
    }

    /// The variable Codex reads the provider's key from.
    pub fn api_key_env(&self) -> &str {
        self.api_key_env.as_deref().unwrap_or(DEFAULT_API_KEY_ENV)
    }

    /// Request and stream retries of the provider.
    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }
}

/// Checks that `model` is set and is an OpenAI/Codex catalog-style name; returns it.
pub fn check_model(model: Option<&str>) -> Result<&str, HarnessError> {
    let Some(model) = model else {
        return Err(config(
            "the codex harness needs a `model`, e.g. gpt-5.5 (an OpenAI/Codex catalog name)"
                .to_string(),
        ));
    };
    if !is_catalog_model(model) {
        return Err(config(format!(
            "model `{model}` does not belong to the codex harness: it takes OpenAI/Codex catalog \
             names (gpt-…, o1…/o3…/o4…, codex-…) such as gpt-5.5; Codex offers its apply_patch \
             tool only to models it knows"
        )));
    }
    Ok(model)
}

/// `gpt-…`, `codex-…` or `o<digits>` optionally followed by `-…` (o1, o3-mini, o4-mini …);
/// no whitespace or control characters.
fn is_catalog_model(model: &str) -> bool {
    if model.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let prefixed = |prefix: &str| model.len() > prefix.len() && model.starts_with(prefix);
    if prefixed("gpt-") || prefixed("codex-") {
        return true;
    }
    let Some(rest) = model.strip_prefix('o') else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let after = &rest[digits..];
    digits > 0 && (after.is_empty() || (after.len() > 1 && after.starts_with('-')))
}

/// `s` as a TOML basic string: in double quotes, with `"`, `\` and control characters escaped.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Checks an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
/// The shared reader, naming this harness in its errors.
const READER: SettingsReader = SettingsReader { harness: "codex" };

pub(crate) fn check_env_name(name: &str, key: &str) -> Result<(), HarnessError> {
    READER.check_env_name(name, key)
}

fn check_base_url(url: &str) -> Result<(), HarnessError> {
    READER.check_base_url(url)
}

fn optional_string(value: Option<&Value>, key: &str) -> Result<Option<String>, HarnessError> {
    READER.optional_string(value, key)
}

fn parse_env(value: Option<&Value>) -> Result<Vec<(String, String)>, HarnessError> {
    READER.parse_env(
        value,
        &RESERVED_ENV,
        "every task has its own HOME and Codex keeps its state in $HOME/.codex",
    )
}

fn config(message: String) -> HarnessError {
    READER.error(message)
}
