//! Each user's own agent settings: their harness credentials (values sealed by the engine before
//! they get here — the store never sees a plain secret) and their model/effort per stage, which
//! override a project's roles for the tasks they own.

use crate::{Result, Tx, UserId, now_ms};
use domain::Stage;
use rusqlite::params;

/// One stored credential: which variable of which harness, when it was last set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub harness: String,
    pub name: String,
    /// The sealed value (`sealed:v1:…`), opened only by the engine for a run.
    pub sealed_value: String,
    pub updated_at: i64,
}

/// A user's model (and effort) for one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserModelRow {
    pub stage: Stage,
    pub model: String,
    pub effort: Option<String>,
    pub updated_at: i64,
}

impl Tx<'_> {
    /// Replaces every credential the user has for `harness` with `values` (name, sealed value).
    pub fn replace_credentials(
        &self,
        user: UserId,
        harness: &str,
        values: &[(String, String)],
    ) -> Result<()> {
        self.delete_credentials(user, harness)?;
        let now = now_ms();
        for (name, sealed) in values {
            self.tx.execute(
                "INSERT INTO user_credentials (user_id, harness, name, sealed_value, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user.0, harness, name, sealed, now],
            )?;
        }
        Ok(())
    }

    /// Removes the user's credentials for `harness`; how many there were.
    pub fn delete_credentials(&self, user: UserId, harness: &str) -> Result<usize> {
        Ok(self.tx.execute(
            "DELETE FROM user_credentials WHERE user_id = ?1 AND harness = ?2",
            params![user.0, harness],
        )?)
    }

    /// The user's credentials (of one harness, or all), by harness then name.
    pub fn credentials_of(
        &self,
        user: UserId,
        harness: Option<&str>,
    ) -> Result<Vec<CredentialRow>> {
        let mut stmt = self.tx.prepare(
            "SELECT harness, name, sealed_value, updated_at FROM user_credentials
             WHERE user_id = ?1 AND (?2 IS NULL OR harness = ?2) ORDER BY harness, name",
        )?;
        let rows = stmt.query_map(params![user.0, harness], |r| {
            Ok(CredentialRow {
                harness: r.get(0)?,
                name: r.get(1)?,
                sealed_value: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets (or with `model` = `None`, removes) the user's model for `stage`.
    pub fn set_user_model(
        &self,
        user: UserId,
        stage: Stage,
        model: Option<(&str, Option<&str>)>,
    ) -> Result<()> {
        match model {
            Some((model, effort)) => self.tx.execute(
                "INSERT INTO user_models (user_id, stage, model, effort, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(user_id, stage) DO UPDATE SET model = ?3, effort = ?4, updated_at = ?5",
                params![user.0, stage.to_string(), model, effort, now_ms()],
            )?,
            None => self.tx.execute(
                "DELETE FROM user_models WHERE user_id = ?1 AND stage = ?2",
                params![user.0, stage.to_string()],
            )?,
        };
        Ok(())
    }

    /// The user's models per stage (rows of a stage this version does not know are skipped).
    pub fn user_models(&self, user: UserId) -> Result<Vec<UserModelRow>> {
        let mut stmt = self.tx.prepare(
            "SELECT stage, model, effort, updated_at FROM user_models WHERE user_id = ?1
             ORDER BY stage",
        )?;
        let rows = stmt.query_map([user.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (stage, model, effort, updated_at) = row?;
            if let Ok(stage) = stage.parse::<Stage>() {
                out.push(UserModelRow {
                    stage,
                    model,
                    effort,
                    updated_at,
                });
            }
        }
        Ok(out)
    }
}
