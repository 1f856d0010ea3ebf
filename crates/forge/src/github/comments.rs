//! Comments on a pull request: conversation (issue) comments, review bodies and inline review
//! comments read as one list, oldest first; a 👀 reaction to acknowledge one; and replies that
//! are idempotent per key — each carries [`crate::reply_marker`], and a reply whose marker is
//! already on the pull request is not posted again. Atelier's own replies (those carrying a
//! marker) are not listed as comments, so it never answers itself.

use reqwest::Method;
use serde_json::json;

use super::time::parse_timestamp;
use super::{GitHubForge, models};
use crate::{Comment, CommentKind, ForgeError, PullRequest, reply_marker};

/// What every reply marker starts with.
const MARKER_PREFIX: &str = "<!-- atelier:reply:";

async fn issue_comments(
    forge: &GitHubForge,
    number: u64,
) -> Result<Vec<models::IssueComment>, ForgeError> {
    let path = forge.repo_path(&format!("/issues/{number}/comments"));
    forge
        .client
        .get_all(
            &format!("GET {path}"),
            &path,
            |page: Vec<models::IssueComment>| page,
        )
        .await
}

async fn review_comments(
    forge: &GitHubForge,
    number: u64,
) -> Result<Vec<models::ReviewComment>, ForgeError> {
    let path = forge.repo_path(&format!("/pulls/{number}/comments"));
    forge
        .client
        .get_all(
            &format!("GET {path}"),
            &path,
            |page: Vec<models::ReviewComment>| page,
        )
        .await
}

async fn reviews(forge: &GitHubForge, number: u64) -> Result<Vec<models::Review>, ForgeError> {
    let path = forge.repo_path(&format!("/pulls/{number}/reviews"));
    forge
        .client
        .get_all(
            &format!("GET {path}"),
            &path,
            |page: Vec<models::Review>| page,
        )
        .await
}

fn login(user: Option<models::User>) -> String {
    user.map_or_else(|| "ghost".to_string(), |u| u.login)
}

fn association(value: Option<String>) -> String {
    value.unwrap_or_else(|| "NONE".to_string())
}

pub(super) async fn all(forge: &GitHubForge, number: u64) -> Result<Vec<Comment>, ForgeError> {
    // (when, kind order, comment)
    let mut dated: Vec<(u64, u8, Comment)> = Vec::new();
    for c in issue_comments(forge, number).await? {
        let when = c
            .created_at
            .as_deref()
            .and_then(parse_timestamp)
            .unwrap_or(0);
        dated.push((
            when,
            0,
            Comment {
                kind: CommentKind::Issue,
                id: c.id,
                author: login(c.user),
                association: association(c.author_association),
                body: c.body.unwrap_or_default(),
                path: None,
                line: None,
                url: c.html_url,
            },
        ));
    }
    for r in reviews(forge, number).await? {
        let body = r.body.unwrap_or_default();
        if body.trim().is_empty() || r.state.as_deref() == Some("PENDING") {
            continue;
        }
        let when = r
            .submitted_at
            .as_deref()
            .and_then(parse_timestamp)
            .unwrap_or(0);
        dated.push((
            when,
            1,
            Comment {
                kind: CommentKind::Review,
                id: r.id,
                author: login(r.user),
                association: association(r.author_association),
                body,
                path: None,
                line: None,
                url: r.html_url,
            },
        ));
    }
    for c in review_comments(forge, number).await? {
        let when = c
            .created_at
            .as_deref()
            .and_then(parse_timestamp)
            .unwrap_or(0);
        dated.push((
            when,
            2,
            Comment {
                kind: CommentKind::ReviewComment,
                id: c.id,
                author: login(c.user),
                association: association(c.author_association),
                body: c.body.unwrap_or_default(),
                path: c.path,
                line: c.line.or(c.original_line),
                url: c.html_url,
            },
        ));
    }
    dated.retain(|(_, _, c)| !c.body.contains(MARKER_PREFIX));
    dated.sort_by_key(|a| (a.0, a.1, a.2.id));
    Ok(dated.into_iter().map(|(_, _, c)| c).collect())
}

