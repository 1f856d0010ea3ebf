//! What a user's live-stream follower may see, and checking it again while the stream is open.
//!
//! A follower acting for a user holds a [`Visible`]: the account, the token or session the
//! stream was opened with, whether the account is an administrator and the projects it belongs
//! to. It is read when the follower starts, again on every [`AccessChange`] the engine
//! broadcasts after a commit (`hub::Streams::access_changed`), and every [`RECHECK`] (so a
//! credential that expires ends its stream however busy the stream is). A task's project never
//! changes, so it is looked up once per task and kept — a task deleted later still has one, and
//! its `deleted` message reaches the followers who saw it.

use crate::accounts::{Identity, Via};
use crate::error::Result;
use crate::inner::Inner;
use domain::{ProjectId, TaskId};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How often a follower reads its account and credential again without being told.
pub const RECHECK: Duration = Duration::from_secs(15);

/// What changed, broadcast to every follower after the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    /// A token revoked or a session ended: credentials are read again, nothing is announced.
    Credential,
    /// A membership or an account's flags changed: followers whose access changed are told.
    People,
    /// A project was added or its settings changed: followers who see it are told.
    Project(ProjectId),
}

/// The outcome of reading a follower's access again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The account is gone or disabled, or the credential revoked or expired: the stream ends.
    Gone,
    /// Nothing the follower sees changed.
    Same,
    /// The administrator flag or the projects changed.
    Changed,
}

/// What a user's stream shows: everything for an administrator, else the items of tasks in
/// projects they belong to.
pub(crate) struct Visible {
    user: store::UserId,
    /// The token or session the stream was opened with.
    via: Via,
    admin: bool,
    member_of: HashSet<ProjectId>,
    /// Each task's project (`None`: the task did not exist when first looked up).
    project_of: HashMap<TaskId, Option<ProjectId>>,
}

impl Visible {
    /// The access of `who`, as authenticated; [`Visible::recheck`] reads its projects.
    pub(crate) fn of(who: &Identity) -> Visible {
        Visible {
            user: who.user,
            via: who.via.clone(),
            admin: who.admin,
            member_of: HashSet::new(),
            project_of: HashMap::new(),
        }
    }

    /// Reads the account, the credential and the memberships again.
    pub(crate) fn recheck(&mut self, inner: &Inner) -> Result<Checked> {
        let now = store::now_ms();
        let (user, live, member_of) = inner.store.read(|tx| {
            let live = match &self.via {
                Via::Token { id, .. } => tx.token(*id)?.is_some_and(|t| {
                    t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now)
                }),
                Via::Session { id, .. } => tx.session_is_live(*id, now)?,
            };
            let member_of: HashSet<ProjectId> =
                tx.projects_of_member(self.user)?.into_iter().collect();
            Ok::<_, store::StoreError>((tx.user(self.user)?, live, member_of))
        })?;
        let Some(user) = user.filter(|u| live && !u.disabled) else {
            return Ok(Checked::Gone);
        };
        let changed = user.admin != self.admin || member_of != self.member_of;
        self.admin = user.admin;
        self.member_of = member_of;
        Ok(if changed {
            Checked::Changed
        } else {
            Checked::Same
        })
    }

    /// Whether the follower sees `project`.
    pub(crate) fn sees_project(&self, project: ProjectId) -> bool {
        self.admin || self.member_of.contains(&project)
    }

    /// Whether the follower is an administrator (as last checked).
    pub(crate) fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether the follower sees `task`'s items.
    pub(crate) fn sees(&mut self, inner: &Inner, task: TaskId) -> Result<bool> {
        if self.admin {
            return Ok(true);
        }
        let project = match self.project_of.get(&task) {
            Some(project) => *project,
            None => {
                let project = inner
                    .store
                    .read(|tx| Ok::<_, store::StoreError>(tx.task(task)?.map(|t| t.project_id)))?;
                self.project_of.insert(task, project);
                project
            }
        };
        Ok(project.is_some_and(|p| self.member_of.contains(&p)))
    }
}
