//! Project rows: a git repository and its settings (JSON owned by the engine).

use crate::{Result, Tx, now_ms};
use domain::ProjectId;
use rusqlite::{OptionalExtension, Row, params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub id: ProjectId,
    pub name: String,
    pub path: String,
    pub default_branch: String,
    pub settings_json: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProjectRow<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub default_branch: &'a str,
    pub settings_json: &'a str,
}

const COLUMNS: &str = "id, name, path, default_branch, settings, created_at";

fn project(row: &Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok(ProjectRow {
        id: ProjectId(row.get(0)?),
        name: row.get(1)?,
        path: row.get(2)?,
        default_branch: row.get(3)?,
        settings_json: row.get(4)?,
        created_at: row.get(5)?,
    })
}

impl Tx<'_> {
    pub fn insert_project(&self, new: &NewProjectRow<'_>) -> Result<ProjectRow> {
        self.tx.execute(
            "INSERT INTO projects (name, path, default_branch, settings, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                new.name,
                new.path,
                new.default_branch,
                new.settings_json,
                now_ms()
            ],
        )?;
        let id = ProjectId(self.tx.last_insert_rowid());
        self.project(id)?
            .ok_or_else(|| crate::StoreError::Corrupt("project vanished".into()))
    }

    /// Replaces a project's settings (stored as JSON).
    pub fn set_project_settings(&self, id: ProjectId, settings_json: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE projects SET settings = ?2 WHERE id = ?1",
            params![id.0, settings_json],
        )?;
        Ok(())
    }

    pub fn project(&self, id: ProjectId) -> Result<Option<ProjectRow>> {
        let sql = format!("SELECT {COLUMNS} FROM projects WHERE id = ?1");
        Ok(self.tx.query_row(&sql, [id.0], project).optional()?)
    }

    pub fn project_by_name(&self, name: &str) -> Result<Option<ProjectRow>> {
        let sql = format!("SELECT {COLUMNS} FROM projects WHERE name = ?1");
        Ok(self.tx.query_row(&sql, [name], project).optional()?)
    }

    pub fn project_by_path(&self, path: &str) -> Result<Option<ProjectRow>> {
        let sql = format!("SELECT {COLUMNS} FROM projects WHERE path = ?1");
        Ok(self.tx.query_row(&sql, [path], project).optional()?)
    }

    pub fn projects(&self) -> Result<Vec<ProjectRow>> {
        let sql = format!("SELECT {COLUMNS} FROM projects ORDER BY id");
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt
            .query_map([], project)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// One page of projects in ascending id order: at most `limit` projects with an id above
    /// `after` (a real `LIMIT`).
    /// One page of projects in ascending id order; only those `member` belongs to when given.
    pub fn projects_page(
        &self,
        after: Option<ProjectId>,
        limit: u32,
        member: Option<crate::UserId>,
    ) -> Result<Vec<ProjectRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM projects WHERE id > ?1 \
             AND (?3 IS NULL OR id IN (SELECT project_id FROM memberships WHERE user_id = ?3)) \
             ORDER BY id LIMIT ?2"
        );
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt
            .query_map(
                params![after.map_or(0, |p| p.0), limit, member.map(|u| u.0)],
                project,
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}
