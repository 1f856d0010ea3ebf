//! People and who may do what. Accounts have argon2id password hashes; API tokens (`atk_…`)
//! and browser sessions are random secrets the store keeps only as SHA-256 hashes, so a copy of
//! the database lets nobody in. An [`Identity`] is what a request authenticated as; an engine
//! acting for it ([`Engine::acting_as`]) sees only what that user may see: an administrator
//! everything, anyone else the projects they are a member of and their tasks — any other
//! project or task answers "not found", exactly like one that does not exist.
//!
//! The server's legacy `api-token` becomes the API token of a first administrator (`admin`) when
//! the database has no users yet, so an existing installation keeps working. Failed logins are
//! limited per account and per address; every state-changing action is appended to the audit
//! trail with who did it and how.

use crate::api::{
    AuditEntryView, MemberView, NewSessionView, NewTokenView, NewUser, TokenView, UserUpdate,
    UserView,
};
use crate::error::{EngineError, Result};
use crate::facade::Engine;
use crate::stream_access::AccessChange;
use crate::tokens::{hash_token, random_hex};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use domain::{ProjectId, TaskId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::{Tx, UserId, UserRow};

/// How long a browser session lasts, in seconds (the cookie's `Max-Age`).
pub const SESSION_LIFETIME_SECS: u64 = 7 * 24 * 3600;
const SESSION_LIFETIME: Duration = Duration::from_secs(SESSION_LIFETIME_SECS);
/// Failed logins allowed per account, and per address, within [`FAILURE_WINDOW`].
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Shortest password accepted.
const MIN_PASSWORD: usize = 10;
/// The login of the administrator the legacy `api-token` belongs to.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub login: String,
    pub admin: bool,
    pub technical: bool,
    pub via: Via,
}

/// How a request authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An API token (its id and name).
    Token { id: i64, name: String },
    /// A browser session (its id and the CSRF token state-changing requests must echo).
    Session { id: i64, csrf: String },
}

impl Identity {
    /// How it authenticated, for the audit trail.
    pub fn via_text(&self) -> String {
        match &self.via {
            Via::Token { name, .. } => format!("token {name}"),
            Via::Session { .. } => "session".to_string(),
        }
    }
}

/// Whom the engine acts for: the server process itself (the demo, background work) or a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Acting {
    #[default]
    System,
    User(Identity),
}

/// Recent failed logins per account and per address.
#[derive(Default)]
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    fn keys(login: &str, ip: IpAddr) -> [String; 2] {
        [format!("user:{}", login.to_lowercase()), format!("ip:{ip}")]
    }

    /// Takes an attempt: counted as a failure from the start (so parallel attempts cannot all
    /// slip past the limit while their passwords are checked), or refused when either the
    /// account or the address has used up its failures.
    fn try_attempt(&self, login: &str, ip: IpAddr) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let keys = Self::keys(login, ip);
        for key in &keys {
            let list = failures.entry(key.clone()).or_default();
            list.retain(|at| at.elapsed() < FAILURE_WINDOW);
            if list.len() >= MAX_FAILURES {
                return false;
            }
        }
        for key in keys {
            failures.entry(key).or_default().push(Instant::now());
        }
        true
    }

    /// An attempt that succeeded is not a failure after all.
    fn forgive(&self, login: &str, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in Self::keys(login, ip) {
            if let Some(list) = failures.get_mut(&key) {
                list.pop();
            }
        }
    }
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| EngineError::Internal(format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| EngineError::Internal(format!("cannot hash a password: {e}")))
}

fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn check_login(login: &str) -> Result<()> {
    let ok = (1..=64).contains(&login.len())
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(EngineError::InvalidInput(format!(
            "login `{login}`: use 1-64 letters, digits, `.`, `_` or `-`"
        )));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(EngineError::InvalidInput(format!(
            "the password is too short: use at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// A token as listed: never its secret.
/// A token as listed; `now` judges whether it has expired.
fn token_view(t: store::TokenRow, owner: String, owner_disabled: bool, now: i64) -> TokenView {
    TokenView {
        id: t.id,
        name: t.name,
        owner,
        created_at: t.created_at,
        last_used_at: t.last_used_at,
        expired: t.expires_at.is_some_and(|at| at <= now),
        expires_at: t.expires_at,
        revoked: t.revoked_at.is_some(),
        owner_disabled,
    }
}

fn user_view(row: &UserRow) -> UserView {
    UserView {
        id: row.id.0,
        login: row.login.clone(),
        admin: row.admin,
        technical: row.technical,
        disabled: row.disabled,
        has_password: row.password_hash.is_some(),
        created_at: row.created_at,
    }
}

/// The identity of an enabled account authenticated `via`; 401 for a missing or disabled one.
fn identity_of(tx: &Tx<'_>, user: UserId, via: Via) -> Result<Identity> {
    let user = tx.user(user)?.ok_or_else(unauthorized)?;
    if user.disabled {
        return Err(unauthorized());
    }
    Ok(Identity {
        user: user.id,
        login: user.login,
        admin: user.admin,
        technical: user.technical,
        via,
    })
}

fn not_found_user() -> EngineError {
    EngineError::NotFound("no such user: list users with `atelier admin users`".into())
}

fn unauthorized() -> EngineError {
    EngineError::Unauthorized(
        "invalid or expired credentials: log in again (`atelier login`) or use a valid API token"
            .into(),
    )
}

/// Makes sure the legacy API token works: with no users yet, it becomes the token of a first
/// administrator `admin`; a token with that hash that exists (even revoked) is left as it is.
pub(crate) fn bootstrap(store: &store::Store, legacy_token: Option<&str>) -> Result<()> {
    let Some(token) = legacy_token else {
        return Ok(());
    };
    let hash = hash_token(token);
    store.write(|tx| {
        if tx.user_count()? > 0 {
            return Ok::<_, EngineError>(());
        }
        let admin = tx.insert_user(BOOTSTRAP_ADMIN, None, true, true)?;
        tx.insert_token(admin, "server api-token", &hash, None)?;
        tx.audit(
            "atelier",
            "startup",
            "user.create",
            BOOTSTRAP_ADMIN,
            Some("the server's api-token became this administrator's token"),
        )?;
        tracing::info!(
            "created the administrator `{BOOTSTRAP_ADMIN}` holding the server's api-token; \
             add people with `atelier admin create-user`"
        );
        Ok(())
    })
}

impl Engine {
    /// The engine acting for `who`: every call checks what they may see and do.
    pub fn acting_as(&self, who: Identity) -> Engine {
        let mut engine = self.clone();
        engine.acting = Acting::User(who);
        engine
    }

    /// The identity of an `Authorization: Bearer` API token, or 401.
    pub fn authenticate_token(&self, token: &str) -> Result<Identity> {
        let now = store::now_ms();
        let hash = hash_token(token);
        let (row, who) = self.inner.store.read(|tx| {
            let row = tx
                .live_token_by_hash(&hash, now)?
                .ok_or_else(unauthorized)?;
            let via = Via::Token {
                id: row.id,
                name: row.name.clone(),
            };
            Ok::<_, EngineError>((row.clone(), identity_of(tx, row.user_id, via)?))
        })?;
        // Last use to the minute is enough: a busy client's requests stay reads.
        if row.last_used_at.is_none_or(|at| now - at > 60_000) {
            self.inner.store.write(|tx| tx.token_used(row.id, now))?;
        }
        Ok(who)
    }

    /// The identity of a session cookie's secret, or 401.
    pub fn authenticate_session(&self, secret: &str) -> Result<Identity> {
        let now = store::now_ms();
        self.inner.store.read(|tx| {
            let session = tx
                .live_session_by_hash(&hash_token(secret), now)?
                .ok_or_else(unauthorized)?;
            let via = Via::Session {
                id: session.id,
                csrf: session.csrf,
            };
            identity_of(tx, session.user_id, via)
        })
    }

    /// Checks a password and opens a browser session (a fresh secret every time: a session is
    /// never carried over a login). Failed attempts are limited per account and per address.
    pub async fn login(&self, login: &str, password: &str, from: IpAddr) -> Result<NewSessionView> {
        let limiter = &self.inner.logins;
        if !limiter.try_attempt(login, from) {
            return Err(EngineError::TooManyRequests(
                "too many failed logins: wait 15 minutes and try again".into(),
            ));
        }
        let user = self.inner.store.read(|tx| tx.user_by_login(login))?;
        // The hash is checked on a blocking thread: argon2 takes tens of milliseconds.
        let candidate = user.clone();
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || match candidate {
            Some(UserRow {
                password_hash: Some(hash),
                disabled: false,
                ..
            }) => password_matches(&password, &hash),
            _ => false,
        })
        .await
        .map_err(|e| EngineError::Internal(format!("password check: {e}")))?;
        let Some(user) = user.filter(|_| matches) else {
            return Err(EngineError::Unauthorized("wrong login or password".into()));
        };
        limiter.forgive(login, from);
        let secret = format!("ats_{}", random_hex(32));
        let csrf = random_hex(16);
        let expires_at = store::now_ms() + SESSION_LIFETIME.as_millis() as i64;
        self.inner.store.write(|tx| {
            tx.insert_session(user.id, &hash_token(&secret), &csrf, expires_at)?;
            tx.audit(&user.login, "password", "session.login", &user.login, None)?;
            Ok::<_, EngineError>(())
        })?;
        Ok(NewSessionView {
            session: secret,
            csrf,
            expires_at,
            user: user_view(&user),
        })
    }

    /// Ends the caller's session (a token caller has none: nothing happens).
    pub fn logout(&self) -> Result<()> {
        let who = self.identity()?;
        if let Via::Session { id, .. } = &who.via {
            self.inner.store.write(|tx| {
                tx.revoke_session(*id)?;
                tx.audit(&who.login, "session", "session.logout", &who.login, None)?;
                Ok::<_, EngineError>(())
            })?;
            self.inner.streams.access_changed(AccessChange::Credential);
        }
        Ok(())
    }

    /// The caller's own account.
    pub fn me(&self) -> Result<UserView> {
        let who = self.identity()?;
        let row = self
            .inner
            .store
            .read(|tx| tx.user(who.user))?
            .ok_or_else(not_found_user)?;
        Ok(user_view(&row))
    }

    /// Creates an account (administrators only).
    pub async fn create_user(&self, req: NewUser) -> Result<UserView> {
        self.require_admin("create users")?;
        check_login(&req.login)?;
        let hash = match &req.password {
            Some(password) => {
                check_password(password)?;
                let password = password.clone();
                Some(
                    tokio::task::spawn_blocking(move || hash_password(&password))
                        .await
                        .map_err(|e| EngineError::Internal(format!("password hash: {e}")))??,
                )
            }
            None => None,
        };
        let row = self.inner.store.write(|tx| {
            if tx.user_by_login(&req.login)?.is_some() {
                return Err(EngineError::Conflict(format!(
                    "a user `{}` already exists",
                    req.login
                )));
            }
            let id = tx.insert_user(&req.login, hash.as_deref(), req.admin, req.technical)?;
            self.audit_in(tx, "user.create", &req.login, None)?;
            tx.user(id)?.ok_or_else(not_found_user)
        })?;
        Ok(user_view(&row))
    }

    /// Whether the server still needs its first-run setup: no account has a password yet (only
    /// the bootstrap administrator's `api-token` can act), so nobody can sign in to a browser.
    pub fn setup_needed(&self) -> bool {
        match self.inner.store.read(|tx| tx.users()) {
            Ok(users) => users.iter().all(|user| user.password_hash.is_none()),
            Err(err) => {
                tracing::error!(error = %err, "cannot read the accounts");
                false
            }
        }
    }

    /// The first-run setup: creates an administrator (technical) who signs in with `login` and
    /// `password` (the same rules as `create_user`), proved by `setup_token`, the server's
    /// `api-token` (any live API token of an administrator). Only while [`Engine::setup_needed`]:
    /// afterwards it is a 409 saying to sign in instead; a token that is not an administrator's
    /// is a 401. Audited as `user.create` by `setup`.
    pub async fn setup_first_admin(
        &self,
        setup_token: &str,
        login: &str,
        password: &str,
    ) -> Result<UserView> {
        let done = || {
            EngineError::Conflict(
                "setup is already done: an account can sign in; sign in instead".into(),
            )
        };
        if !self.setup_needed() {
            return Err(done());
        }
        let who = self.authenticate_token(setup_token).map_err(|_| {
            EngineError::Unauthorized(
                "wrong setup token: give the server's api-token (`token` in                  <data-dir>/server.json, or the --api-token it was started with)"
                    .into(),
            )
        })?;
        if !who.admin {
            return Err(EngineError::Unauthorized(
                "wrong setup token: it is not an administrator's; give the server's api-token"
                    .into(),
            ));
        }
        check_login(login)?;
        check_password(password)?;
        let password = password.to_string();
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| EngineError::Internal(format!("password hash: {e}")))??;
        let row = self.inner.store.write(|tx| {
            // Checked again in the writing transaction: two setups at once make one account.
            if tx.users()?.iter().any(|user| user.password_hash.is_some()) {
                return Err(done());
            }
            if tx.user_by_login(login)?.is_some() {
                return Err(EngineError::Conflict(format!(
                    "a user `{login}` already exists: choose another login"
                )));
            }
            let id = tx.insert_user(login, Some(&hash), true, true)?;
            tx.audit("setup", &who.via_text(), "user.create", login, None)?;
            tx.user(id)?.ok_or_else(not_found_user)
        })?;
        tracing::info!(%login, "first-run setup: administrator created");
        Ok(user_view(&row))
    }

    /// Changes an account's flags (administrators only). Disabling one ends its sessions; its
    /// tokens are refused while it stays disabled. An administrator cannot disable or demote
    /// themselves, and no change may leave no enabled administrator (both checked in the writing
    /// transaction, so two administrators demoting each other at once leave one).
    pub fn update_user(&self, login: &str, update: UserUpdate) -> Result<UserView> {
        self.require_admin("change accounts")?;
        let row = self.inner.store.write(|tx| {
            let user = tx.user_by_login(login)?.ok_or_else(not_found_user)?;
            if let Acting::User(who) = &self.acting
                && who.user == user.id
                && (update.disabled == Some(true) || update.admin == Some(false))
            {
                return Err(EngineError::InvalidInput(
                    "you cannot disable or demote yourself: ask another administrator".into(),
                ));
            }
            // The caller's own flags read again in this transaction: an administrator demoted or
            // disabled by a request that committed first no longer changes accounts.
            if let Acting::User(who) = &self.acting {
                match tx.user(who.user)? {
                    Some(me) if me.admin && !me.disabled => {}
                    _ => {
                        return Err(EngineError::Forbidden(
                            "only an administrator may change accounts".into(),
                        ));
                    }
                }
            }
            let admin = update.admin.unwrap_or(user.admin);
            let technical = update.technical.unwrap_or(user.technical);
            let disabled = update.disabled.unwrap_or(user.disabled);
            set_flags_keeping_an_admin(tx, &user, admin, technical, disabled)?;
            if disabled {
                tx.revoke_sessions_of(user.id)?;
            }
            self.audit_in(
                tx,
                "user.update",
                login,
                Some(&format!(
                    "admin={admin} technical={technical} disabled={disabled}"
                )),
            )?;
            tx.user(user.id)?.ok_or_else(not_found_user)
        })?;
        self.inner.streams.access_changed(AccessChange::People);
        Ok(user_view(&row))
    }

    /// Every account (administrators only).
    pub fn list_users(&self) -> Result<Vec<UserView>> {
        self.require_admin("list users")?;
        let rows = self.inner.store.read(|tx| tx.users())?;
        Ok(rows.iter().map(user_view).collect())
    }

    /// Creates an API token for the caller; the secret is in the answer and nowhere else.
    pub fn create_token(&self, name: &str, expires_in_days: Option<u32>) -> Result<NewTokenView> {
        let who = self.identity()?;
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(EngineError::InvalidInput(
                "a token needs a name of 1-100 characters (what it is for, e.g. `laptop`)".into(),
            ));
        }
        let expires_at =
            expires_in_days.map(|days| store::now_ms() + i64::from(days) * 24 * 3600 * 1000);
        let secret = format!("atk_{}", random_hex(32));
        let id = self.inner.store.write(|tx| {
            let id = tx.insert_token(who.user, name, &hash_token(&secret), expires_at)?;
            self.audit_in(tx, "token.create", name, None)?;
            Ok::<_, EngineError>(id)
        })?;
        Ok(NewTokenView {
            id,
            name: name.to_string(),
            token: secret,
            expires_at,
        })
    }

    /// The caller's tokens (never their secrets).
    pub fn list_tokens(&self) -> Result<Vec<TokenView>> {
        let who = self.identity()?;
        let rows = self.inner.store.read(|tx| tx.tokens_of(who.user))?;
        let now = store::now_ms();
        // The caller is signed in, so their account is not disabled.
        Ok(rows
            .into_iter()
            .map(|t| token_view(t, who.login.clone(), false, now))
            .collect())
    }

    /// Every account's tokens, with their owners (administrators only; never the secrets).
    pub fn list_all_tokens(&self) -> Result<Vec<TokenView>> {
        self.require_admin("list everyone's tokens")?;
        let rows = self.inner.store.read(|tx| tx.all_tokens())?;
        let now = store::now_ms();
        Ok(rows
            .into_iter()
            .map(|(t, owner, disabled)| token_view(t, owner, disabled, now))
            .collect())
    }

    /// Revokes one of the caller's tokens (an administrator: anyone's). Takes effect on the
    /// next request, and ends the streams it opened. Audited as `token.revoke` of the token's
    /// name, with its owner's login when it was someone else's.
    pub fn revoke_token(&self, id: i64) -> Result<()> {
        let who = self.identity()?;
        self.inner.store.write(|tx| {
            let token = tx
                .token(id)?
                .filter(|t| who.admin || t.user_id == who.user)
                .ok_or_else(|| EngineError::NotFound(format!("no token {id}")))?;
            tx.revoke_token(id)?;
            let owner = match token.user_id == who.user {
                true => None,
                false => tx.user(token.user_id)?.map(|u| format!("of {}", u.login)),
            };
            self.audit_in(tx, "token.revoke", &token.name, owner.as_deref())?;
            Ok::<_, EngineError>(())
        })?;
        self.inner.streams.access_changed(AccessChange::Credential);
        Ok(())
    }

    /// Adds `login` to a project as `owner` or `member` (administrators and the project's
    /// owners).
    pub fn set_member(&self, project: &str, login: &str, role: &str) -> Result<()> {
        if !matches!(role, "owner" | "member") {
            return Err(EngineError::InvalidInput(format!(
                "role `{role}`: use `owner` or `member`"
            )));
        }
        self.inner.store.write(|tx| {
            let project = self.visible_project(tx, project)?;
            self.require_owner(tx, project.id)?;
            let user = tx.user_by_login(login)?.ok_or_else(not_found_user)?;
            tx.set_membership(project.id, user.id, role)?;
            self.audit_in(
                tx,
                "project.member",
                &project.name,
                Some(&format!("{login} is {role}")),
            )?;
            Ok::<_, EngineError>(())
        })?;
        self.inner.streams.access_changed(AccessChange::People);
        Ok(())
    }

    /// Removes `login` from a project (administrators and the project's owners); "not found"
    /// when they were not a member.
    pub fn remove_member(&self, project: &str, login: &str) -> Result<()> {
        self.inner.store.write(|tx| {
            let project = self.visible_project(tx, project)?;
            self.require_owner(tx, project.id)?;
            let user = tx.user_by_login(login)?.ok_or_else(not_found_user)?;
            if !tx.remove_membership(project.id, user.id)? {
                return Err(EngineError::NotFound(format!(
                    "{login} is not a member of {}",
                    project.name
                )));
            }
            self.audit_in(tx, "project.member.remove", &project.name, Some(login))?;
            Ok::<_, EngineError>(())
        })?;
        self.inner.streams.access_changed(AccessChange::People);
        Ok(())
    }

    /// The members of a project the caller may see, with their roles.
    pub fn members(&self, project: &str) -> Result<Vec<MemberView>> {
        self.inner.store.read(|tx| {
            let project = self.visible_project(tx, project)?;
            Ok(tx
                .members(project.id)?
                .into_iter()
                .map(|(_, login, role)| MemberView { login, role })
                .collect())
        })
    }

    /// The audit trail, newest first (administrators only).
    pub fn audit_log(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntryView>> {
        self.require_admin("read the audit log")?;
        let rows = self
            .inner
            .store
            .read(|tx| tx.audit_page(before, limit.clamp(1, 500)))?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntryView {
                id: r.id,
                at: r.at,
                actor: r.actor,
                via: r.via,
                action: r.action,
                target: r.target,
                detail: r.detail,
            })
            .collect())
    }

    /// The caller, or 401 for the system (routes always act for someone).
    pub(crate) fn identity(&self) -> Result<&Identity> {
        match &self.acting {
            Acting::User(who) => Ok(who),
            Acting::System => Err(EngineError::Unauthorized(
                "this needs a signed-in user".into(),
            )),
        }
    }

    pub(crate) fn require_admin(&self, what: &str) -> Result<()> {
        match &self.acting {
            Acting::System => Ok(()),
            Acting::User(who) if who.admin => Ok(()),
            Acting::User(_) => Err(EngineError::Forbidden(format!(
                "only an administrator may {what}"
            ))),
        }
    }

    /// Whether the caller may see the project (administrators and the system see all).
    pub(crate) fn sees_project(&self, tx: &Tx<'_>, project: ProjectId) -> Result<bool> {
        match &self.acting {
            Acting::System => Ok(true),
            Acting::User(who) if who.admin => Ok(true),
            Acting::User(who) => Ok(tx.membership(project, who.user)?.is_some()),
        }
    }

    /// The project by name or id if the caller may see it; "not found" otherwise.
    pub(crate) fn visible_project(
        &self,
        tx: &Tx<'_>,
        name_or_id: &str,
    ) -> Result<store::ProjectRow> {
        let project = crate::views::find_project(tx, name_or_id)?;
        if self.sees_project(tx, project.id)? {
            Ok(project)
        } else {
            Err(crate::views::no_project(name_or_id))
        }
    }

    /// Checks the caller may see the task (through its project); "not found" otherwise.
    pub(crate) fn check_task(&self, tx: &Tx<'_>, id: TaskId) -> Result<()> {
        let task = tx
            .task(id)?
            .ok_or_else(|| crate::transition::not_found(id))?;
        if self.sees_project(tx, task.project_id)? {
            Ok(())
        } else {
            Err(crate::transition::not_found(id))
        }
    }

    /// Administrators, the system and the project's owners.
    pub(crate) fn require_owner(&self, tx: &Tx<'_>, project: ProjectId) -> Result<()> {
        match &self.acting {
            Acting::System => Ok(()),
            Acting::User(who) if who.admin => Ok(()),
            Acting::User(who) => match tx.membership(project, who.user)?.as_deref() {
                Some("owner") => Ok(()),
                _ => Err(EngineError::Forbidden(
                    "only the project's owners and administrators may do this".into(),
                )),
            },
        }
    }

    /// Appends `action` on `target` by the caller to the audit trail, in `tx`.
    pub(crate) fn audit_in(
        &self,
        tx: &Tx<'_>,
        action: &str,
        target: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        let (actor, via) = match &self.acting {
            Acting::System => ("atelier".to_string(), "server".to_string()),
            Acting::User(who) => (who.login.clone(), who.via_text()),
        };
        tx.audit(&actor, &via, action, target, detail)?;
        Ok(())
    }

    /// The user whose memberships limit what lists show (`None`: everything is visible).
    pub(crate) fn member_filter(&self) -> Option<UserId> {
        match &self.acting {
            Acting::User(who) if !who.admin => Some(who.user),
            _ => None,
        }
    }

    /// The user a task created now belongs to (`None` when the server itself creates it).
    pub(crate) fn acting_user(&self) -> Option<&Identity> {
        match &self.acting {
            Acting::User(who) => Some(who),
            Acting::System => None,
        }
    }
}

