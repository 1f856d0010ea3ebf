//! Stage prompts: the text handed to an agent at the start of a run.
//!
//! Each role's prompt is a markdown file in `crates/engine/prompts/` embedded in the binary
//! (`plan.md`, `implement.md`, `review.md`, `qa.md`, `refine.md`, `pr.md`), plus
//! `plan-template.md`, the structure the planner writes into the task doc. A second reviewer
//! gets `review.md` with its own findings section ([`SECOND_REVIEWER`]). An instance may replace any of them with a file of the same
//! name in an override folder (`<data_dir>/prompts/`); overrides are validated when loaded.
//!
//! Templates use `{{name}}` placeholders (spaces inside the braces are allowed) and rendering is
//! strict: an unknown placeholder, an unclosed `{{` or a variable without a value is an error
//! naming the template and the variable, never a silently empty hole. Values are inserted as
//! they are and never scanned for placeholders themselves. There is no escape for a literal `{{`.
//!
//! The renderer ends every prompt with the metadata line `Atelier-Stage: <stage> #<iteration>`
//! on its own line: the model simulator keys its scenarios on it and it tells the agent which
//! round this is. Templates therefore must not contain such a line themselves.

use domain::{Stage, TaskId};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use store::TaskRow;

/// File name of the plan template, built in and in an override folder.
pub const PLAN_TEMPLATE_FILE: &str = "plan-template.md";

/// What the planner of a non-technical owner's task is told (product.md: "for them the planning
/// agent asks only product questions and the plan gate is passed automatically").
pub const NON_TECHNICAL_PLAN: &str = "The person who asked for this is not technical (product, \
design or support). Write the Overview and the plan so they can follow it, and if you must ask, \
ask only product questions — what they want to happen, for whom, and what matters most — never \
questions about code, libraries or architecture: decide those yourself and write your choice \
under Assumptions. Nobody approves the plan before the implementation starts: make it complete.";

/// What the implementer of a task of the `yolo` pipeline is told: there was no plan and there is
/// no reviewer, and its `pr-done` publishes the pull request (this replaces the prompt's "Signals:
/// None").
pub const YOLO_IMPLEMENT: &str = "This task runs the `yolo` pipeline: there is no plan stage, no \
plan approval and no reviewer. The task doc holds the request as it was written (and a To-Do List \
only if the request has one): work from it directly, deciding the approach yourself. Implement the \
change, run the project's tests and fix what fails, commit on the task branch, and check every \
to-do item of the doc you completed. Then run `atelier signal pr-done`: it publishes your branch \
as a pull request, with no review in between — so signal only when the work is complete, \
committed and tested. If nothing needs to change, run `atelier signal pr-done --no-changes`. \
Ending your turn without `pr-done` does not publish anything: your session is continued, a \
limited number of times.";

/// What a pipeline's second reviewer is told before the review prompt, whose `## Review
/// Findings` section becomes `## Second Review Findings` for it.
pub const SECOND_REVIEWER: &str = "You are the second, independent reviewer of this task: another \
reviewer, on another model, has just reviewed the same work and written the `## Review Findings` \
section. Form your own judgement: do the whole review yourself before you read theirs, and never \
edit their section. Your section is `## Second Review Findings`. The work passes only if both of \
you say `ready`.";

/// The findings section of the first reviewer, and the second's.
const FINDINGS: &str = "## Review Findings";
const SECOND_FINDINGS: &str = "## Second Review Findings";

/// Start of the metadata line the renderer appends to every prompt.
pub const METADATA_PREFIX: &str = "Atelier-Stage:";

/// Every variable a template may use, for error messages.
pub const KNOWN_VARIABLES: &str = "task_id, title, doc_path, worktree, branch, base, port, \
                               port_count, stage, iteration, plan_template";

const BUILTIN_PLAN: &str = include_str!("../prompts/plan.md");
const BUILTIN_IMPLEMENT: &str = include_str!("../prompts/implement.md");
const BUILTIN_REVIEW: &str = include_str!("../prompts/review.md");
const BUILTIN_PR: &str = include_str!("../prompts/pr.md");
const BUILTIN_QA: &str = include_str!("../prompts/qa.md");
const BUILTIN_REFINE: &str = include_str!("../prompts/refine.md");
const BUILTIN_PLAN_TEMPLATE: &str = include_str!("../prompts/plan-template.md");

