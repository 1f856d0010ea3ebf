//! The orchestrator: executes the domain's decisions. It owns the store, the harness registry,
//! the forge and the live runs; schedules queued runs under the concurrency caps; supervises each
//! run's child process; recovers after a crash; replays unfinished side-effect intents.

mod accounts;
pub mod api;
mod attachments;
mod background;
mod checks;
mod confine;
mod crash;
mod credentials;
mod dispatch;
mod doc_edit;
mod doc_file;
pub mod error;
mod evidence;
mod facade;
mod findings;
mod follow_up;
mod forges;
mod guards;
mod hub;
mod ingest;
mod inner;
mod insight;
mod logs;
mod outbox;
pub mod pipelines;
mod ports;
mod pr_body;
pub mod prompt;
mod prompt_admin;
pub mod redact;
mod repo_lock;
mod secrets;
mod session;
mod settings;
mod shown;
mod stream;
mod stream_access;
mod supervisor;
mod task_creation;
mod task_pipeline;
mod tokens;
mod transition;
mod views;
mod warm;
mod webhook;
pub mod workspace;

pub use accounts::{BOOTSTRAP_ADMIN, Identity, SESSION_LIFETIME_SECS, Via};
pub use attachments::MAX_ATTACHMENT_BYTES;
pub use error::{EngineError, Result};
pub use facade::{Engine, EngineConfig, SandboxMode, default_homes_dir};
pub use store::UserId;
pub use webhook::{WebhookDelivery, WebhookOutcome};

/// The forge's view of a stored pull-request record.
fn forge_pr(row: &store::PullRequestRow) -> forge::PullRequest {
    forge::PullRequest {
        url: row.url.clone(),
        number: row.number,
        branch: row.branch.clone(),
        base: row.base.clone(),
        head_sha: row.head_sha.clone(),
        remote: row.remote.clone(),
    }
}
