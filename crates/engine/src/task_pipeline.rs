//! The pipeline a task is created with, and what its stages run. A task runs a built-in
//! (`standard`, `full`, `yolo`), a pipeline the project defines in its settings (`pipelines`),
//! or one of the repository's `.atelier/pipelines.toml` on the project's default branch —
//! looked up in that order, so a project may redefine a built-in's name. A project's own
//! definition is validated as `atelier pipeline check` validates it (a problem refuses the task
//! with `file:line: reason`) and recorded on the task with the texts of its prompt files, so a
//! later change to the file or the settings does not change a task underway.

use crate::api::{ProjectSettings, RoleConfig};
use crate::error::{EngineError, Result};
use crate::pipelines::{self, FileChecker, PipelineError};
use domain::pipeline_def::{PipelineDef, Role};
use domain::{Pipeline, Stage};
use std::collections::BTreeMap;
use store::TaskRow;

/// Where a repository's pipeline prompt files live (the folder of its pipelines file).
const REPO_FOLDER: &str = ".atelier";
/// The most prompt files, and the largest one, read from a repository for its pipelines.
const MAX_PROMPT_FILES: usize = 64;
const MAX_PROMPT_BYTES: usize = 256 * 1024;
/// How the settings' definitions are named in errors.
const SETTINGS_FILE: &str = "settings `pipelines`";

/// The pipeline chosen for a new task.
#[derive(Debug)]
pub(crate) struct Chosen {
    pub pipeline: Pipeline,
    /// For a project's own pipeline, what the task row records: the definition and its prompt
    /// files' texts (path → text), as JSON.
    pub recorded: Option<(String, String)>,
}

/// Finds the pipeline `name` for a task of a project: its settings' definitions, then the
/// repository's file at `rev` (the default branch), then the built-ins.
pub(crate) async fn choose(
    repo: &git::Repo,
    rev: &str,
    settings: &ProjectSettings,
    name: &str,
) -> Result<Chosen> {
    let file = repo
        .file_at(rev, pipelines::REPO_FILE)
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    // Most projects define no pipeline of their own: nothing more is read for them.
    if settings.pipelines.is_none() && file.is_none() {
        return builtin_or_unknown(name, &[]);
    }
    let texts = prompt_texts(repo, rev).await?;
    let mut defined = Vec::new();
    if let Some(text) = &settings.pipelines {
        let found = pipelines::parse(SETTINGS_FILE, text, &FileChecker::with_texts(texts.clone()))
            .map_err(|errors| problems("the project's settings define", &errors))?;
        defined.extend(found.into_iter().map(|d| d.def));
    }
    if let Some(pick) = take(&mut defined, name) {
        return record(pick, &texts);
    }
    if let Some(text) = file {
        let parsed = pipelines::parse(
            pipelines::REPO_FILE,
            &text,
            &FileChecker::with_texts(texts.clone()),
        );
        match parsed {
            Ok(found) => defined.extend(found.into_iter().map(|d| d.def)),
            // A broken file does not stop tasks of a built-in pipeline.
            Err(errors) if Pipeline::builtin(name).is_some() => {
                tracing::warn!(
                    problems = errors.len(),
                    "the repository's {} has problems; using the built-in `{name}`",
                    pipelines::REPO_FILE
                );
            }
            Err(errors) => {
                return Err(problems(
                    &format!("the repository's {rev} defines"),
                    &errors,
                ));
            }
        }
    }
    if let Some(pick) = take(&mut defined, name) {
        return record(pick, &texts);
    }
    builtin_or_unknown(name, &defined)
}

/// The built-in called `name`, or an unknown-name error listing the built-ins and `defined`.
fn builtin_or_unknown(name: &str, defined: &[PipelineDef]) -> Result<Chosen> {
    match Pipeline::builtin(name) {
        Some(pipeline) => Ok(Chosen {
            pipeline,
            recorded: None,
        }),
        None => {
            let mut known: Vec<String> = domain::pipeline_def::BUILTIN_NAMES
                .iter()
                .map(|n| format!("`{n}`"))
                .collect();
            known.extend(defined.iter().map(|d| format!("`{}`", d.name)));
            Err(EngineError::InvalidInput(format!(
                "unknown pipeline `{name}`: expected one of {} (a project defines its own in \
                 its settings' `pipelines` or in {} on its default branch)",
                known.join(", "),
                pipelines::REPO_FILE
            )))
        }
    }
}

