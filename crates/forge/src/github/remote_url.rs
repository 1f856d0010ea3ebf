//! Recognizing a GitHub repository in a git remote URL: `https://host/o/r(.git)`,
//! `http://127.0.0.1:P/o/r.git` (a local fake), `git@host:o/r(.git)` and
//! `ssh://git@host(:port)/o/r(.git)`.

/// The host (with its port for http(s) URLs), owner and repository a GitHub remote URL names, or
/// `None` when `url` is not one of the recognized forms.
pub fn parse_github_remote(url: &str) -> Option<(String, String, String)> {
    let url = url.trim();
    let (host, path) = if let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        let (authority, path) = rest.split_once('/')?;
        (strip_userinfo(authority).to_string(), path)
    } else if let Some(rest) = url.strip_prefix("ssh://") {
        let (authority, path) = rest.split_once('/')?;
        let host = strip_userinfo(authority);
        // The port of an ssh URL is the ssh server's, not the web's.
        let host = host.split_once(':').map_or(host, |(host, _)| host);
        (host.to_string(), path)
    } else if !url.contains("://") {
        // scp-like `git@host:owner/repo.git`.
        let (authority, path) = url.split_once(':')?;
        if !authority.contains('@') {
            return None;
        }
        (strip_userinfo(authority).to_string(), path)
    } else {
        return None;
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, repo) = path.split_once('/')?;
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if host.is_empty() || !valid(owner) || !valid(repo) {
        return None;
    }
    Some((host, owner.to_string(), repo.to_string()))
}

fn strip_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(host: &str, owner: &str, repo: &str) -> Option<(String, String, String)> {
        Some((host.to_string(), owner.to_string(), repo.to_string()))
    }

    #[test]
    fn recognizes_the_usual_remote_forms() {
        let cases = [
            ("https://github.com/o/r.git", parsed("github.com", "o", "r")),
            ("https://github.com/o/r", parsed("github.com", "o", "r")),
            ("https://github.com/o/r/", parsed("github.com", "o", "r")),
            (
                "https://user@ghe.example.com/team/app.git",
                parsed("ghe.example.com", "team", "app"),
            ),
            (
                "http://127.0.0.1:8123/o/r.git",
                parsed("127.0.0.1:8123", "o", "r"),
            ),
            ("git@github.com:o/r.git", parsed("github.com", "o", "r")),
            ("git@github.com:o/r", parsed("github.com", "o", "r")),
            (
                "ssh://git@ghe.example.com/o/my.repo.git",
                parsed("ghe.example.com", "o", "my.repo"),
            ),
            (
                "ssh://git@ghe.example.com:2222/o/r",
                parsed("ghe.example.com", "o", "r"),
            ),
            ("/srv/git/r.git", None),
            ("file:///srv/git/o/r.git", None),
            ("https://github.com/o", None),
            ("https://github.com/o/r/tree/main", None),
            ("github.com:o/r", None),
            ("", None),
        ];
        for (url, expected) in cases {
            assert_eq!(parse_github_remote(url), expected, "{url}");
        }
    }
}