/// Why a prompt could not be loaded or rendered. Every variant names the template (the file
/// path for an override, `built-in <file>` otherwise).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error(
        "prompt template {template}, line {line}: unknown variable `{{{{{variable}}}}}` \
         (known variables: {KNOWN_VARIABLES})"
    )]
    UnknownVariable {
        template: String,
        line: usize,
        variable: String,
    },
    #[error("prompt template {template} uses variable `{variable}`, which has no value")]
    MissingVariable { template: String, variable: String },
    #[error("prompt template {template}, line {line}: {detail}")]
    Malformed {
        template: String,
        line: usize,
        detail: String,
    },
    #[error("prompt template {template} is empty")]
    Empty { template: String },
    #[error(
        "unknown prompt override {}: expected one of plan.md, implement.md, review.md, pr.md, \
         {PLAN_TEMPLATE_FILE}",
        path.display()
    )]
    UnknownFile { path: PathBuf },
    #[error("cannot read prompt override {}: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
}

/// The values of a prompt's variables. `stage` comes from the call to [`Prompts::render`] and
/// `plan_template` from the [`Prompts`]; an empty string or a zero port is a missing value, an
/// error if the template uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptVars {
    pub task_id: TaskId,
    pub title: String,
    /// Absolute path of the task doc.
    pub doc_path: String,
    /// Absolute path of the task's worktree.
    pub worktree: String,
    /// The task branch.
    pub branch: String,
    /// The base branch the task branch was cut from.
    pub base: String,
    /// First port of the task's block (`ATELIER_PORT`).
    pub port: u16,
    /// Size of the port block (`ATELIER_PORT_COUNT`).
    pub port_count: u16,
    /// How many runs of this stage finished before this one (0 for the first).
    pub iteration: u32,
}

impl PromptVars {
    /// The variables of a task's run. A removed worktree leaves `worktree` empty, so rendering
    /// a template that uses it fails.
    pub fn for_task(task: &TaskRow, iteration: u32, port_count: u16) -> PromptVars {
        PromptVars {
            task_id: task.id,
            title: task.title.clone(),
            doc_path: task.doc_path.clone(),
            worktree: task.worktree.clone().unwrap_or_default(),
            branch: task.branch.clone(),
            base: task.base.clone(),
            port: task.port,
            port_count,
            iteration,
        }
    }
}

/// One template: its text and the name errors use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    name: String,
    text: Cow<'static, str>,
}

impl Template {
    fn builtin(file: &str, text: &'static str) -> Template {
        Template {
            name: format!("built-in {file}"),
            text: Cow::Borrowed(text),
        }
    }
}

/// The prompts of every stage and the plan template, built in or overridden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompts {
    plan: Template,
    implement: Template,
    review: Template,
    qa: Template,
    refine: Template,
    pr: Template,
    plan_template: Template,
}

impl Default for Prompts {
    fn default() -> Prompts {
        Prompts::builtin()
    }
}

/// The files an instance may override (`<data_dir>/prompts/<file>`), in pipeline order.
pub const OVERRIDABLE: [&str; 7] = [
    "plan.md",
    "implement.md",
    "review.md",
    "qa.md",
    "refine.md",
    "pr.md",
    PLAN_TEMPLATE_FILE,
];

/// Checks `text` as the override `file` would be checked when loaded (unknown variable,
/// unclosed `{{`, metadata line, empty), naming the line.
pub fn check_override(file: &str, text: &str) -> Result<(), PromptError> {
    checked_override(file, file, text).map(drop)
}

/// The override `text` of the overridable `file` (named `name` in errors) as a template, checked
/// as it is when loaded: an unknown file, unknown variable, unclosed `{{`, metadata line (but in
/// the plan template), empty — naming the line. The one check of the server's files and a
/// project's `prompts`.
fn checked_override(file: &str, name: &str, text: &str) -> Result<Template, PromptError> {
    if !OVERRIDABLE.contains(&file) {
        return Err(PromptError::UnknownFile {
            path: PathBuf::from(name),
        });
    }
    let template = Template {
        name: name.to_string(),
        text: Cow::Owned(text.to_string()),
    };
    validate(&template, file != PLAN_TEMPLATE_FILE)?;
    Ok(template)
}