/// Checks the settings' own definitions (at save time: their prompt files are not read) and
/// that `default_pipeline` names a built-in or one of them. Problems are `file:line: reason`.
pub(crate) fn check_settings(settings: &ProjectSettings) -> std::result::Result<(), String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(text) = &settings.pipelines {
        let defined = pipelines::parse(
            SETTINGS_FILE,
            text,
            &FileChecker::with_texts(BTreeMap::new()),
        )
        .map_err(|errors| problem_lines(&errors))?;
        names.extend(defined.into_iter().map(|d| d.def.name));
    }
    let default = &settings.default_pipeline;
    if Pipeline::builtin(default).is_none() && !names.contains(default) {
        return Err(format!(
            "default_pipeline: unknown pipeline `{default}`: expected a built-in ({}) or one \
             defined in `pipelines`",
            domain::pipeline_def::BUILTIN_NAMES.join(", ")
        ));
    }
    Ok(())
}

/// The role that runs `stage` of `pipeline`: the project's role for the stage — a second
/// reviewer and QA fall back to the reviewer's, refine to the implementer's — with what the
/// pipeline's stage names over it (a harness of its own brings its own model and effort).
pub(crate) fn role(
    settings: &ProjectSettings,
    pipeline: &Pipeline,
    stage: Stage,
) -> std::result::Result<RoleConfig, String> {
    let fallback = match stage {
        Stage::SecondReview | Stage::Qa => Some(Stage::Review),
        Stage::Refine => Some(Stage::Implement),
        _ => None,
    };
    let base = settings
        .roles
        .get(&stage)
        .or_else(|| fallback.and_then(|f| settings.roles.get(&f)));
    let mut role = match base {
        Some(role) => role.clone(),
        None => crate::settings::role(settings, stage)?.clone(),
    };
    let Some(own) = stage_role(pipeline, stage) else {
        return Ok(role);
    };
    if let Some(harness) = own.harness.as_ref().filter(|h| **h != role.harness) {
        role.harness = harness.clone();
        role.model = None;
        role.effort = None;
    }
    if own.model.is_some() {
        role.model = own.model.clone();
    }
    if own.effort.is_some() {
        role.effort = own.effort.clone();
    }
    if let Some(secs) = pipeline.stage_def(stage).and_then(|s| s.caps.timeout_secs) {
        role.timeout_secs = Some(secs);
    }
    Ok(role)
}

/// The pipeline's own prompt for `stage`, if it names one: its path and the text recorded on the
/// task at creation.
pub(crate) fn own_prompt(
    task: &TaskRow,
    pipeline: &Pipeline,
    stage: Stage,
) -> std::result::Result<Option<(String, String)>, String> {
    let Some(path) = stage_role(pipeline, stage).and_then(|r| r.prompt.clone()) else {
        return Ok(None);
    };
    let texts: BTreeMap<String, String> = match &task.pipeline_prompts {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            format!(
                "task {}: its pipeline's prompts are unreadable: {e}",
                task.id
            )
        })?,
        None => BTreeMap::new(),
    };
    match texts.get(&path) {
        Some(text) => Ok(Some((format!("{REPO_FOLDER}/{path}"), text.clone()))),
        None => Err(format!(
            "task {}: the prompt file {path} of its pipeline was not recorded",
            task.id
        )),
    }
}

/// The role a pipeline's stage names (a second reviewer's is its review stage's
/// `second_reviewer`).
fn stage_role(pipeline: &Pipeline, stage: Stage) -> Option<&Role> {
    let def = pipeline.stage_def(stage)?;
    match stage {
        Stage::SecondReview => def.second_reviewer.as_ref(),
        _ => Some(&def.role),
    }
}

/// Removes the definition called `name` from `defined`.
fn take(defined: &mut Vec<PipelineDef>, name: &str) -> Option<PipelineDef> {
    let at = defined.iter().position(|d| d.name == name)?;
    Some(defined.remove(at))
}

/// A project's own pipeline, with the texts of the prompt files it names.
fn record(def: PipelineDef, texts: &BTreeMap<String, String>) -> Result<Chosen> {
    let mut used = BTreeMap::new();
    for stage in &def.stages {
        for role in std::iter::once(&stage.role).chain(&stage.second_reviewer) {
            let Some(path) = &role.prompt else { continue };
            let text = texts.get(path).ok_or_else(|| {
                EngineError::InvalidInput(format!(
                    "pipeline `{}`: its prompt file {REPO_FOLDER}/{path} is not in the \
                     repository's default branch",
                    def.name
                ))
            })?;
            used.insert(path.clone(), text.clone());
        }
    }
    let to_json = |e: serde_json::Error| EngineError::Internal(e.to_string());
    let recorded = (
        serde_json::to_string(&def).map_err(to_json)?,
        serde_json::to_string(&used).map_err(to_json)?,
    );
    let pipeline = Pipeline::new(def).map_err(|e| EngineError::InvalidInput(e.to_string()))?;
    Ok(Chosen {
        pipeline,
        recorded: Some(recorded),
    })
}

