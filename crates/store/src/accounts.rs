//! People: accounts (argon2id password hashes, never passwords), their API tokens and browser
//! sessions (stored as SHA-256 hashes of the secret, never the secret), project membership, the
//! append-only audit trail, and task ownership. The rules (who may do what) live in the engine.

use crate::{Result, Tx, now_ms};
use domain::{ProjectId, TaskId};
use rusqlite::{OptionalExtension, Row, params};

/// A user's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: UserId,
    pub login: String,
    /// The argon2id PHC string; `None` for an account that cannot log in with a password.
    pub password_hash: Option<String>,
    pub admin: bool,
    pub technical: bool,
    pub disabled: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub user_id: UserId,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: UserId,
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    /// The user's login (or `agent`, `github` for what no user did).
    pub actor: String,
    /// How: `token <name>`, `session`, `run <id>`, `webhook`.
    pub via: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
}

const USER_COLUMNS: &str = "id, login, password_hash, admin, technical, disabled, created_at";

fn user(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: UserId(r.get(0)?),
        login: r.get(1)?,
        password_hash: r.get(2)?,
        admin: r.get(3)?,
        technical: r.get(4)?,
        disabled: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn token(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        user_id: UserId(r.get(1)?),
        name: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

const TOKEN_COLUMNS: &str = "id, user_id, name, created_at, last_used_at, expires_at, revoked_at";

impl Tx<'_> {
    pub fn insert_user(
        &self,
        login: &str,
        password_hash: Option<&str>,
        admin: bool,
        technical: bool,
    ) -> Result<UserId> {
        self.tx.execute(
            "INSERT INTO users (login, password_hash, admin, technical, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![login, password_hash, admin, technical, now_ms()],
        )?;
        Ok(UserId(self.tx.last_insert_rowid()))
    }

    pub fn user(&self, id: UserId) -> Result<Option<UserRow>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id.0],
                user,
            )
            .optional()?)
    }

    pub fn user_by_login(&self, login: &str) -> Result<Option<UserRow>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE login = ?1"),
                [login],
                user,
            )
            .optional()?)
    }

    pub fn users(&self) -> Result<Vec<UserRow>> {
        let mut stmt = self
            .tx
            .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?;
        let rows = stmt.query_map([], user)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn user_count(&self) -> Result<u32> {
        Ok(self
            .tx
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    /// How many accounts are administrators and not disabled.
    pub fn enabled_admin_count(&self) -> Result<u32> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM users WHERE admin AND NOT disabled",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn set_user_password(&self, id: UserId, password_hash: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![id.0, password_hash],
        )?;
        Ok(())
    }

    pub fn set_user_flags(
        &self,
        id: UserId,
        admin: bool,
        technical: bool,
        disabled: bool,
    ) -> Result<()> {
        self.tx.execute(
            "UPDATE users SET admin = ?2, technical = ?3, disabled = ?4 WHERE id = ?1",
            params![id.0, admin, technical, disabled],
        )?;
        Ok(())
    }

    /// Records an API token by the hash of its secret.
    pub fn insert_token(
        &self,
        user: UserId,
        name: &str,
        hash: &str,
        expires_at: Option<i64>,
    ) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO api_tokens (user_id, name, hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user.0, name, hash, now_ms(), expires_at],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// The live token with this hash (not revoked, not expired at `now`).
    pub fn live_token_by_hash(&self, hash: &str, now: i64) -> Result<Option<TokenRow>> {
        Ok(self
            .tx
            .query_row(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?1 AND revoked_at IS NULL
                     AND (expires_at IS NULL OR expires_at > ?2)"
                ),
                params![hash, now],
                token,
            )
            .optional()?)
    }

    pub fn token_used(&self, id: i64, at: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    pub fn tokens_of(&self, user: UserId) -> Result<Vec<TokenRow>> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([user.0], token)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every user's tokens with their owner's login and whether the owner is disabled, in
    /// creation order (the administrators' list).
    pub fn all_tokens(&self) -> Result<Vec<(TokenRow, String, bool)>> {
        let columns = TOKEN_COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {columns}, u.login, u.disabled FROM api_tokens t
             JOIN users u ON u.id = t.user_id ORDER BY t.id"
        ))?;
        let rows = stmt.query_map([], |r| Ok((token(r)?, r.get(7)?, r.get(8)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn token(&self, id: i64) -> Result<Option<TokenRow>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
                token,
            )
            .optional()?)
    }

    /// Revokes a token; false when it was already revoked or does not exist.
    pub fn revoke_token(&self, id: i64) -> Result<bool> {
        Ok(self.tx.execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now_ms()],
        )? == 1)
    }

    pub fn insert_session(
        &self,
        user: UserId,
        hash: &str,
        csrf: &str,
        expires_at: i64,
    ) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO sessions (user_id, hash, csrf, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user.0, hash, csrf, now_ms(), expires_at],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// The live session with this hash (not revoked, not expired at `now`).
    pub fn live_session_by_hash(&self, hash: &str, now: i64) -> Result<Option<SessionRow>> {
        Ok(self
            .tx
            .query_row(
                "SELECT id, user_id, csrf, created_at, expires_at FROM sessions
                 WHERE hash = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                params![hash, now],
                |r| {
                    Ok(SessionRow {
                        id: r.get(0)?,
                        user_id: UserId(r.get(1)?),
                        csrf: r.get(2)?,
                        created_at: r.get(3)?,
                        expires_at: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Whether session `id` is live at `now` (not revoked, not expired).
    pub fn session_is_live(&self, id: i64, now: i64) -> Result<bool> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM sessions WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                params![id, now],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn revoke_session(&self, id: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    /// Revokes every session of a user (a password change, a disabled account).
    pub fn revoke_sessions_of(&self, user: UserId) -> Result<()> {
        self.tx.execute(
            "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
            params![user.0, now_ms()],
        )?;
        Ok(())
    }

    /// Adds or changes a membership (`owner` or `member`).
    pub fn set_membership(&self, project: ProjectId, user: UserId, role: &str) -> Result<()> {
        self.tx.execute(
            "INSERT INTO memberships (project_id, user_id, role) VALUES (?1, ?2, ?3)
             ON CONFLICT(project_id, user_id) DO UPDATE SET role = ?3",
            params![project.0, user.0, role],
        )?;
        Ok(())
    }

    pub fn remove_membership(&self, project: ProjectId, user: UserId) -> Result<bool> {
        Ok(self.tx.execute(
            "DELETE FROM memberships WHERE project_id = ?1 AND user_id = ?2",
            params![project.0, user.0],
        )? == 1)
    }

    /// The user's role in the project, if a member.
    pub fn membership(&self, project: ProjectId, user: UserId) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row(
                "SELECT role FROM memberships WHERE project_id = ?1 AND user_id = ?2",
                params![project.0, user.0],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The projects `user` is a member (or owner) of.
    pub fn projects_of_member(&self, user: UserId) -> Result<Vec<ProjectId>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT project_id FROM memberships WHERE user_id = ?1")?;
        let rows = stmt.query_map([user.0], |r| Ok(ProjectId(r.get(0)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// `(user, login, role)` of the project's members.
    pub fn members(&self, project: ProjectId) -> Result<Vec<(UserId, String, String)>> {
        let mut stmt = self.tx.prepare(
            "SELECT u.id, u.login, m.role FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.project_id = ?1 ORDER BY u.login",
        )?;
        let rows = stmt.query_map([project.0], |r| {
            Ok((UserId(r.get(0)?), r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_task_owner(&self, task: TaskId, user: UserId) -> Result<()> {
        self.tx.execute(
            "UPDATE tasks SET owner_id = ?2 WHERE id = ?1",
            params![task.0, user.0],
        )?;
        Ok(())
    }

    pub fn task_owner(&self, task: TaskId) -> Result<Option<UserId>> {
        Ok(self
            .tx
            .query_row("SELECT owner_id FROM tasks WHERE id = ?1", [task.0], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()?
            .flatten()
            .map(UserId))
    }

    /// Appends a line to the audit trail (never updated, never deleted).
    pub fn audit(
        &self,
        actor: &str,
        via: &str,
        action: &str,
        target: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        self.tx.execute(
            "INSERT INTO audit (at, actor, via, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now_ms(), actor, via, action, target, detail],
        )?;
        Ok(())
    }

    /// Audit lines newest first, strictly before `before` (an id) when given.
    pub fn audit_page(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditRow>> {
        let mut stmt = self.tx.prepare(
            "SELECT id, at, actor, via, action, target, detail FROM audit
             WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![before, limit], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                via: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                detail: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::tasks::tests::project;

    #[test]
    fn a_session_is_live_until_revoked_or_expired_and_memberships_list_projects() {
        let store = Store::open_memory().unwrap();
        let project = project(&store);
        let (user, session, expiring) = store
            .write(|tx| {
                let user = tx.insert_user("bob", None, false, true)?;
                let session = tx.insert_session(user, "h1", "c1", 2_000)?;
                let expiring = tx.insert_session(user, "h2", "c2", 1_000)?;
                Ok::<_, crate::StoreError>((user, session, expiring))
            })
            .unwrap();
        let live = |id: i64, now: i64| store.read(|tx| tx.session_is_live(id, now)).unwrap();
        assert!(live(session, 1_500));
        assert!(!live(expiring, 1_500), "expired");
        store.write(|tx| tx.revoke_session(session)).unwrap();
        assert!(!live(session, 1_500), "revoked");
        assert!(!live(999, 0), "unknown");

        let of = || store.read(|tx| tx.projects_of_member(user)).unwrap();
        assert!(of().is_empty());
        store
            .write(|tx| tx.set_membership(project, user, "member"))
            .unwrap();
        assert_eq!(of(), [project]);
        store
            .write(|tx| tx.remove_membership(project, user).map(|_| ()))
            .unwrap();
        assert!(of().is_empty());
    }
}
