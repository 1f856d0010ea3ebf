//! Reacting to moved branches, whoever moved them (a push over HTTP, `commit_to_base`, a merge):
//! open PRs whose head moved get the new head, a `pull_request.synchronize` and a CI run; PRs
//! whose base moved get the new base sha.

use crate::state::Hub;
use crate::{ci, gitops, webhooks};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub(crate) type Snapshot = BTreeMap<String, String>;

pub(crate) async fn snapshot(hub: &Hub, bare: &Path) -> Snapshot {
    gitops::branches(&hub.git_env(), bare).await
}

/// Compares the branches of `owner/repo` with `before` and updates its PRs; `pusher` is the
/// webhook sender.
pub(crate) async fn moved(
    hub: &Arc<Hub>,
    owner: &str,
    repo: &str,
    before: &Snapshot,
    pusher: &str,
) {
    let after = snapshot(hub, &hub.bare_path(owner, repo)).await;
    let synced = hub.with(|s| {
        let mut synced = Vec::new();
        let Some(r) = s.find_repo_mut(owner, repo) else {
            return synced;
        };
        for p in r.pulls.iter_mut().filter(|p| p.state == "open") {
            if let Some(base) = after.get(&p.base_ref) {
                p.base_sha = base.clone();
            }
            match after.get(&p.head_ref) {
                Some(head) if *head != p.head_sha && before.get(&p.head_ref) != Some(head) => {
                    let old = std::mem::replace(&mut p.head_sha, head.clone());
                    if !p.heads.contains(head) {
                        p.heads.push(head.clone());
                    }
                    p.updated_at = crate::clock::now();
                    synced.push((p.clone(), old));
                }
                _ => {}
            }
        }
        synced
    });
    for (pull, old) in synced {
        let extra = json!({"before": old, "after": pull.head_sha});
        webhooks::pull_request_with(hub, owner, repo, &pull, "synchronize", pusher, extra);
        ci::start(hub, owner, repo, pull.number);
    }
}
