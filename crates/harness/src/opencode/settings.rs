//! The opencode role's model and settings, validated with errors that name the offending key.
//!
//! Settings keys read here (every other key of the role is ignored, since the engine passes the
//! whole role): `base_url` (an OpenAI Chat Completions endpoint, e.g. `http://127.0.0.1:8080/v1`,
//! served through OpenCode's bundled `@ai-sdk/openai-compatible` provider), its key as either
//! `api_key_env` (the variable holding it, resolved by OpenCode as `{env:NAME}`) or `api_key` (a
//! literal), `env` (variables added to the agent's environment) and `session` (`one-shot`, the
//! default: one `opencode run` per turn; `long-lived`: one `opencode serve` per run, through the
//! bridge).
//!
//! Models: with `base_url`, any model id of that server (slashes allowed: it becomes
//! `atelier/<id>`); without it, OpenCode's own `provider/model` form (`anthropic/claude-…`,
//! `openai/gpt-…`), with credentials from the task's `HOME` or the environment.

use crate::HarnessError;
use crate::role_settings::SettingsReader;
use domain::SessionMode;
use serde_json::Value;

/// Variables `settings.env` may not set: every task has its own `HOME` (OpenCode keeps its
/// sessions under `$HOME/.local/share/opencode`), and the harness writes the configuration.
const RESERVED_ENV: [&str; 2] = ["HOME", "OPENCODE_CONFIG_CONTENT"];

/// What the opencode harness reads from a role's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenCodeSettings {
    /// The Chat Completions endpoint of Atelier's own provider entry; `None` uses OpenCode's
    /// built-in providers.
    pub base_url: Option<String>,
    /// The variable that holds the provider's API key (only with `base_url`).
    pub api_key_env: Option<String>,
    /// The provider's API key itself (only with `base_url`).
    pub api_key: Option<String>,
    /// Variables added to (or replacing those of) the agent's environment, in name order.
    pub env: Vec<(String, String)>,
    /// One `opencode run` per turn (default) or one `opencode serve` for the whole run.
    pub session: SessionMode,
}

impl OpenCodeSettings {
    /// Reads and checks the opencode keys of a role's settings (`null` means no settings).
    pub fn parse(settings: &Value) -> Result<OpenCodeSettings, HarnessError> {
        let map = match settings {
            Value::Null => return Ok(OpenCodeSettings::default()),
            Value::Object(map) => map,
            other => {
                return Err(config(format!(
                    "the opencode role settings must be an object, not {other}"
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
        let api_key = optional_string(map.get("api_key"), "api_key")?;
        if api_key_env.is_some() && api_key.is_some() {
            return Err(config(
                "the opencode settings `api_key_env` and `api_key` both give the provider's key; \
                 keep one"
                    .into(),
            ));
        }
        if base_url.is_none() {
            for key in ["api_key_env", "api_key"] {
                if map.get(key).is_some_and(|v| !v.is_null()) {
                    return Err(config(format!(
                        "the opencode setting `{key}` configures the `base_url` provider; set \
                         `base_url` too or remove `{key}` (OpenCode's built-in providers take \
                         their keys from the task's environment or HOME)"
                    )));
                }
            }
        }
        let env = parse_env(map.get("env"))?;
        let session = crate::session_of(settings)?.unwrap_or_default();
        Ok(OpenCodeSettings {
            base_url,
            api_key_env,
            api_key,
            env,
            session,
        })
    }
}

/// Checks the role's model against its settings; returns the model id as the role gives it.
pub fn check_model<'m>(
    model: Option<&'m str>,
    settings: &OpenCodeSettings,
) -> Result<&'m str, HarnessError> {
    let Some(model) = model else {
        return Err(config(
            "the opencode harness needs a `model`: provider/model such as \
             anthropic/claude-sonnet-4-5, or a model id of the `base_url` server"
                .into(),
        ));
    };
    if model.trim().is_empty() || model.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(config(format!(
            "the opencode model `{model}` must be a non-empty id without spaces"
        )));
    }
    if settings.base_url.is_some() {
        return Ok(model);
    }
    let provider_model = model
        .split_once('/')
        .is_some_and(|(provider, id)| !provider.is_empty() && !id.is_empty());
    if provider_model {
        return Ok(model);
    }
    let hint = match other_harness(model) {
        Some((maker, provider, harness)) => format!(
            "; `{model}` looks like an {maker} model: use {provider}/{model} to run it through \
             OpenCode, or the {harness} harness"
        ),
        None => format!(
            " (e.g. anthropic/{model} or openai/{model}), or set `base_url` to serve `{model}` \
             from an OpenAI-compatible endpoint"
        ),
    };
    Err(config(format!(
        "the opencode harness takes models as provider/model without `base_url`, not \
         `{model}`{hint}"
    )))
}

/// The model id OpenCode is asked for: `atelier/<model>` with `base_url`, else the model.
pub fn model_ref(model: &str, settings: &OpenCodeSettings) -> String {
    if settings.base_url.is_some() {
        format!("{}/{model}", super::PROVIDER_ID)
    } else {
        model.to_string()
    }
}

/// `(maker, OpenCode provider, harness)` for a bare model id that belongs to another harness.
fn other_harness(model: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let lower = model.to_ascii_lowercase();
    if lower.starts_with("claude") {
        return Some(("Anthropic", "anthropic", "claude"));
    }
    let o_series = lower.strip_prefix('o').is_some_and(|rest| {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && (rest.len() == digits || rest[digits..].starts_with('-'))
    });
    if lower.starts_with("gpt-") || lower.starts_with("codex-") || o_series {
        return Some(("OpenAI", "openai", "codex"));
    }
    None
}

/// Checks an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
/// The shared reader, naming this harness in its errors.
const READER: SettingsReader = SettingsReader {
    harness: "opencode",
};

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
    READER.parse_env(value, &RESERVED_ENV, "every task has its own HOME, and Atelier writes OpenCode's configuration from `base_url` and the role's model")
}

fn config(message: String) -> HarnessError {
    READER.error(message)
}