/// The Markdown files of the repository's `.atelier/` folder at `rev`, by path relative to it
/// (bounded in number and size: they are prompt files).
async fn prompt_texts(repo: &git::Repo, rev: &str) -> Result<BTreeMap<String, String>> {
    let internal = |e: git::GitError| EngineError::Internal(e.to_string());
    let mut texts = BTreeMap::new();
    let files = repo.files_at(rev, REPO_FOLDER).await.map_err(internal)?;
    for path in files
        .iter()
        .filter(|p| p.ends_with(".md"))
        .take(MAX_PROMPT_FILES)
    {
        let Some(relative) = path.strip_prefix(&format!("{REPO_FOLDER}/")) else {
            continue;
        };
        if let Some(text) = repo.file_at(rev, path).await.map_err(internal)?
            && text.len() <= MAX_PROMPT_BYTES
        {
            texts.insert(relative.to_string(), text);
        }
    }
    Ok(texts)
}

/// `what` followed by every problem, one `file:line: reason` per line.
fn problems(what: &str, errors: &[PipelineError]) -> EngineError {
    EngineError::InvalidInput(format!(
        "{what} pipelines with problems:\n{}",
        problem_lines(errors)
    ))
}

fn problem_lines(errors: &[PipelineError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = r#"
[pipeline.paired]
[[pipeline.paired.stage]]
kind = "implement"
on = { done = "review" }

[[pipeline.paired.stage]]
kind = "review"
harness = "claude-code"
model = "opus"
max_rounds = 2
timeout_secs = 120
second_reviewer = { harness = "codex", model = "gpt-5" }
on = { ready = "pr", needs-work = "implement" }

[[pipeline.paired.stage]]
kind = "pr"
on = { pr-done = "done" }
"#;

    fn settings(pipelines: Option<&str>, default: &str) -> ProjectSettings {
        ProjectSettings {
            pipelines: pipelines.map(str::to_string),
            default_pipeline: default.into(),
            ..ProjectSettings::default()
        }
    }

    #[test]
    fn the_settings_own_pipelines_are_checked_and_may_be_the_default() {
        assert_eq!(check_settings(&settings(None, "full")), Ok(()));
        assert_eq!(check_settings(&settings(Some(OWN), "paired")), Ok(()));
        let unknown = check_settings(&settings(Some(OWN), "fast")).unwrap_err();
        assert!(unknown.contains("unknown pipeline `fast`"), "{unknown}");
        let broken = OWN.replace("needs-work = \"implement\"", "needs-work = \"build\"");
        let problems = check_settings(&settings(Some(&broken), "standard")).unwrap_err();
        assert!(
            problems.starts_with("settings `pipelines`:14: signal `needs-work` of stage `review`"),
            "{problems}"
        );
    }

    #[test]
    fn a_stage_runs_the_projects_role_with_the_pipelines_over_it() {
        let role = |harness: &str, model: &str| RoleConfig {
            harness: harness.into(),
            model: Some(model.into()),
            effort: Some("low".into()),
            ..RoleConfig::default()
        };
        let mut project = ProjectSettings::default();
        project
            .roles
            .insert(Stage::Implement, role("codex", "gpt-5"));
        project
            .roles
            .insert(Stage::Review, role("claude-code", "sonnet"));
        // qa falls back to the reviewer's role, refine to the implementer's.
        let full = Pipeline::builtin("full").unwrap();
        assert_eq!(
            role_of(&project, &full, Stage::Qa),
            role("claude-code", "sonnet")
        );
        assert_eq!(
            role_of(&project, &full, Stage::Refine),
            role("codex", "gpt-5")
        );
        // The pipeline's own review stage: its model over the project's role, its timeout; the
        // second reviewer's other harness brings its own model and no effort.
        let def = pipelines::parse("own", OWN, &FileChecker::with_texts(BTreeMap::new()))
            .unwrap()
            .remove(0)
            .def;
        let paired = Pipeline::new(def).unwrap();
        let first = role_of(&project, &paired, Stage::Review);
        assert_eq!(
            (
                first.harness.as_str(),
                first.model.as_deref(),
                first.timeout_secs
            ),
            ("claude-code", Some("opus"), Some(120))
        );
        let second = role_of(&project, &paired, Stage::SecondReview);
        assert_eq!(
            (
                second.harness.as_str(),
                second.model.as_deref(),
                second.effort.as_deref()
            ),
            ("codex", Some("gpt-5"), None)
        );
    }

    fn role_of(settings: &ProjectSettings, pipeline: &Pipeline, stage: Stage) -> RoleConfig {
        role(settings, pipeline, stage).unwrap()
    }
}
