//! Credentials: a personal access token as is, or a GitHub App's installation token — bought
//! with an RS256 JWT (`iss` = the App id, issued 60 s in the past to allow for clock drift,
//! valid 9 minutes), cached, and bought again when less than 5 minutes remain or GitHub refuses
//! it. Secrets live only here and in the headers of requests to the API host.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::config::GitHubAuth;
use crate::ForgeError;

/// An installation token is bought again when less than this many seconds remain.
pub(crate) const REFRESH_MARGIN_SECS: u64 = 5 * 60;

/// The credentials of one forge, with the App's parsed key and its cached installation token.
pub(crate) struct Credentials {
    kind: Kind,
    cached: tokio::sync::Mutex<Option<InstallationToken>>,
}

enum Kind {
    Token(String),
    App {
        app_id: u64,
        key: Box<EncodingKey>,
        installation_id: u64,
    },
}

/// A token GitHub issued for the App's installation.
#[derive(Clone)]
pub(crate) struct InstallationToken {
    pub token: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

impl InstallationToken {
    /// Still usable at `now` with the refresh margin to spare.
    pub fn fresh_at(&self, now: u64) -> bool {
        self.expires_at > now.saturating_add(REFRESH_MARGIN_SECS)
    }
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

impl Credentials {
    /// Checks the App's key up front, so a malformed key fails at configuration time.
    pub fn new(auth: &GitHubAuth) -> Result<Credentials, ForgeError> {
        let kind = match auth {
            GitHubAuth::Token(token) => Kind::Token(token.clone()),
            GitHubAuth::App {
                app_id,
                private_key_pem,
                installation_id,
            } => {
                let key = EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|err| {
                    ForgeError::Auth(format!(
                        "the private key of GitHub App {app_id} is not a usable RSA PEM key \
                         ({err}): download a new private key in the App's settings"
                    ))
                })?;
                Kind::App {
                    app_id: *app_id,
                    key: Box::new(key),
                    installation_id: *installation_id,
                }
            }
        };
        Ok(Credentials {
            kind,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The personal access token, when that is the kind of credentials.
    pub fn personal_token(&self) -> Option<&str> {
        match &self.kind {
            Kind::Token(token) => Some(token),
            Kind::App { .. } => None,
        }
    }

    /// The installation id, for an App.
    pub fn installation_id(&self) -> Option<u64> {
        match &self.kind {
            Kind::Token(_) => None,
            Kind::App {
                installation_id, ..
            } => Some(*installation_id),
        }
    }

    /// A JWT for the App, valid from `now - 60 s` to `now + 9 min`.
    pub fn app_jwt(&self, now: u64) -> Result<String, ForgeError> {
        let Kind::App { app_id, key, .. } = &self.kind else {
            return Err(ForgeError::Auth(
                "a personal access token cannot sign GitHub App requests".to_string(),
            ));
        };
        let claims = Claims {
            iat: now.saturating_sub(60),
            exp: now + 9 * 60,
            iss: app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key).map_err(|err| {
            ForgeError::Auth(format!(
                "could not sign the JWT of GitHub App {app_id}: {err}"
            ))
        })
    }

    /// The cache of the installation token; the lock is held while a new one is bought, so
    /// concurrent calls buy one, not several.
    pub fn cache(&self) -> &tokio::sync::Mutex<Option<InstallationToken>> {
        &self.cached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_until_five_minutes_remain() {
        let token = InstallationToken {
            token: "t".to_string(),
            expires_at: 1000 + 3600,
        };
        assert!(token.fresh_at(1000));
        assert!(token.fresh_at(1000 + 3600 - 301));
        assert!(!token.fresh_at(1000 + 3600 - 300));
        assert!(!token.fresh_at(1000 + 3600 + 1));
    }

    #[test]
    fn a_malformed_app_key_is_refused_without_showing_it() {
        let Err(err) = Credentials::new(&GitHubAuth::App {
            app_id: 7,
            private_key_pem: "not a key but secret".to_string(),
            installation_id: 8,
        }) else {
            panic!("a malformed key must be refused");
        };
        let text = err.to_string();
        assert!(text.contains("GitHub App 7"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