/// Sets an account's flags unless that would leave no enabled administrator — counted in the
/// same transaction, so concurrent changes cannot each see another administrator remaining.
pub(crate) fn set_flags_keeping_an_admin(
    tx: &Tx<'_>,
    user: &UserRow,
    admin: bool,
    technical: bool,
    disabled: bool,
) -> Result<()> {
    let was_enabled_admin = user.admin && !user.disabled;
    tx.set_user_flags(user.id, admin, technical, disabled)?;
    let stays_enabled_admin = admin && !disabled;
    if was_enabled_admin && !stays_enabled_admin && tx.enabled_admin_count()? == 0 {
        return Err(EngineError::InvalidInput(format!(
            "`{}` is the last enabled administrator: make someone else an administrator first",
            user.login
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Demotes `login` in its own transaction, as `update_user` does.
    fn demote(store: &store::Store, login: &str) -> Result<()> {
        store.write(|tx| {
            let user = tx.user_by_login(login)?.ok_or_else(not_found_user)?;
            set_flags_keeping_an_admin(tx, &user, false, user.technical, user.disabled)
        })
    }

    fn enabled_admins(store: &store::Store) -> u32 {
        store.read(|tx| tx.enabled_admin_count()).unwrap()
    }

    #[test]
    fn a_change_that_would_leave_no_enabled_administrator_is_refused() {
        let store = store::Store::open_memory().unwrap();
        store
            .write(|tx| {
                tx.insert_user("ann", None, true, false)?;
                tx.insert_user("bob", None, true, false)?;
                tx.insert_user("cid", None, false, false)
            })
            .unwrap();
        demote(&store, "ann").unwrap();
        assert_eq!(enabled_admins(&store), 1);
        let refused = demote(&store, "bob").unwrap_err();
        assert!(
            matches!(&refused, EngineError::InvalidInput(m) if m.contains("last enabled administrator")),
            "{refused:?}"
        );
        let bob = store.read(|tx| tx.user_by_login("bob")).unwrap().unwrap();
        assert!(bob.admin, "the refused change was rolled back");
        let disabled =
            store.write(|tx| set_flags_keeping_an_admin(tx, &bob, true, bob.technical, true));
        assert!(disabled.is_err(), "disabling the last one is refused too");
        assert_eq!(enabled_admins(&store), 1);
        // A change to someone who is not an administrator is not held up.
        let cid = store.read(|tx| tx.user_by_login("cid")).unwrap().unwrap();
        store
            .write(|tx| set_flags_keeping_an_admin(tx, &cid, false, true, true))
            .unwrap();
    }

    #[test]
    fn two_administrators_demoting_each_other_at_once_leave_one() {
        for _ in 0..20 {
            let store = std::sync::Arc::new(store::Store::open_memory().unwrap());
            store
                .write(|tx| {
                    tx.insert_user("ann", None, true, false)?;
                    tx.insert_user("bob", None, true, false)
                })
                .unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let racers: Vec<_> = ["ann", "bob"]
                .into_iter()
                .map(|login| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        demote(&store, login).is_ok()
                    })
                })
                .collect();
            let done: Vec<bool> = racers.into_iter().map(|r| r.join().unwrap()).collect();
            assert_eq!(
                done.iter().filter(|ok| **ok).count(),
                1,
                "one demotion goes through, the other is refused: {done:?}"
            );
            assert_eq!(enabled_admins(&store), 1);
        }
    }

    #[test]
    fn passwords_are_hashed_with_argon2id_and_verified() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("wrong horse battery", &hash));
        assert!(!password_matches("correct horse battery", "not a hash"));
    }

    #[test]
    fn logins_and_passwords_are_checked() {
        assert!(check_login("ann.smith-2").is_ok());
        assert!(check_login("").is_err());
        assert!(check_login("ann smith").is_err());
        assert!(check_login(&"a".repeat(65)).is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pass").is_ok());
    }

    #[test]
    fn failed_logins_are_limited_per_account_and_per_address() {
        let limiter = LoginLimiter::default();
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.try_attempt("ann", here));
        }
        assert!(!limiter.try_attempt("ann", here));
        assert!(
            !limiter.try_attempt("ANN", there),
            "per account, whatever the address"
        );
        assert!(
            !limiter.try_attempt("bob", here),
            "per address, whatever the account"
        );
        assert!(limiter.try_attempt("bob", there));
        limiter.forgive("bob", there);
        for _ in 0..MAX_FAILURES - 1 {
            assert!(limiter.try_attempt("bob", there));
        }
        assert!(
            limiter.try_attempt("bob", there),
            "a forgiven attempt is not a failure"
        );
        assert!(!limiter.try_attempt("bob", there));
    }
}
