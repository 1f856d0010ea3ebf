//! Pipeline definition files: TOML (`.atelier/pipelines.toml` in a repository) read into the
//! domain's raw pipelines with the line of every value (`toml::Spanned`), then validated by
//! `domain::pipeline_def::validate` with this build's harnesses, their model checks and the
//! prompt checker of [`crate::prompt`]. Every problem comes back as `file:line: reason`.
//!
//! Definitions are read and validated here (`atelier pipeline check`, `atelier pipeline list`);
//! a task created with a project's own pipeline runs it (`crate::task_pipeline`).
//!
//! The format, one table per pipeline and one `[[pipeline.<name>.stage]]` entry per stage:
//!
//! ```toml
//! [pipeline.careful]
//! description = "two reviewers"
//!
//! [[pipeline.careful.stage]]
//! kind = "plan"
//! gate = true
//! on = { plan-ready = "implement" }
//!
//! [[pipeline.careful.stage]]
//! kind = "implement"
//! on = { done = "review" }
//!
//! [[pipeline.careful.stage]]
//! kind = "review"
//! harness = "claude-code"
//! model = "opus"
//! max_rounds = 3
//! second_reviewer = { harness = "codex", model = "gpt-5" }
//! on = { ready = "pr", needs-work = "implement" }
//!
//! [[pipeline.careful.stage]]
//! kind = "pr"
//! on = { pr-done = "done" }
//! ```
//!
//! The parsing lives here rather than in `domain`, which stays free of parsing crates and of
//! I/O: it reads prompt files and asks the harness adapters about models.

use domain::pipeline_def::{
    Checker, Located, PipelineDef, RawPipeline, RawRole, RawStage, validate,
};
use harness::Harness;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use toml::Spanned;

/// Where a repository keeps its pipelines, relative to its root.
pub const REPO_FILE: &str = ".atelier/pipelines.toml";

/// A problem in a definition file: `file:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct PipelineError {
    /// The file as it was named to Atelier.
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// A pipeline read from a file, with the line of its `[pipeline.<name>]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defined {
    pub file: String,
    pub line: usize,
    pub def: PipelineDef,
}

/// What checking files found: the sound pipelines, the problems, and notes that are not
/// problems (a prompt file that could not be read, so its variables were not checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    pub pipelines: Vec<Defined>,
    pub errors: Vec<PipelineError>,
    pub notes: Vec<PipelineError>,
}

/// Reads and validates definition files; a pipeline name defined twice across them is an error
/// at the second definition.
pub fn check_files(paths: &[PathBuf]) -> Checked {
    let mut checked = Checked::default();
    let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for path in paths {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                checked.errors.push(PipelineError {
                    file,
                    line: 1,
                    reason: format!("cannot read the file: {err}"),
                });
                continue;
            }
        };
        let checker = FileChecker::new(path.parent().unwrap_or(Path::new(".")));
        match parse(&file, &text, &checker) {
            Ok(defined) => {
                for pipeline in defined {
                    if let Some((first_file, first_line)) = seen.get(&pipeline.def.name) {
                        checked.errors.push(PipelineError {
                            file: file.clone(),
                            line: pipeline.line,
                            reason: format!(
                                "pipeline `{}` is also defined at {first_file}:{first_line}: \
                                 rename one of them",
                                pipeline.def.name
                            ),
                        });
                        continue;
                    }
                    seen.insert(pipeline.def.name.clone(), (file.clone(), pipeline.line));
                    checked.pipelines.push(pipeline);
                }
            }
            Err(errors) => checked.errors.extend(errors),
        }
        checked.notes.extend(checker.notes(&file));
    }
    checked
}

