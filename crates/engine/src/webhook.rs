//! GitHub webhook deliveries in: checked, deduplicated, then turned into syncs of the tasks they
//! concern. A delivery is accepted only when its `X-Hub-Signature-256` is the HMAC-SHA256 of the
//! raw body under the webhook secret of a project of that repository (compared in constant
//! time); forged, unsigned and replayed deliveries are refused and logged, and an event Atelier
//! does not follow is acknowledged and dropped. The delivery itself is never trusted for state:
//! it only says which pull requests to sync, and the sync reads the truth from GitHub.

use crate::api::ForgeSettings;
use crate::error::{EngineError, Result};
use crate::inner::Inner;
use domain::{ProjectId, TaskId};
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::sync::Arc;

/// One delivery as received: GitHub's headers and the raw body.
#[derive(Debug, Clone, Copy)]
pub struct WebhookDelivery<'a> {
    /// `X-GitHub-Event`.
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery`.
    pub delivery: Option<&'a str>,
    /// `X-Hub-Signature-256` (`sha256=<hex>`).
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// What became of an accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Checked and taken; these tasks are being synced.
    Accepted { tasks: Vec<TaskId> },
    /// The delivery id was accepted before: nothing done again.
    Replayed,
    /// An event Atelier does not follow: acknowledged and dropped.
    Ignored { event: String },
}

/// Events that can change a followed pull request.
const FOLLOWED: [&str; 8] = [
    "pull_request",
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "check_run",
    "check_suite",
    "status",
    "workflow_run",
];

/// Checks and records `delivery`, then asks for a sync of every task it concerns.
pub(crate) fn receive(inner: &Arc<Inner>, delivery: WebhookDelivery<'_>) -> Result<WebhookOutcome> {
    let event = delivery.event.unwrap_or("").to_string();
    let reject = |project: Option<ProjectId>, reason: &str| -> Result<WebhookOutcome> {
        inner.store.write(|tx| {
            tx.record_delivery(
                delivery.delivery,
                &event,
                project,
                &format!("rejected: {reason}"),
            )
        })?;
        tracing::warn!(event = %event, delivery = ?delivery.delivery, %reason, "refused a webhook delivery");
        Err(EngineError::Unauthorized(format!(
            "webhook delivery refused: {reason}"
        )))
    };
    let Some(signature) = delivery.signature else {
        return reject(None, "unsigned (no X-Hub-Signature-256 header)");
    };
    let Some(id) = delivery
        .delivery
        .filter(|d| !d.is_empty() && d.len() <= 100)
    else {
        return reject(None, "no X-GitHub-Delivery id");
    };
    if event.is_empty() || event.len() > 100 {
        return reject(None, "no X-GitHub-Event");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(delivery.body) else {
        return reject(None, "the body is not JSON");
    };
    let full_name = payload
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(project) = signed_by(inner, full_name, signature, delivery.body)? else {
        return reject(
            None,
            "the signature matches no project's webhook secret for this repository",
        );
    };
    let replayed = inner.store.write(|tx| {
        let seen = tx.delivery_seen(id)?;
        let outcome = if seen {
            "replayed"
        } else if FOLLOWED.contains(&event.as_str()) {
            "accepted"
        } else {
            "ignored"
        };
        tx.record_delivery(Some(id), &event, Some(project), outcome)?;
        Ok::<_, EngineError>(seen)
    })?;
    if replayed {
        tracing::info!(delivery = id, %event, "ignored a replayed webhook delivery");
        return Ok(WebhookOutcome::Replayed);
    }
    if !FOLLOWED.contains(&event.as_str()) {
        return Ok(WebhookOutcome::Ignored { event });
    }
    let tasks = concerned_tasks(inner, project, &payload)?;
    for task in &tasks {
        crate::follow_up::request_sync(inner, *task);
    }
    Ok(WebhookOutcome::Accepted { tasks })
}

/// The GitHub project of repository `full_name` whose webhook secret signed `body`.
fn signed_by(
    inner: &Inner,
    full_name: &str,
    signature: &str,
    body: &[u8],
) -> Result<Option<ProjectId>> {
    let Some(hex_mac) = signature.strip_prefix("sha256=") else {
        return Ok(None);
    };
    let Ok(mac) = hex::decode(hex_mac) else {
        return Ok(None);
    };
    let projects = inner.store.read(|tx| tx.projects())?;
    for project in projects {
        let settings = crate::settings::parse(&project.settings_json)?;
        let ForgeSettings::Github(github) = settings.forge else {
            continue;
        };
        if !format!("{}/{}", github.owner, github.repo).eq_ignore_ascii_case(full_name) {
            continue;
        }
        let Some(sealed) = &github.webhook_secret else {
            continue;
        };
        let secret =
            crate::forges::open_secret(&inner.secrets, crate::forges::WEBHOOK_SECRET_NAME, sealed)?;
        if verify(secret.as_bytes(), body, &mac) {
            return Ok(Some(project.id));
        }
    }
    Ok(None)
}

/// Whether `mac` is the HMAC-SHA256 of `body` under `secret` (constant-time comparison).
pub(crate) fn verify(secret: &[u8], body: &[u8], mac: &[u8]) -> bool {
    let Ok(mut expected) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    expected.update(body);
    expected.verify_slice(mac).is_ok()
}

/// The tasks of `project` a payload is about: by pull-request number, else by head commit.
fn concerned_tasks(inner: &Inner, project: ProjectId, payload: &Value) -> Result<Vec<TaskId>> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut shas: Vec<String> = Vec::new();
    for pointer in ["/pull_request/number", "/number"] {
        numbers.extend(payload.pointer(pointer).and_then(Value::as_u64));
    }
    // An issue comment on a pull request (an issue comment on a plain issue has no such key).
    if payload.pointer("/issue/pull_request").is_some() {
        numbers.extend(payload.pointer("/issue/number").and_then(Value::as_u64));
    }
    for list in [
        "/check_run/pull_requests",
        "/check_suite/pull_requests",
        "/workflow_run/pull_requests",
    ] {
        if let Some(prs) = payload.pointer(list).and_then(Value::as_array) {
            numbers.extend(prs.iter().filter_map(|pr| pr["number"].as_u64()));
        }
    }
    for pointer in [
        "/sha",
        "/check_run/head_sha",
        "/check_suite/head_sha",
        "/workflow_run/head_sha",
    ] {
        shas.extend(
            payload
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string),
        );
    }
    inner.store.read(|tx| {
        let mut tasks = Vec::new();
        for number in numbers {
            tasks.extend(tx.task_by_pr_number(project, number)?);
        }
        for sha in &shas {
            tasks.extend(tx.tasks_by_head_sha(project, sha)?);
        }
        tasks.sort();
        tasks.dedup();
        Ok(tasks)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_right_secret_and_body() {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"{\"a\":1}");
        let good = mac.finalize().into_bytes().to_vec();
        assert!(verify(b"s3cret", b"{\"a\":1}", &good));
        assert!(!verify(b"other", b"{\"a\":1}", &good));
        assert!(!verify(b"s3cret", b"{\"a\":2}", &good));
        assert!(!verify(b"s3cret", b"{\"a\":1}", &good[..31]));
    }
}