/// Checks the text of a stage prompt that is not one of the overridable files (a pipeline
/// definition's own prompt file, named `name` in errors) as a stage prompt is checked when
/// loaded: unknown variable, unclosed `{{`, metadata line, empty — naming the line.
pub fn check_stage_prompt(name: &str, text: &str) -> Result<(), PromptError> {
    let template = Template {
        name: name.to_string(),
        text: Cow::Owned(text.to_string()),
    };
    validate(&template, true)
}

/// The file a project's prompt override `key` replaces (`review` → `review.md`,
/// `plan-template` → `plan-template.md`): the keys of a project's `prompts` setting are the
/// [`OVERRIDABLE`] files without `.md`.
pub fn project_prompt_file(key: &str) -> Option<&'static str> {
    OVERRIDABLE
        .iter()
        .copied()
        .find(|file| file.strip_suffix(".md") == Some(key))
}

/// Checks a project's prompt override `key` (named `prompts.<key>` in errors) as the server's
/// override of the same file is checked: a known key, no unknown variable, no unclosed `{{`, no
/// metadata line, not empty — naming the line.
pub fn check_project_prompt(key: &str, text: &str) -> Result<(), String> {
    let Some(file) = project_prompt_file(key) else {
        let keys: Vec<&str> = OVERRIDABLE
            .iter()
            .filter_map(|f| f.strip_suffix(".md"))
            .collect();
        return Err(format!(
            "prompts.{key}: no such prompt (use one of {})",
            keys.join(", ")
        ));
    };
    checked_override(file, &format!("prompts.{key}"), text)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The prompts a task's run is given: the server's (`server`: its overrides over the built-in
/// texts) with the project's overrides the task recorded when it was created replacing them.
pub fn for_task(
    server: &std::sync::Arc<Prompts>,
    task: &TaskRow,
) -> Result<std::sync::Arc<Prompts>, String> {
    let Some(json) = &task.project_prompts else {
        return Ok(std::sync::Arc::clone(server));
    };
    let overrides: std::collections::BTreeMap<String, String> = serde_json::from_str(json)
        .map_err(|e| {
            format!(
                "task {}: its project's prompts are unreadable: {e}",
                task.id
            )
        })?;
    server
        .with_project(&overrides)
        .map(std::sync::Arc::new)
        .map_err(|e| {
            format!(
                "task {}: its project's prompts, recorded when it was created, no longer pass the \
                 checks ({e}); start a new task with corrected prompts in the project's settings",
                task.id
            )
        })
}

/// The prompt a run of `stage` of `task` is given (docs/pipelines.md, "Which text a stage's
/// agent gets"): the stage's own prompt file of the task's pipeline (`own`: its name and text)
/// when it has one, else the project's text the task recorded, else the server's, else the
/// built-in one.
pub fn for_run(
    server: &std::sync::Arc<Prompts>,
    task: &TaskRow,
    own: Option<&(String, String)>,
    stage: Stage,
    vars: &PromptVars,
    brief: Option<&str>,
) -> Result<String, String> {
    let prompts = for_task(server, task)?;
    match own {
        Some((name, text)) => prompts.render_custom(name, text, stage, vars, brief),
        None => prompts.render_with_brief(stage, vars, brief),
    }
    .map_err(|e| e.to_string())
}

/// The built-in text of an overridable `file`.
pub fn builtin_text(file: &str) -> Option<&'static str> {
    Some(match file {
        "plan.md" => BUILTIN_PLAN,
        "implement.md" => BUILTIN_IMPLEMENT,
        "review.md" => BUILTIN_REVIEW,
        "qa.md" => BUILTIN_QA,
        "refine.md" => BUILTIN_REFINE,
        "pr.md" => BUILTIN_PR,
        PLAN_TEMPLATE_FILE => BUILTIN_PLAN_TEMPLATE,
        _ => return None,
    })
}

impl Prompts {
    /// The text in force for an overridable `file`.
    pub fn text_of(&self, file: &str) -> Option<&str> {
        let template = match file {
            "plan.md" => &self.plan,
            "implement.md" => &self.implement,
            "review.md" => &self.review,
            "qa.md" => &self.qa,
            "refine.md" => &self.refine,
            "pr.md" => &self.pr,
            PLAN_TEMPLATE_FILE => &self.plan_template,
            _ => return None,
        };
        Some(&template.text)
    }

    /// The prompts shipped in the binary.
    pub fn builtin() -> Prompts {
        Prompts {
            plan: Template::builtin("plan.md", BUILTIN_PLAN),
            implement: Template::builtin("implement.md", BUILTIN_IMPLEMENT),
            review: Template::builtin("review.md", BUILTIN_REVIEW),
            qa: Template::builtin("qa.md", BUILTIN_QA),
            refine: Template::builtin("refine.md", BUILTIN_REFINE),
            pr: Template::builtin("pr.md", BUILTIN_PR),
            plan_template: Template::builtin(PLAN_TEMPLATE_FILE, BUILTIN_PLAN_TEMPLATE),
        }
    }

    /// The built-in prompts with those found in `dir` replacing them: `<dir>/<stage>.md` for a
    /// stage's prompt, `<dir>/plan-template.md` for the plan template. A missing `dir` means no
    /// overrides. Every override is validated now: an unknown variable, an unclosed `{{`, a
    /// metadata line or an empty file is an error naming the file, and so is any other `*.md`
    /// file in `dir` (a misspelt name would otherwise be ignored silently). Other files are
    /// ignored.
    pub fn with_overrides(dir: &Path) -> Result<Prompts, PromptError> {
        let mut prompts = Prompts::builtin();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(prompts),
            Err(err) => {
                return Err(PromptError::Read {
                    path: dir.to_path_buf(),
                    detail: err.to_string(),
                });
            }
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| PromptError::Read {
                path: dir.to_path_buf(),
                detail: err.to_string(),
            })?;
            paths.push(entry.path());
        }
        paths.sort();
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".md") || name.starts_with('.') {
                continue;
            }
            if !OVERRIDABLE.contains(&name) {
                return Err(PromptError::UnknownFile { path });
            }
            let text = std::fs::read_to_string(&path).map_err(|err| PromptError::Read {
                path: path.clone(),
                detail: err.to_string(),
            })?;
            prompts.set_file(
                name,
                checked_override(name, &path.display().to_string(), &text)?,
            );
        }
        Ok(prompts)
    }

    /// These prompts with a project's overrides (`prompts` of its settings, keyed as
    /// [`project_prompt_file`] says) replacing theirs: a project's text wins over the server's,
    /// which wins over the built-in one. Each override is checked as when it was saved.
    pub fn with_project(
        &self,
        overrides: &std::collections::BTreeMap<String, String>,
    ) -> Result<Prompts, PromptError> {
        let mut prompts = self.clone();
        for (key, text) in overrides {
            let name = format!("the project's prompts.{key}");
            let file = project_prompt_file(key).unwrap_or_default();
            prompts.set_file(file, checked_override(file, &name, text)?);
        }
        Ok(prompts)
    }

    /// The raw template of a stage's prompt.
    pub fn template(&self, stage: Stage) -> &str {
        &self.slot(stage).text
    }

    /// The raw plan template.
    pub fn plan_template(&self) -> &str {
        &self.plan_template.text
    }

    /// The prompt of `stage`, ending with the line `Atelier-Stage: <stage> #<iteration>`.
    pub fn render(&self, stage: Stage, vars: &PromptVars) -> Result<String, PromptError> {
        self.render_with_brief(stage, vars, None)
    }

    /// Renders the stage's prompt followed by `brief`, what a follow-up run is for (failing
    /// checks, a conflict, pull-request comments), under its own heading. The brief is inserted
    /// as it is, except that a line of it that looks like the metadata line is indented, so the
    /// prompt's last line stays the only one.
    pub fn render_with_brief(
        &self,
        stage: Stage,
        vars: &PromptVars,
        brief: Option<&str>,
    ) -> Result<String, PromptError> {
        self.render_template(self.slot(stage), stage, vars, brief)
    }

    /// Renders a pipeline definition's own prompt file for `stage` (its text `text`, named
    /// `name` in errors) as [`Prompts::render_with_brief`] renders a built-in one.
    pub fn render_custom(
        &self,
        name: &str,
        text: &str,
        stage: Stage,
        vars: &PromptVars,
        brief: Option<&str>,
    ) -> Result<String, PromptError> {
        let template = Template {
            name: name.to_string(),
            text: Cow::Owned(text.to_string()),
        };
        self.render_template(&template, stage, vars, brief)
    }

    fn render_template(
        &self,
        template: &Template,
        stage: Stage,
        vars: &PromptVars,
        brief: Option<&str>,
    ) -> Result<String, PromptError> {
        let mut body = substitute(template, true, |var| self.value(template, var, stage, vars))?
            .trim_end()
            .to_string();
        if stage == Stage::SecondReview {
            body = format!(
                "{SECOND_REVIEWER}\n\n{}",
                body.replace(FINDINGS, SECOND_FINDINGS)
            );
        }
        if let Some(brief) = brief {
            body.push_str("\n\n## What this run is for\n\n");
            for line in brief.trim_end().lines() {
                if line.trim_start().starts_with(METADATA_PREFIX) {
                    body.push_str("    ");
                }
                body.push_str(line);
                body.push('\n');
            }
        }
        Ok(format!(
            "{}\n\n{METADATA_PREFIX} {stage} #{}\n",
            body.trim_end(),
            vars.iteration
        ))
    }

    /// The plan template as the planner's prompt includes it (its own placeholders, if an
    /// override uses any, filled in).
    pub fn render_plan_template(
        &self,
        stage: Stage,
        vars: &PromptVars,
    ) -> Result<String, PromptError> {
        let template = &self.plan_template;
        let text = substitute(template, false, |var| {
            self.value(template, var, stage, vars)
        })?;
        Ok(text.trim_end().to_string())
    }

    fn slot(&self, stage: Stage) -> &Template {
        match stage {
            Stage::Plan => &self.plan,
            Stage::Implement => &self.implement,
            Stage::Review | Stage::SecondReview => &self.review,
            Stage::Qa => &self.qa,
            Stage::Refine => &self.refine,
            Stage::Pr => &self.pr,
        }
    }

    /// Puts `template` in the place of the overridable `file` (one of [`OVERRIDABLE`], checked
    /// by the caller; any other name changes nothing).
    fn set_file(&mut self, file: &str, template: Template) {
        let slot = match file {
            PLAN_TEMPLATE_FILE => &mut self.plan_template,
            _ => match file.trim_end_matches(".md").parse::<Stage>() {
                // The second reviewer's prompt is the review prompt: not a file of its own.
                Ok(Stage::SecondReview) | Err(_) => return,
                Ok(stage) => self.slot_mut(stage),
            },
        };
        *slot = template;
    }

    fn slot_mut(&mut self, stage: Stage) -> &mut Template {
        match stage {
            Stage::Plan => &mut self.plan,
            Stage::Implement => &mut self.implement,
            Stage::Review | Stage::SecondReview => &mut self.review,
            Stage::Qa => &mut self.qa,
            Stage::Refine => &mut self.refine,
            Stage::Pr => &mut self.pr,
        }
    }

    /// The value of `var` for `template`; an empty value is an error.
    fn value(
        &self,
        template: &Template,
        var: Var,
        stage: Stage,
        vars: &PromptVars,
    ) -> Result<String, PromptError> {
        let value = match var {
            Var::TaskId => vars.task_id.to_string(),
            Var::Title => vars.title.clone(),
            Var::DocPath => vars.doc_path.clone(),
            Var::Worktree => vars.worktree.clone(),
            Var::Branch => vars.branch.clone(),
            Var::Base => vars.base.clone(),
            Var::Port => nonzero(vars.port),
            Var::PortCount => nonzero(vars.port_count),
            Var::Stage => stage.to_string(),
            Var::Iteration => vars.iteration.to_string(),
            Var::PlanTemplate => self.render_plan_template(stage, vars)?,
        };
        if value.trim().is_empty() {
            return Err(PromptError::MissingVariable {
                template: template.name.clone(),
                variable: var.name().to_string(),
            });
        }
        Ok(value)
    }
}