pub(super) async fn acknowledge(
    forge: &GitHubForge,
    _pr: &PullRequest,
    comment: &Comment,
) -> Result<(), ForgeError> {
    let path = match comment.kind {
        CommentKind::Issue => format!("/issues/comments/{}/reactions", comment.id),
        CommentKind::ReviewComment => format!("/pulls/comments/{}/reactions", comment.id),
        // A review has no reactions.
        CommentKind::Review => return Ok(()),
    };
    let path = forge.repo_path(&path);
    let _: serde_json::Value = forge
        .client
        .send(
            &format!("POST {path}"),
            Method::POST,
            &path,
            &json!({ "content": "eyes" }),
        )
        .await?;
    Ok(())
}

/// `> first line of the answered comment`, for a reply outside a thread.
fn quote(comment: &Comment) -> String {
    let first = comment
        .body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut first: String = first.chars().take(200).collect();
    if first.chars().count() == 200 {
        first.push('…');
    }
    format!("> {first}")
}

/// The text of a reply: for conversation comments and reviews the answered comment's first
/// line quoted, then the reply, then the marker.
pub(crate) fn reply_body(comment: &Comment, key: &str, body: &str) -> String {
    let marker = reply_marker(key);
    match comment.kind {
        CommentKind::ReviewComment => format!("{body}\n\n{marker}"),
        CommentKind::Issue | CommentKind::Review => {
            format!("{}\n\n{body}\n\n{marker}", quote(comment))
        }
    }
}

pub(super) async fn reply(
    forge: &GitHubForge,
    number: u64,
    comment: &Comment,
    key: &str,
    body: &str,
) -> Result<(), ForgeError> {
    let marker = reply_marker(key);
    let text = reply_body(comment, key, body);
    if issue_comments(forge, number)
        .await?
        .iter()
        .any(|c| c.body.as_deref().is_some_and(|b| b.contains(&marker)))
    {
        return Ok(());
    }
    match comment.kind {
        CommentKind::Issue | CommentKind::Review => {
            let path = forge.repo_path(&format!("/issues/{number}/comments"));
            let _: serde_json::Value = forge
                .client
                .send(
                    &format!("POST {path}"),
                    Method::POST,
                    &path,
                    &json!({ "body": text }),
                )
                .await?;
        }
        CommentKind::ReviewComment => {
            let thread = review_comments(forge, number).await?;
            if thread
                .iter()
                .any(|c| c.body.as_deref().is_some_and(|b| b.contains(&marker)))
            {
                return Ok(());
            }
            // GitHub threads replies under the thread's first comment.
            let top = thread
                .iter()
                .find(|c| c.id == comment.id)
                .and_then(|c| c.in_reply_to_id)
                .unwrap_or(comment.id);
            let path = forge.repo_path(&format!("/pulls/{number}/comments/{top}/replies"));
            let _: serde_json::Value = forge
                .client
                .send(
                    &format!("POST {path}"),
                    Method::POST,
                    &path,
                    &json!({ "body": text }),
                )
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(kind: CommentKind, body: &str) -> Comment {
        Comment {
            kind,
            id: 1,
            author: "ann".to_string(),
            association: "OWNER".to_string(),
            body: body.to_string(),
            path: None,
            line: None,
            url: None,
        }
    }

    #[test]
    fn replies_quote_outside_threads_and_always_carry_the_marker() {
        let issue = comment(CommentKind::Issue, "\nPlease rename it.\nAnd more.");
        assert_eq!(
            reply_body(&issue, "k1", "Done."),
            "> Please rename it.\n\nDone.\n\n<!-- atelier:reply:k1 -->"
        );
        let inline = comment(CommentKind::ReviewComment, "nit");
        assert_eq!(
            reply_body(&inline, "k2", "Fixed."),
            "Fixed.\n\n<!-- atelier:reply:k2 -->"
        );
        assert!(reply_marker("x").starts_with(MARKER_PREFIX));
    }
}
