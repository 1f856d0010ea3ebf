//! Reading a role's harness settings (the JSON of the role's configuration): the checks every
//! adapter that talks to a configurable endpoint shares, with errors naming the harness and the
//! setting.

use crate::HarnessError;
use serde_json::Value;

/// Reads settings of one harness (`harness` names it in every error).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SettingsReader {
    pub harness: &'static str,
}

impl SettingsReader {
    pub fn error(&self, message: String) -> HarnessError {
        HarnessError::Config(message)
    }

    /// A variable name: letters, digits and `_`, not starting with a digit.
    pub fn check_env_name(&self, name: &str, key: &str) -> Result<(), HarnessError> {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            Ok(())
        } else {
            Err(self.error(format!(
                "the {} setting `{key}` has `{name}`, which is not an environment variable \
                 name (letters, digits and _, not starting with a digit)",
                self.harness
            )))
        }
    }

    pub fn check_base_url(&self, url: &str) -> Result<(), HarnessError> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
        if host_ok && !url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Ok(())
        } else {
            Err(self.error(format!(
                "the {} setting `base_url` must be an http:// or https:// URL (e.g. \
                 http://127.0.0.1:8080/v1), not `{url}`",
                self.harness
            )))
        }
    }

    pub fn optional_string(
        &self,
        value: Option<&Value>,
        key: &str,
    ) -> Result<Option<String>, HarnessError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(self.error(format!(
                "the {} setting `{key}` must be a non-empty string, not {other}",
                self.harness
            ))),
        }
    }

    /// The role's `env` object as sorted pairs; `reserved` names are refused with `why`.
    pub fn parse_env(
        &self,
        value: Option<&Value>,
        reserved: &[&str],
        why: &str,
    ) -> Result<Vec<(String, String)>, HarnessError> {
        let harness = self.harness;
        let map = match value {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(self.error(format!(
                    "the {harness} setting `env` must be an object of strings (name → value), \
                     not {other}"
                )));
            }
        };
        let mut env: Vec<(String, String)> = Vec::with_capacity(map.len());
        for (name, value) in map {
            self.check_env_name(name, "env")?;
            if reserved.contains(&name.as_str()) {
                return Err(self.error(format!(
                    "the {harness} setting `env` cannot set {name}: {why}"
                )));
            }
            let Value::String(value) = value else {
                return Err(self.error(format!(
                    "the {harness} setting `env.{name}` must be a string, not {value}"
                )));
            };
            if value.contains('\0') {
                return Err(self.error(format!(
                    "the {harness} setting `env.{name}` contains a NUL character"
                )));
            }
            env.push((name.clone(), value.clone()));
        }
        env.sort();
        Ok(env)
    }
}