/// A port, or nothing for 0 (no port is a missing value).
fn nonzero(port: u16) -> String {
    if port == 0 {
        String::new()
    } else {
        port.to_string()
    }
}

/// The variables a template can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    TaskId,
    Title,
    DocPath,
    Worktree,
    Branch,
    Base,
    Port,
    PortCount,
    Stage,
    Iteration,
    PlanTemplate,
}

impl Var {
    const ALL: [Var; 11] = [
        Var::TaskId,
        Var::Title,
        Var::DocPath,
        Var::Worktree,
        Var::Branch,
        Var::Base,
        Var::Port,
        Var::PortCount,
        Var::Stage,
        Var::Iteration,
        Var::PlanTemplate,
    ];

    fn name(self) -> &'static str {
        match self {
            Var::TaskId => "task_id",
            Var::Title => "title",
            Var::DocPath => "doc_path",
            Var::Worktree => "worktree",
            Var::Branch => "branch",
            Var::Base => "base",
            Var::Port => "port",
            Var::PortCount => "port_count",
            Var::Stage => "stage",
            Var::Iteration => "iteration",
            Var::PlanTemplate => "plan_template",
        }
    }

    fn from_name(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|var| var.name() == name)
    }
}

/// A parsed template: literal text and placeholders.
enum Piece<'a> {
    Text(&'a str),
    Var(Var),
}

