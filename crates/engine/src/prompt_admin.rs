//! Administrators reading and changing the instance's prompt overrides from the API (the web
//! UI's prompt editor): each override is checked as it would be at load — an unknown variable
//! names its line and the known ones — before it is written to `<data_dir>/prompts/<file>`
//! (atomically), and the prompts in force are replaced at once; runs already rendered keep
//! theirs. Removing an override puts the built-in text back. A project's members read the
//! prompts in force for it (its own `prompts` setting over the server's), which its settings
//! page shows beside its overrides.

use crate::Engine;
use crate::error::{EngineError, Result};
use crate::prompt::{self, OVERRIDABLE, Prompts};
use std::sync::Arc;

/// One prompt as the API shows it.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct PromptView {
    /// `plan.md`, `implement.md`, `review.md`, `pr.md` or `plan-template.md`.
    pub file: String,
    /// The text in force.
    pub text: String,
    /// Whether the instance overrides the built-in text (for a project's prompts: whether the
    /// project has its own).
    pub overridden: bool,
    /// The variables a template may use (`{{name}}`).
    pub variables: Vec<String>,
    /// Why a project's stored text no longer passes the checks (e.g. a variable since removed):
    /// `text` is that stored text, and the project's new tasks cannot start a run with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Engine {
    /// Every overridable prompt with the text in force (administrators).
    pub fn prompts(&self) -> Result<Vec<PromptView>> {
        self.require_admin("read the prompts")?;
        let prompts = self.inner.prompts();
        Ok(OVERRIDABLE
            .iter()
            .map(|file| self.prompt_view(&prompts, file))
            .collect())
    }

    /// Overrides `file` with `text`, or goes back to the built-in text when `text` is `None`
    /// (administrators). An invalid text is refused with the reason and changes nothing.
    pub fn set_prompt(&self, file: &str, text: Option<String>) -> Result<PromptView> {
        self.require_admin("change the prompts")?;
        let dir = self.inner.config.data_dir.join("prompts");
        let path = dir.join(file);
        match &text {
            Some(text) => {
                prompt::check_override(file, text)
                    .map_err(|e| EngineError::InvalidInput(e.to_string()))?;
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                let tmp = dir.join(format!(".{file}.tmp"));
                std::fs::write(&tmp, text).map_err(io(&tmp))?;
                std::fs::rename(&tmp, &path).map_err(io(&path))?;
            }
            None => {
                if !OVERRIDABLE.contains(&file) {
                    return Err(EngineError::NotFound(format!("no prompt `{file}`")));
                }
                if let Err(err) = std::fs::remove_file(&path)
                    && err.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(io(&path)(err));
                }
            }
        }
        let reloaded = Prompts::with_overrides(&dir)
            .map_err(|e| EngineError::Internal(format!("reloading the prompts: {e}")))?;
        let view = self.prompt_view(&reloaded, file);
        match self.inner.prompts.write() {
            Ok(mut prompts) => *prompts = Arc::new(reloaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(reloaded),
        }
        let action = if text.is_some() {
            "prompt.set"
        } else {
            "prompt.reset"
        };
        self.audit(action, file, None);
        Ok(view)
    }

    /// Every overridable prompt with the text in force for `project`'s new tasks: its own
    /// (`overridden`), else the server's (members of the project).
    pub fn project_prompts(&self, project: &str) -> Result<Vec<PromptView>> {
        let row = self
            .inner
            .store
            .read(|tx| self.visible_project(tx, project))?;
        let own = crate::settings::parse(&row.settings_json)?.prompts;
        // A stored text that no longer passes the checks is shown with its reason, not applied.
        let mut good = own.clone();
        let mut errors = std::collections::BTreeMap::new();
        for (key, text) in &own {
            if let Err(err) = prompt::check_project_prompt(key, text) {
                good.remove(key);
                errors.insert(key.as_str(), err);
            }
        }
        let prompts = self
            .inner
            .prompts()
            .with_project(&good)
            .map_err(|e| EngineError::Internal(format!("project {}: {e}", row.name)))?;
        Ok(OVERRIDABLE
            .iter()
            .map(|file| {
                let key = file.trim_end_matches(".md");
                let view = PromptView {
                    overridden: own.contains_key(key),
                    ..self.prompt_view(&prompts, file)
                };
                match (errors.remove(key), own.get(key)) {
                    (Some(error), Some(text)) => PromptView {
                        text: text.clone(),
                        error: Some(error),
                        ..view
                    },
                    _ => view,
                }
            })
            .collect())
    }

    fn prompt_view(&self, prompts: &Prompts, file: &str) -> PromptView {
        let text = prompts.text_of(file).unwrap_or_default().to_string();
        PromptView {
            file: file.to_string(),
            overridden: prompt::builtin_text(file) != Some(text.as_str()),
            text,
            variables: prompt::KNOWN_VARIABLES
                .split(',')
                .map(|v| v.trim().to_string())
                .collect(),
            error: None,
        }
    }
}

fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |err| EngineError::Internal(format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use crate::insight::testing;

    #[tokio::test]
    async fn an_override_is_checked_written_used_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let engine = testing::engine(dir.path()).await;
        let file = dir.path().join("data/prompts/review.md");

        let refused = engine
            .set_prompt("review.md", Some("Review {{titel}} now.".into()))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("line 1") && refused.contains("titel"),
            "{refused}"
        );
        assert!(refused.contains("known variables"), "{refused}");
        assert!(!file.exists(), "a refused text is not written");

        let set = engine
            .set_prompt("review.md", Some("Review {{title}} carefully.".into()))
            .unwrap();
        assert!(set.overridden);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "Review {{title}} carefully."
        );
        assert_eq!(
            engine.inner.prompts().text_of("review.md"),
            Some("Review {{title}} carefully."),
            "runs started from now use it"
        );
        let listed = engine.prompts().unwrap();
        assert_eq!(listed.len(), crate::prompt::OVERRIDABLE.len());
        assert!(listed.iter().any(|p| p.file == "review.md" && p.overridden));
        assert!(listed.iter().any(|p| p.file == "plan.md" && !p.overridden));

        let reset = engine.set_prompt("review.md", None).unwrap();
        assert!(!reset.overridden);
        assert!(!file.exists());
        assert!(engine.set_prompt("other.md", Some("x".into())).is_err());
    }

    /// A stored text that no longer passes the checks (written before a variable was removed,
    /// say): the settings page still opens with it and its reason, and a run of a task that
    /// recorded it fails naming the reason — not an internal error.
    #[tokio::test]
    async fn a_stored_project_prompt_that_fails_the_checks_is_shown_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let engine = testing::engine(dir.path()).await;
        let (task, _) = testing::task_with_runs(
            &engine,
            "p",
            "/p",
            &domain::TaskState::Running {
                stage: domain::Stage::Review,
            },
            &[],
        );
        let bad = r#"{"review":"Review {{titel}} now.","qa":"Check {{title}}."}"#;
        let row = engine
            .inner
            .store
            .write(|tx| {
                let project = tx.project_by_name("p")?.unwrap();
                tx.set_project_settings(project.id, &format!(r#"{{"prompts":{bad}}}"#))?;
                tx.task(task)
            })
            .unwrap()
            .unwrap();

        let views = engine.project_prompts("p").unwrap();
        let review = views.iter().find(|v| v.file == "review.md").unwrap();
        assert_eq!(review.text, "Review {{titel}} now.");
        let error = review.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("titel") && error.contains("line 1"),
            "{error}"
        );
        let qa = views.iter().find(|v| v.file == "qa.md").unwrap();
        assert_eq!(
            (qa.text.as_str(), qa.error.as_ref()),
            ("Check {{title}}.", None)
        );
        assert!(views.iter().filter(|v| v.error.is_some()).count() == 1);

        let recorded = store::TaskRow {
            project_prompts: Some(bad.to_string()),
            ..row
        };
        let reason = crate::prompt::for_task(&engine.inner.prompts(), &recorded)
            .err()
            .unwrap_or_default();
        assert!(
            reason.contains("no longer pass the checks") && reason.contains("titel"),
            "{reason}"
        );
    }

    /// Rule 1 of docs/pipelines.md: a pipeline's own prompt file beats the project's text, which
    /// beats the server's.
    #[tokio::test]
    async fn a_pipelines_own_prompt_beats_the_projects_text() {
        let dir = tempfile::tempdir().unwrap();
        let engine = testing::engine(dir.path()).await;
        let stage = domain::Stage::Review;
        let (task, _) = testing::task_with_runs(
            &engine,
            "p",
            "/p",
            &domain::TaskState::Running { stage },
            &[],
        );
        let row = engine
            .inner
            .store
            .read(|tx| tx.task(task))
            .unwrap()
            .unwrap();
        let row = store::TaskRow {
            project_prompts: Some(r#"{"review":"PROJECT review of {{title}}."}"#.into()),
            ..row
        };
        let vars = crate::prompt::PromptVars::for_task(&row, 0, 10);
        let own = (
            "prompts/review.md".to_string(),
            "PIPELINE review of {{title}}.".to_string(),
        );
        let server = engine.inner.prompts();
        let told = crate::prompt::for_run(&server, &row, Some(&own), stage, &vars, None).unwrap();
        assert!(told.starts_with("PIPELINE review of task of p."), "{told}");
        assert!(!told.contains("PROJECT"), "{told}");
        let told = crate::prompt::for_run(&server, &row, None, stage, &vars, None).unwrap();
        assert!(told.starts_with("PROJECT review of task of p."), "{told}");
    }
}
