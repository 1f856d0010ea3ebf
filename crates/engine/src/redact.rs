//! Redaction of server details for callers that are not administrators: absolute server paths
//! and the command lines the server ran (git, setup hooks) are replaced by `<path>` and
//! `<command>`. Used for the server's error messages (the full message goes to the server log,
//! see the server's `routes::redact_errors`) and for the reasons and paths of the views the
//! engine answers a member with (`shown`).
//!
//! Paths of the HTTP API itself (`/api/…`, `/healthz`) are kept: they are routes, not files.

/// Git subcommands (and `-C`) that start a raw git command line in a message.
const GIT_WORDS: [&str; 20] = [
    "-C",
    "add",
    "branch",
    "checkout",
    "clone",
    "commit",
    "commit-tree",
    "fetch",
    "for-each-ref",
    "init",
    "log",
    "ls-remote",
    "merge",
    "merge-base",
    "merge-tree",
    "push",
    "remote",
    "rev-list",
    "rev-parse",
    "worktree",
];

/// `message` with absolute paths and command lines replaced.
pub fn redact(message: &str) -> String {
    redact_paths(&redact_bare_commands(&redact_quoted_commands(message)))
}

/// Backtick spans holding a command line the server ran: `` `git …` `` or a hook's command.
fn redact_quoted_commands(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('`') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('`') else {
            break;
        };
        let span = &after[..close];
        let before = &rest[..open];
        out.push_str(before);
        let is_command = is_git_command(span) || before.ends_with("hook ");
        if is_command {
            out.push_str("`<command>`");
        } else {
            out.push('`');
            out.push_str(span);
            out.push('`');
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn is_git_command(text: &str) -> bool {
    let mut words = text.split_whitespace();
    words.next() == Some("git") && words.next().is_some_and(|w| GIT_WORDS.contains(&w))
}

/// Unquoted `git <subcommand> …` up to the end of its clause (`: `, `;`, a line end or a quote).
fn redact_bare_commands(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let Some(at) = find_bare_git(rest) else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = clause_end(tail);
        out.push_str("<command>");
        rest = &tail[end..];
    }
}

fn find_bare_git(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find("git ") {
        let at = from + found;
        let boundary = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "'\"(".contains(c));
        if boundary && is_git_command(&text[at..at + clause_end(&text[at..])]) {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

fn clause_end(text: &str) -> usize {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let colon_end = c == ':' && chars.peek().is_none_or(|(_, n)| n.is_whitespace());
        if colon_end || matches!(c, ';' | '\n' | '\'' | '"' | '`') {
            return i;
        }
    }
    text.len()
}

/// Characters that may come right before an absolute path (`:` for the next path of a list such
/// as `PATH=/a:/b`, or a remote's `host:/path`).
fn starts_path_after(c: char) -> bool {
    c.is_whitespace() || "'\"`([{=,:".contains(c)
}

/// Characters that end a path.
fn ends_path(c: char) -> bool {
    c.is_whitespace() || "'\"`,;:)]}>".contains(c)
}

/// A URL scheme whose path is a server path: `file:///srv/remote.git`.
const FILE_URL: &str = "file://";

fn redact_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < message.len() {
        let rest = &message[i..];
        let Some(c) = rest.chars().next() else {
            break;
        };
        let next_is_path = || {
            rest[1..]
                .chars()
                .next()
                .is_some_and(|n| n != '/' && !ends_path(n))
        };
        if rest.starts_with(FILE_URL) && prev.is_none_or(starts_path_after) {
            // The path that follows starts as if after a space.
            out.push_str(FILE_URL);
            i += FILE_URL.len();
            prev = None;
            continue;
        }
        if c == '/' && prev.is_none_or(starts_path_after) && next_is_path() {
            let len = rest.find(ends_path).unwrap_or(rest.len());
            let path = rest[..len].trim_end_matches(['.', ':']);
            if path.starts_with("/api/") || path == "/api" || path == "/healthz" {
                out.push_str(path);
            } else {
                out.push_str("<path>");
            }
            i += path.len();
            prev = path.chars().next_back();
            continue;
        }
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn paths_and_command_lines_are_replaced() {
        let cases = [
            (
                "cannot open /srv/data/atelier.db: disk I/O error",
                "cannot open <path>: disk I/O error",
            ),
            (
                "`git push --force origin atelier/3-x` failed (exit code 1): fatal: '/srv/repos/app.git' does not appear to be a git repository",
                "`<command>` failed (exit code 1): fatal: '<path>' does not appear to be a git repository",
            ),
            (
                "git push --force origin main: rejected by /srv/hooks/pre-receive.",
                "<command>: rejected by <path>.",
            ),
            (
                "could not start hook `make setup DIR=x` in /home/me/wt/3-x: not found",
                "could not start hook `<command>` in <path>: not found",
            ),
            (
                "scenario (/tmp/a b) and path=/var/lib/x, done",
                "scenario (<path> b) and path=<path>, done",
            ),
            (
                "cannot fetch file:///srv/remote.git: gone",
                "cannot fetch file://<path>: gone",
            ),
            (
                "PATH=/usr/bin:/srv/tools/bin HOME=/srv/homes/3 x",
                "PATH=<path>:<path> HOME=<path> x",
            ),
            ("LD_PATH=lib:/srv/lib", "LD_PATH=lib:<path>"),
            ("fatal: git@host:/srv/app.git", "fatal: git@host:<path>"),
        ];
        for (message, want) in cases {
            assert_eq!(redact(message), want, "{message}");
        }
    }

    #[test]
    fn messages_without_server_details_are_unchanged() {
        for message in [
            "no route for GET /api/nope",
            "invalid task id `abc` in the path: expected a positive integer such as /api/tasks/12",
            "invalid API token: use the token in <data-dir>/api-token of the server",
            "the task is not a git work tree: run `atelier task stop 3` first",
            "ratio 1/2 and a lone / stay; see http://127.0.0.1:7878/healthz",
            "the planner ended without `atelier signal plan-ready`",
        ] {
            assert_eq!(redact(message), message);
        }
    }
}