/// Splits a template into pieces, rejecting unknown variables, unclosed placeholders, metadata
/// lines and (unless `stage_prompt`) the plan template including itself.
fn parse(template: &Template, stage_prompt: bool) -> Result<Vec<Piece<'_>>, PromptError> {
    let text: &str = &template.text;
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let malformed = |offset: usize, detail: String| PromptError::Malformed {
        template: template.name.clone(),
        line: line_of(offset),
        detail,
    };

    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with(METADATA_PREFIX) {
            return Err(malformed(
                offset,
                format!(
                    "a `{METADATA_PREFIX}` line is added by Atelier at the end of every prompt; \
                     remove it from the template"
                ),
            ));
        }
        offset += line.len();
    }

    let mut pieces = Vec::new();
    let mut rest = 0;
    while let Some(found) = text[rest..].find("{{") {
        let open = rest + found;
        if open > rest {
            pieces.push(Piece::Text(&text[rest..open]));
        }
        let after = open + 2;
        let line_end = text[after..].find('\n').map_or(text.len(), |i| after + i);
        let Some(close) = text[after..line_end].find("}}").map(|i| after + i) else {
            return Err(malformed(
                open,
                "`{{` without a closing `}}` on the same line".to_string(),
            ));
        };
        let name = text[after..close].trim();
        if name.is_empty() {
            return Err(malformed(open, "empty placeholder `{{}}`".to_string()));
        }
        let var = Var::from_name(name).ok_or_else(|| PromptError::UnknownVariable {
            template: template.name.clone(),
            line: line_of(open),
            variable: name.to_string(),
        })?;
        if var == Var::PlanTemplate && !stage_prompt {
            return Err(malformed(
                open,
                "the plan template cannot include `{{plan_template}}` (itself)".to_string(),
            ));
        }
        pieces.push(Piece::Var(var));
        rest = close + 2;
    }
    if rest < text.len() {
        pieces.push(Piece::Text(&text[rest..]));
    }
    Ok(pieces)
}

/// Checks a template the way rendering would, without values.
fn validate(template: &Template, stage_prompt: bool) -> Result<(), PromptError> {
    if template.text.trim().is_empty() {
        return Err(PromptError::Empty {
            template: template.name.clone(),
        });
    }
    parse(template, stage_prompt).map(|_| ())
}

/// Renders `template`, asking `value` for each placeholder.
fn substitute(
    template: &Template,
    stage_prompt: bool,
    mut value: impl FnMut(Var) -> Result<String, PromptError>,
) -> Result<String, PromptError> {
    let mut out = String::with_capacity(template.text.len() + 1024);
    for piece in parse(template, stage_prompt)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var(var) => out.push_str(&value(var)?),
        }
    }
    Ok(out)
}
