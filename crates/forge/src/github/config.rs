//! [`GitHubConfig`] and [`GitHubAuth`]: where the repository lives on GitHub (github.com or a
//! GitHub Enterprise Server), the credentials, and the limits every call runs under. Secrets
//! never show in `Debug` output.

use std::fmt;
use std::time::Duration;

use super::remote_url::parse_github_remote;
use crate::ForgeError;

/// How Atelier authenticates to GitHub.
#[derive(Clone)]
pub enum GitHubAuth {
    /// A personal access token (classic or fine-grained), sent as `Authorization: Bearer`.
    Token(String),
    /// A GitHub App installation: a JWT signed with the App's private key (RS256) buys
    /// short-lived installation tokens, cached and refreshed before they expire.
    App {
        app_id: u64,
        /// The App's private key, PEM (`-----BEGIN RSA PRIVATE KEY-----` …).
        private_key_pem: String,
        installation_id: u64,
    },
}

impl fmt::Debug for GitHubAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitHubAuth::Token(_) => f.write_str("Token(<redacted>)"),
            GitHubAuth::App {
                app_id,
                installation_id,
                ..
            } => f
                .debug_struct("App")
                .field("app_id", app_id)
                .field("private_key_pem", &"<redacted>")
                .field("installation_id", installation_id)
                .finish(),
        }
    }
}

/// One repository on GitHub and how to reach it.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// The REST API root: `https://api.github.com`, or `https://<host>/api/v3` for GitHub
    /// Enterprise Server.
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    /// The URL git pushes to and fetches from (`https://github.com/<owner>/<repo>.git`); the
    /// token is given to those git processes only, through their environment.
    pub clone_url: String,
    pub auth: GitHubAuth,
    /// Deadline of each HTTP call and of each git network command.
    pub call_timeout: Duration,
    /// Attempts per call when GitHub is rate limiting, failing (5xx) or not answering.
    pub max_attempts: u32,
    /// The longest Atelier waits before a retry; a rate limit that lifts later fails the call
    /// with the time it can be retried.
    pub max_backoff: Duration,
    /// The first wait after a 5xx or a timeout, doubled at each further attempt (1 s).
    pub retry_base: Duration,
}

impl GitHubConfig {
    /// A configuration with the default limits: 30 s per call, 5 attempts, waits of at most
    /// 60 s, backoff from 1 s.
    pub fn new(
        api_url: impl Into<String>,
        owner: impl Into<String>,
        repo: impl Into<String>,
        clone_url: impl Into<String>,
        auth: GitHubAuth,
    ) -> GitHubConfig {
        GitHubConfig {
            api_url: api_url.into().trim_end_matches('/').to_string(),
            owner: owner.into(),
            repo: repo.into(),
            clone_url: clone_url.into(),
            auth,
            call_timeout: Duration::from_secs(30),
            max_attempts: 5,
            max_backoff: Duration::from_secs(60),
            retry_base: Duration::from_secs(1),
        }
    }

    /// The configuration for the repository a git remote URL names (see
    /// [`parse_github_remote`]). The API is `api_url` when given, else `https://api.github.com`
    /// for github.com and `https://<host>/api/v3` for any other host (`http://` when the remote
    /// itself is plain http, as a local fake is). Git talks to the https form of the remote
    /// (plain http stays http).
    pub fn for_remote(
        remote_url: &str,
        api_url: Option<&str>,
        auth: GitHubAuth,
    ) -> Result<GitHubConfig, ForgeError> {
        let (host, owner, repo) = parse_github_remote(remote_url).ok_or_else(|| {
            ForgeError::Unsupported(format!(
                "`{remote_url}` is not a GitHub repository URL: use https://<host>/<owner>/<repo>.git \
                 or git@<host>:<owner>/<repo>.git"
            ))
        })?;
        let scheme = if remote_url.trim().starts_with("http://") {
            "http"
        } else {
            "https"
        };
        let api_url = match api_url {
            Some(api) => api.to_string(),
            None if host == "github.com" => "https://api.github.com".to_string(),
            None => format!("{scheme}://{host}/api/v3"),
        };
        let clone_url = format!("{scheme}://{host}/{owner}/{repo}.git");
        Ok(GitHubConfig::new(api_url, owner, repo, clone_url, auth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_remote_derives_the_api_and_clone_urls() {
        let token = || GitHubAuth::Token("t".to_string());
        let dotcom = GitHubConfig::for_remote("git@github.com:o/r.git", None, token()).unwrap();
        assert_eq!(dotcom.api_url, "https://api.github.com");
        assert_eq!(dotcom.clone_url, "https://github.com/o/r.git");
        assert_eq!((dotcom.owner.as_str(), dotcom.repo.as_str()), ("o", "r"));

        let ghes =
            GitHubConfig::for_remote("ssh://git@ghe.corp:2222/team/app", None, token()).unwrap();
        assert_eq!(ghes.api_url, "https://ghe.corp/api/v3");
        assert_eq!(ghes.clone_url, "https://ghe.corp/team/app.git");

        let fake = GitHubConfig::for_remote("http://127.0.0.1:9/o/r.git", None, token()).unwrap();
        assert_eq!(fake.api_url, "http://127.0.0.1:9/api/v3");
        assert_eq!(fake.clone_url, "http://127.0.0.1:9/o/r.git");

        let given = GitHubConfig::for_remote(
            "https://github.com/o/r",
            Some("http://127.0.0.1:9/api/v3/"),
            token(),
        )
        .unwrap();
        assert_eq!(given.api_url, "http://127.0.0.1:9/api/v3");
        assert_eq!(given.call_timeout, Duration::from_secs(30));
        assert_eq!(given.max_attempts, 5);

        let err = GitHubConfig::for_remote("/srv/r.git", None, token()).unwrap_err();
        assert!(
            err.to_string().contains("not a GitHub repository URL"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let pat = GitHubConfig::for_remote(
            "https://github.com/o/r",
            None,
            GitHubAuth::Token("ghp_supersecret".to_string()),
        )
        .unwrap();
        let shown = format!("{pat:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(shown.contains("Token(<redacted>)"), "{shown}");

        let app = GitHubAuth::App {
            app_id: 12,
            private_key_pem: "-----BEGIN RSA PRIVATE KEY-----\nsecretkey".to_string(),
            installation_id: 34,
        };
        let shown = format!("{app:?}");
        assert!(!shown.contains("secretkey"), "{shown}");
        assert!(shown.contains("12") && shown.contains("34"), "{shown}");
    }
}