/// Parses and validates the text of one definition file, named `file` in errors.
pub fn parse(
    file: &str,
    text: &str,
    checker: &dyn Checker,
) -> Result<Vec<Defined>, Vec<PipelineError>> {
    let error = |line: usize, reason: String| PipelineError {
        file: file.to_string(),
        line,
        reason,
    };
    let parsed: FileToml = toml::from_str(text).map_err(|err| {
        let line = err.span().map_or(1, |span| line_of(text, span.start));
        vec![error(line, toml_reason(&err))]
    })?;
    if parsed.pipeline.is_empty() {
        return Err(vec![error(
            1,
            "no pipeline is defined: add a `[pipeline.<name>]` table with \
             `[[pipeline.<name>.stage]]` entries (see `atelier pipeline check --help`)"
                .into(),
        )]);
    }
    let mut raw: Vec<RawPipeline> = parsed
        .pipeline
        .into_iter()
        .map(|(name, pipeline)| to_raw(text, name, pipeline))
        .collect();
    raw.sort_by_key(|p| p.name.line);
    let defs = validate(&raw, checker).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| error(e.line, e.problem.to_string()))
            .collect::<Vec<_>>()
    })?;
    Ok(raw
        .iter()
        .zip(defs)
        .map(|(raw, def)| Defined {
            file: file.to_string(),
            line: raw.name.line,
            def,
        })
        .collect())
}

