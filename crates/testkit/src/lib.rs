//! Dev-only helpers for Atelier's end-to-end tests. Nothing here ships in the `atelier` binary;
//! crates list `testkit` under `[dev-dependencies]` only.
//!
//! - [`sample_repo`]: a real git repository with a bare `origin`, as a user's project would be.
//! - [`wait_until`]: wait for a condition with a deadline (tests never sleep a fixed time).
//! - [`ServerProcess`]: the real `atelier serve` as a child process, plus a small JSON client.
//! - [`HungRemote`]: a loopback git remote that accepts connections and never answers.
//! - [`hostile`]: what a hostile agent plants in git's files to make the server's git run a
//!   command.
//!
//! Like the product, these helpers use real git and real processes; they only construct
//! processes because they are test code (production process creation lives in `harness` and
//! `git`).

mod client;
pub mod hostile;
mod hung;
mod repo;
mod server;
mod wait;

pub use client::ApiClient;
pub use hung::HungRemote;
pub use repo::{SampleRepo, commit_file, git, sample_repo, set_identity};
pub use server::{ServerInfo, ServerProcess};
pub use wait::wait_until;