/// toml's message without its own rendering of the position (the line is ours to give).
fn toml_reason(err: &toml::de::Error) -> String {
    let message = err.message().trim();
    if message.starts_with("missing field") {
        format!("{message} (every stage needs a `kind`: plan, implement, review, qa, refine or pr)")
    } else {
        message.to_string()
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    pipeline: BTreeMap<Spanned<String>, Spanned<PipelineToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineToml {
    description: Option<String>,
    max_runs: Option<Spanned<u32>>,
    #[serde(default)]
    stage: Vec<Spanned<StageToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageToml {
    name: Option<Spanned<String>>,
    kind: Spanned<String>,
    harness: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    effort: Option<Spanned<String>>,
    prompt: Option<Spanned<String>>,
    second_reviewer: Option<Spanned<RoleToml>>,
    #[serde(default)]
    on: BTreeMap<Spanned<String>, Spanned<String>>,
    gate: Option<Spanned<bool>>,
    max_rounds: Option<Spanned<u32>>,
    max_runs: Option<Spanned<u32>>,
    timeout_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleToml {
    harness: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    effort: Option<Spanned<String>>,
    prompt: Option<Spanned<String>>,
}

fn to_raw(text: &str, name: Spanned<String>, pipeline: Spanned<PipelineToml>) -> RawPipeline {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let loc = |v: Spanned<String>| Located::new(v.get_ref().clone(), at(v.span()));
    let header = at(pipeline.span());
    let pipeline = pipeline.into_inner();
    let role = |harness, model, effort, prompt| RawRole {
        harness: Option::map(harness, loc),
        model: Option::map(model, loc),
        effort: Option::map(effort, loc),
        prompt: Option::map(prompt, loc),
    };
    let stages = pipeline
        .stage
        .into_iter()
        .map(|stage| {
            let line = at(stage.span());
            let s = stage.into_inner();
            let mut on: Vec<_> = s.on.into_iter().map(|(k, v)| (loc(k), loc(v))).collect();
            on.sort_by_key(|(k, _)| k.line);
            RawStage {
                line,
                name: s.name.map(loc),
                kind: loc(s.kind),
                role: role(s.harness, s.model, s.effort, s.prompt),
                second_reviewer: s.second_reviewer.map(|r| {
                    let line = at(r.span());
                    let r = r.into_inner();
                    Located::new(role(r.harness, r.model, r.effort, r.prompt), line)
                }),
                on,
                gate: s.gate.map(|g| Located::new(*g.get_ref(), at(g.span()))),
                max_rounds: s
                    .max_rounds
                    .map(|v| Located::new(*v.get_ref(), at(v.span()))),
                max_runs: s.max_runs.map(|v| Located::new(*v.get_ref(), at(v.span()))),
                timeout_secs: s
                    .timeout_secs
                    .map(|v| Located::new(*v.get_ref(), at(v.span()))),
            }
        })
        .collect();
    RawPipeline {
        name: Located::new(name.get_ref().clone(), header),
        description: pipeline.description,
        max_runs: pipeline
            .max_runs
            .map(|v| Located::new(*v.get_ref(), at(v.span()))),
        stages,
    }
}

/// Where a checker reads prompt files.
enum PromptSource {
    /// Files relative to a folder.
    Dir(PathBuf),
    /// Texts by path, read beforehand (a repository's files at a commit).
    Texts(BTreeMap<String, String>),
}

/// The checks that need the outside world, for a file in `dir`: this build's harnesses and
/// their model checks, and prompt files read relative to `dir`.
pub struct FileChecker {
    prompts: PromptSource,
    harnesses: BTreeMap<&'static str, Arc<dyn Harness>>,
    /// Prompt files that could not be read: (line, path, why).
    notes: Mutex<Vec<(usize, String, String)>>,
}

impl FileChecker {
    pub fn new(dir: &Path) -> FileChecker {
        FileChecker::reading(PromptSource::Dir(dir.to_path_buf()))
    }

    /// A checker whose prompt files are the given texts (path relative to the definition's
    /// folder → text), as a repository's files at a commit are.
    pub fn with_texts(texts: BTreeMap<String, String>) -> FileChecker {
        FileChecker::reading(PromptSource::Texts(texts))
    }

    fn reading(prompts: PromptSource) -> FileChecker {
        // Only their names and model checks are used: nothing is started.
        let registered: [Arc<dyn Harness>; 4] = [
            Arc::new(harness::scripted::ScriptedHarness::new(PathBuf::from(
                "atelier",
            ))),
            Arc::new(harness::claude::ClaudeHarness::new(PathBuf::from("claude"))),
            Arc::new(harness::codex::CodexHarness::new(PathBuf::from("codex"))),
            Arc::new(harness::opencode::OpenCodeHarness::new(PathBuf::from(
                "opencode",
            ))),
        ];
        FileChecker {
            prompts,
            harnesses: registered.into_iter().map(|h| (h.name(), h)).collect(),
            notes: Mutex::new(Vec::new()),
        }
    }

    /// Prompt files that could not be read, as notes of `file` at their `prompt` line.
    pub fn notes(&self, file: &str) -> Vec<PipelineError> {
        let notes = match self.notes.lock() {
            Ok(mut notes) => std::mem::take(&mut *notes),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        notes
            .into_iter()
            .map(|(line, path, detail)| PipelineError {
                file: file.to_string(),
                line,
                reason: format!(
                    "note: prompt file {path} cannot be read ({detail}); only its name was \
                     checked"
                ),
            })
            .collect()
    }
}

impl Checker for FileChecker {
    fn harnesses(&self) -> Vec<String> {
        self.harnesses.keys().map(|h| h.to_string()).collect()
    }

    fn check_model(&self, harness: &str, model: &str) -> Result<(), String> {
        let Some(adapter) = self.harnesses.get(harness) else {
            return Ok(());
        };
        adapter
            .check_role(Some(model), &serde_json::json!({}))
            .map_err(|err| match err {
                harness::HarnessError::Config(message) => message,
                other => other.to_string(),
            })
    }

    fn check_prompt(&self, path: &str, line: usize) -> Result<(), String> {
        let (name, read) = match &self.prompts {
            PromptSource::Dir(dir) => {
                let full = dir.join(path);
                let read = std::fs::read_to_string(&full).map_err(|err| err.to_string());
                (full.display().to_string(), read)
            }
            PromptSource::Texts(texts) => (
                path.to_string(),
                texts
                    .get(path)
                    .cloned()
                    .ok_or_else(|| "no such file in the repository".to_string()),
            ),
        };
        match read {
            Ok(text) => {
                crate::prompt::check_stage_prompt(&name, &text).map_err(|err| err.to_string())
            }
            Err(err) => {
                if let Ok(mut notes) = self.notes.lock() {
                    notes.push((line, name, err));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
