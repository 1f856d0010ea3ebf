//! Pipelines as data: a named pipeline is an ordered list of stages, each with a kind (`plan`,
//! `implement`, `review`, `qa`, `refine`, `pr`), a role (harness, model, effort, prompt file),
//! the signals it accepts and where each leads, its caps and whether a human gate follows it.
//!
//! A validated definition is what a task runs: `pipeline::Pipeline` wraps one, and
//! `pipeline::decide` follows its `on` tables and caps. A pipeline runs at most one stage of each
//! kind (a run is recorded by its stage's kind).
//!
//! A parser (the engine's `pipelines` module reads TOML) turns a file into [`RawPipeline`]s: the
//! values as written, each with the line it came from. [`validate`] checks them and returns typed
//! [`PipelineDef`]s, or every problem found, each with its line and what to write instead. What
//! needs the outside world (which harnesses exist, a prompt file's variables) is asked of a
//! [`Checker`], so the rules here stay pure and are tested with a table.

mod builtins;

pub use builtins::{BUILTIN_NAMES, builtin, builtins, standard};

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Longest pipeline or stage name accepted.
const MAX_NAME: usize = 64;

/// What a stage does; each kind has its own agent role and its own signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Plan,
    Implement,
    Review,
    Qa,
    Refine,
    Pr,
}

impl StageKind {
    pub const ALL: [StageKind; 6] = [
        StageKind::Plan,
        StageKind::Implement,
        StageKind::Review,
        StageKind::Qa,
        StageKind::Refine,
        StageKind::Pr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Plan => "plan",
            StageKind::Implement => "implement",
            StageKind::Review => "review",
            StageKind::Qa => "qa",
            StageKind::Refine => "refine",
            StageKind::Pr => "pr",
        }
    }

    /// The signals a stage of this kind can end with, in the order they are shown.
    pub fn signals(self) -> &'static [StageSignal] {
        match self {
            StageKind::Plan => &[StageSignal::PlanReady],
            StageKind::Implement => &[StageSignal::Done, StageSignal::PrDone],
            StageKind::Review => &[StageSignal::Ready, StageSignal::NeedsWork],
            StageKind::Qa => &[StageSignal::Pass, StageSignal::Fail],
            StageKind::Refine => &[StageSignal::RefineDone],
            StageKind::Pr => &[StageSignal::PrDone],
        }
    }

    /// The stage a task's runs of this kind are recorded as.
    pub fn stage(self) -> crate::stage::Stage {
        use crate::stage::Stage;
        match self {
            StageKind::Plan => Stage::Plan,
            StageKind::Implement => Stage::Implement,
            StageKind::Review => Stage::Review,
            StageKind::Qa => Stage::Qa,
            StageKind::Refine => Stage::Refine,
            StageKind::Pr => Stage::Pr,
        }
    }

    /// Whether every signal of the kind must say where it leads (an implement stage needs only
    /// one of `done` and `pr-done`).
    fn needs_every_signal(self) -> bool {
        self != StageKind::Implement
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StageKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StageKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(())
    }
}

/// How a run of a stage ends, as a pipeline routes it. Questions and `verdict blocked` are not
/// routed: they wait for a human in every pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageSignal {
    /// `atelier signal plan-ready` (plan).
    PlanReady,
    /// The implementer's run ended (no signal needed; implement).
    Done,
    /// `atelier signal pr-done` (implement in a pipeline without review, pr).
    PrDone,
    /// `atelier signal verdict ready` (review).
    Ready,
    /// `atelier signal verdict needs-work` (review).
    NeedsWork,
    /// `atelier signal qa pass` (qa).
    Pass,
    /// `atelier signal qa fail` (qa).
    Fail,
    /// `atelier signal refine-done` (refine).
    RefineDone,
}

impl StageSignal {
    pub const ALL: [StageSignal; 8] = [
        StageSignal::PlanReady,
        StageSignal::Done,
        StageSignal::PrDone,
        StageSignal::Ready,
        StageSignal::NeedsWork,
        StageSignal::Pass,
        StageSignal::Fail,
        StageSignal::RefineDone,
    ];

    /// The key of the signal in a stage's `on` table.
    pub fn as_str(self) -> &'static str {
        match self {
            StageSignal::PlanReady => "plan-ready",
            StageSignal::Done => "done",
            StageSignal::PrDone => "pr-done",
            StageSignal::Ready => "ready",
            StageSignal::NeedsWork => "needs-work",
            StageSignal::Pass => "pass",
            StageSignal::Fail => "fail",
            StageSignal::RefineDone => "refine-done",
        }
    }

    /// What the agent runs (or does) to send it.
    pub fn command(self) -> &'static str {
        match self {
            StageSignal::PlanReady => "atelier signal plan-ready",
            StageSignal::Done => "(the run ends)",
            StageSignal::PrDone => "atelier signal pr-done",
            StageSignal::Ready => "atelier signal verdict ready",
            StageSignal::NeedsWork => "atelier signal verdict needs-work",
            StageSignal::Pass => "atelier signal qa pass",
            StageSignal::Fail => "atelier signal qa fail",
            StageSignal::RefineDone => "atelier signal refine-done",
        }
    }
}

impl fmt::Display for StageSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StageSignal {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StageSignal::ALL
            .into_iter()
            .find(|signal| signal.as_str() == s)
            .ok_or(())
    }
}

/// Where a signal leads: another stage of the pipeline, or the end of the task's agent work
/// (`done`: the pull request is open and followed until a human merges it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Stage(String),
    Done,
}

/// The word for [`Target::Done`] in a definition.
pub const DONE: &str = "done";

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Stage(name) => f.write_str(name),
            Target::Done => f.write_str(DONE),
        }
    }
}

/// The agent of a stage. Anything left out comes from the project's role for the stage's kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Role {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// The prompt file, relative to the folder of the file that defines the pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// What keeps a stage from running forever. `None` is "the project's policy decides".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Caps {
    /// Rounds of a loop through this stage before the task blocks (e.g. review rounds that end
    /// without `ready`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
    /// Runs of this stage before the task blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u32>,
    /// Longest a run of this stage may take, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl Caps {
    /// Whether a loop through this stage is bounded by it.
    pub fn bounds_loops(&self) -> bool {
        self.max_rounds.is_some() || self.max_runs.is_some()
    }
}

/// One signal of a stage and where it leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub signal: StageSignal,
    pub to: Target,
}

/// One stage of a validated pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDef {
    pub name: String,
    pub kind: StageKind,
    pub role: Role,
    /// A review stage's second, independent reviewer: both must say `ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_reviewer: Option<Role>,
    /// In the order of [`StageKind::signals`].
    pub on: Vec<Transition>,
    /// A human approves before the stage's signal is followed (the plan gate).
    pub gate: bool,
    pub caps: Caps,
}

impl StageDef {
    /// Where `signal` leads from this stage, if the stage accepts it.
    pub fn next(&self, signal: StageSignal) -> Option<&Target> {
        self.on.iter().find(|t| t.signal == signal).map(|t| &t.to)
    }
}

/// A validated pipeline: the first stage is where a task starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineDef {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Runs of the whole task before it blocks (`None`: the project's policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u32>,
    pub stages: Vec<StageDef>,
}

impl PipelineDef {
    pub fn stage(&self, name: &str) -> Option<&StageDef> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// A value as written in a definition file, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
}

impl<T> Located<T> {
    pub fn new(value: T, line: usize) -> Located<T> {
        Located { value, line }
    }
}

/// A role as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawRole {
    pub harness: Option<Located<String>>,
    pub model: Option<Located<String>>,
    pub effort: Option<Located<String>>,
    pub prompt: Option<Located<String>>,
}

/// A stage as written: nothing checked yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawStage {
    /// The line the stage starts on (its `[[pipeline.<name>.stage]]` header).
    pub line: usize,
    /// Defaults to the kind.
    pub name: Option<Located<String>>,
    pub kind: Located<String>,
    pub role: RawRole,
    pub second_reviewer: Option<Located<RawRole>>,
    /// `signal = "target"` pairs, in the order written.
    pub on: Vec<(Located<String>, Located<String>)>,
    pub gate: Option<Located<bool>>,
    pub max_rounds: Option<Located<u32>>,
    pub max_runs: Option<Located<u32>>,
    pub timeout_secs: Option<Located<u64>>,
}

/// A pipeline as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawPipeline {
    /// The name and the line of its `[pipeline.<name>]` header.
    pub name: Located<String>,
    pub description: Option<String>,
    pub max_runs: Option<Located<u32>>,
    pub stages: Vec<RawStage>,
}

/// What validation asks of the world outside the domain.
pub trait Checker {
    /// The harnesses a role may name (`claude-code`, `codex`, `opencode`, `scripted`).
    fn harnesses(&self) -> Vec<String>;
    /// Checks a role's model against its harness; `Err` is the whole reason, naming both.
    fn check_model(&self, harness: &str, model: &str) -> Result<(), String> {
        let _ = (harness, model);
        Ok(())
    }
    /// Checks a prompt file named by a role at `line` (its variables, as rendering would);
    /// `Err` is the whole reason, naming the file and its line.
    fn check_prompt(&self, path: &str, line: usize) -> Result<(), String> {
        let _ = (path, line);
        Ok(())
    }
}

/// One problem in a definition, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    pub line: usize,
    pub problem: Problem,
}

impl fmt::Display for DefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Why a definition is refused; each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "{what} name `{name}` is not valid: use 1-64 lowercase letters, digits, `_` or `-`, \
         starting with a letter"
    )]
    BadName { what: &'static str, name: String },
    #[error("`{name}` is reserved (it means the end of the pipeline): name the stage otherwise")]
    ReservedName { name: String },
    #[error("pipeline `{pipeline}` has no stages: add `[[pipeline.{pipeline}.stage]]` entries")]
    NoStages { pipeline: String },
    #[error("unknown stage kind `{kind}`: expected one of plan, implement, review, qa, refine, pr")]
    UnknownKind { kind: String },
    #[error(
        "a second stage named `{name}` (the first is on line {first_line}): give one of them \
         another `name`"
    )]
    DuplicateStage { name: String, first_line: usize },
    #[error(
        "a second {kind} stage (`{name}`; the first, `{first}`, is on line {first_line}): a \
         pipeline runs at most one stage of each kind; route both signals to the one stage"
    )]
    DuplicateKind {
        kind: StageKind,
        name: String,
        first: String,
        first_line: usize,
    },
    #[error(
        "stage `{stage}` ({kind}) has no signal `{signal}`: a {kind} stage ends with {expected}"
    )]
    UnknownSignal {
        stage: String,
        kind: StageKind,
        signal: String,
        expected: String,
    },
    #[error("stage `{stage}` says twice where `{signal}` leads: keep one")]
    DuplicateSignal { stage: String, signal: StageSignal },
    #[error(
        "stage `{stage}` ({kind}) does not say where `{signal}` leads: add `{signal} = \
         \"<stage>\"` to its `on` table"
    )]
    MissingSignal {
        stage: String,
        kind: StageKind,
        signal: String,
    },
    #[error(
        "signal `{signal}` of stage `{stage}` leads to `{target}`, which is not a stage of this \
         pipeline: expected one of {expected}"
    )]
    UnknownTarget {
        stage: String,
        signal: StageSignal,
        target: String,
        expected: String,
    },
    #[error(
        "signal `{signal}` of stage `{stage}` leads to `done`, but only a pr stage ends a pipeline (it \
         opens the pull request): lead it to a pr stage"
    )]
    DoneOutsidePr { stage: String, signal: StageSignal },
    #[error(
        "`pr-done` of pr stage `{stage}` leads to `{target}`: a pr stage ends the pipeline, write \
         `pr-done = \"done\"`"
    )]
    PrNotEnding { stage: String, target: String },
    #[error("`{field} = 0` would block the stage before it runs: give at least 1, or leave it out")]
    ZeroCap { field: &'static str },
    #[error("unknown harness `{harness}`: expected one of {expected}{hint}")]
    UnknownHarness {
        harness: String,
        expected: String,
        hint: String,
    },
    #[error("{reason}")]
    BadModel {
        harness: String,
        model: String,
        reason: String,
    },
    #[error("{reason}")]
    BadPrompt { path: String, reason: String },
    #[error(
        "prompt `{path}` must be a relative path to a `.md` file (relative to the folder of the \
         pipelines file)"
    )]
    PromptName { path: String },
    #[error("stage `{stage}` is a {kind} stage: only a review stage can have a `second_reviewer`")]
    SecondReviewerOutsideReview { stage: String, kind: StageKind },
    #[error(
        "the second reviewer of stage `{stage}` needs a `harness`, and so does the stage itself, \
         so the two can be told apart: set `harness` on both"
    )]
    SecondReviewerUnnamed { stage: String },
    #[error(
        "the second reviewer of stage `{stage}` uses the same harness and model as the first \
         ({harness}{model}): give it another harness or model, so the two reviews are independent"
    )]
    SameReviewers {
        stage: String,
        harness: String,
        model: String,
    },
    #[error(
        "stage `{stage}` is never reached from the first stage `{first}`: lead a signal to it, \
         or remove it"
    )]
    Unreachable { stage: String, first: String },
    #[error(
        "the loop {path} has no cap: set `max_rounds` (or `max_runs`) on one of its stages, e.g. \
         `max_rounds = 3`"
    )]
    LoopWithoutCap { path: String },
    #[error(
        "pipeline `{pipeline}` never reaches `done` from its first stage: add a pr stage with \
         `on = {{ pr-done = \"done\" }}` and lead a signal to it"
    )]
    NoEnd { pipeline: String },
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= MAX_NAME
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Validates pipelines as written. Returns the typed pipelines, or every problem found (in line
/// order), each with its line.
pub fn validate(
    raw: &[RawPipeline],
    checker: &dyn Checker,
) -> Result<Vec<PipelineDef>, Vec<DefError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for pipeline in raw {
        if let Some(def) = validate_one(pipeline, checker, &mut errors) {
            out.push(def);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// Validates one pipeline, pushing its problems to `errors`; `None` when it has any.
fn validate_one(
    raw: &RawPipeline,
    checker: &dyn Checker,
    errors: &mut Vec<DefError>,
) -> Option<PipelineDef> {
    let before = errors.len();
    let mut err = |line: usize, problem: Problem| errors.push(DefError { line, problem });
    let pipeline = &raw.name.value;
    if !valid_name(pipeline) {
        err(
            raw.name.line,
            Problem::BadName {
                what: "pipeline",
                name: pipeline.clone(),
            },
        );
    }
    if raw.stages.is_empty() {
        err(
            raw.name.line,
            Problem::NoStages {
                pipeline: pipeline.clone(),
            },
        );
    }
    if let Some(max) = &raw.max_runs
        && max.value == 0
    {
        err(max.line, Problem::ZeroCap { field: "max_runs" });
    }

    // Names first: transitions are checked against them.
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    // The engine records a run by its stage's kind: one stage per kind.
    let mut kinds: BTreeMap<StageKind, (String, usize)> = BTreeMap::new();
    let mut stages = Vec::new();
    for stage in &raw.stages {
        let kind = match stage.kind.value.parse::<StageKind>() {
            Ok(kind) => Some(kind),
            Err(()) => {
                err(
                    stage.kind.line,
                    Problem::UnknownKind {
                        kind: stage.kind.value.clone(),
                    },
                );
                None
            }
        };
        let (name, name_line) = match &stage.name {
            Some(name) => (name.value.clone(), name.line),
            None => (stage.kind.value.clone(), stage.line),
        };
        if name == DONE {
            err(name_line, Problem::ReservedName { name: name.clone() });
        } else if stage.name.is_some() && !valid_name(&name) {
            err(
                name_line,
                Problem::BadName {
                    what: "stage",
                    name: name.clone(),
                },
            );
        }
        let duplicate_name = names.contains_key(&name);
        if let Some(&first_line) = names.get(&name) {
            err(
                name_line,
                Problem::DuplicateStage {
                    name: name.clone(),
                    first_line,
                },
            );
        } else {
            names.insert(name.clone(), name_line);
        }
        if let Some(kind) = kind.filter(|_| !duplicate_name) {
            if let Some((first, first_line)) = kinds.get(&kind) {
                err(
                    stage.kind.line,
                    Problem::DuplicateKind {
                        kind,
                        name: name.clone(),
                        first: first.clone(),
                        first_line: *first_line,
                    },
                );
            } else {
                kinds.insert(kind, (name.clone(), stage.line));
            }
        }
        stages.push((stage, name, kind));
    }

    // A stage without a `name` is named after its kind; with an unknown kind, the stage it
    // was meant to be is unclear.
    let names_known = stages
        .iter()
        .all(|(stage, _, kind)| stage.name.is_some() || kind.is_some());
    let expected_targets = names
        .keys()
        .map(|name| format!("`{name}`"))
        .chain([format!("`{DONE}`")])
        .collect::<Vec<_>>()
        .join(", ");

    let mut defs = Vec::new();
    for (stage, name, kind) in &stages {
        let Some(kind) = *kind else { continue };
        let mut on: Vec<Transition> = Vec::new();
        for (signal, target) in &stage.on {
            let Ok(parsed) = signal.value.parse::<StageSignal>() else {
                err(signal.line, unknown_signal(name, kind, &signal.value));
                continue;
            };
            if !kind.signals().contains(&parsed) {
                err(signal.line, unknown_signal(name, kind, &signal.value));
                continue;
            }
            if on.iter().any(|t| t.signal == parsed) {
                err(
                    signal.line,
                    Problem::DuplicateSignal {
                        stage: name.clone(),
                        signal: parsed,
                    },
                );
                continue;
            }
            let to = if target.value == DONE {
                Target::Done
            } else if names.contains_key(&target.value) {
                Target::Stage(target.value.clone())
            } else if !names_known {
                // A stage named after a misspelt kind may be the one meant: said once, there.
                continue;
            } else {
                err(
                    target.line,
                    Problem::UnknownTarget {
                        stage: name.clone(),
                        signal: parsed,
                        target: target.value.clone(),
                        expected: expected_targets.clone(),
                    },
                );
                continue;
            };
            match (&to, kind) {
                (Target::Done, StageKind::Pr) => {}
                (Target::Stage(other), StageKind::Pr) => err(
                    target.line,
                    Problem::PrNotEnding {
                        stage: name.clone(),
                        target: other.clone(),
                    },
                ),
                (Target::Done, _) => err(
                    target.line,
                    Problem::DoneOutsidePr {
                        stage: name.clone(),
                        signal: parsed,
                    },
                ),
                (Target::Stage(_), _) => {}
            }
            on.push(Transition { signal: parsed, to });
        }
        let missing: Vec<StageSignal> = kind
            .signals()
            .iter()
            .copied()
            .filter(|s| !on.iter().any(|t| t.signal == *s))
            .collect();
        // A misspelt signal is reported as such, not also as a missing one.
        let all_known = stage.on.len() == on.len();
        if kind.needs_every_signal() {
            for signal in missing {
                if all_known {
                    err(
                        stage.line,
                        Problem::MissingSignal {
                            stage: name.clone(),
                            kind,
                            signal: signal.to_string(),
                        },
                    );
                }
            }
        } else if on.is_empty() && all_known {
            err(
                stage.line,
                Problem::MissingSignal {
                    stage: name.clone(),
                    kind,
                    signal: "done` or `pr-done".to_string(),
                },
            );
        }
        on.sort_by_key(|t| t.signal);

        let mut caps = Caps::default();
        if let Some(max) = &stage.max_rounds {
            if max.value == 0 {
                err(
                    max.line,
                    Problem::ZeroCap {
                        field: "max_rounds",
                    },
                );
            }
            caps.max_rounds = Some(max.value);
        }
        if let Some(max) = &stage.max_runs {
            if max.value == 0 {
                err(max.line, Problem::ZeroCap { field: "max_runs" });
            }
            caps.max_runs = Some(max.value);
        }
        if let Some(secs) = &stage.timeout_secs {
            if secs.value == 0 {
                err(
                    secs.line,
                    Problem::ZeroCap {
                        field: "timeout_secs",
                    },
                );
            }
            caps.timeout_secs = Some(secs.value);
        }

        let role = check_role(&stage.role, checker, &mut err);
        let second_reviewer = stage.second_reviewer.as_ref().map(|second| {
            if kind != StageKind::Review {
                err(
                    second.line,
                    Problem::SecondReviewerOutsideReview {
                        stage: name.clone(),
                        kind,
                    },
                );
            }
            let other = check_role(&second.value, checker, &mut err);
            match (&role.harness, &other.harness) {
                (Some(first), Some(harness)) => {
                    if first == harness && role.model == other.model {
                        err(
                            second.line,
                            Problem::SameReviewers {
                                stage: name.clone(),
                                harness: harness.clone(),
                                model: other
                                    .model
                                    .as_ref()
                                    .map_or(String::new(), |m| format!(", {m}")),
                            },
                        );
                    }
                }
                _ => err(
                    second.line,
                    Problem::SecondReviewerUnnamed {
                        stage: name.clone(),
                    },
                ),
            }
            other
        });

        defs.push((
            *stage,
            StageDef {
                name: name.clone(),
                kind,
                role,
                second_reviewer,
                on,
                gate: stage.gate.as_ref().is_some_and(|g| g.value),
                caps,
            },
        ));
    }

    // The graph checks need every stage and every edge: only when all else is sound.
    if errors.len() == before {
        check_graph(pipeline, raw.name.line, &defs, errors);
    }
    if errors.len() != before {
        return None;
    }
    Some(PipelineDef {
        name: pipeline.clone(),
        description: raw.description.clone(),
        max_runs: raw.max_runs.as_ref().map(|m| m.value),
        stages: defs.into_iter().map(|(_, def)| def).collect(),
    })
}

fn unknown_signal(stage: &str, kind: StageKind, signal: &str) -> Problem {
    let expected: Vec<String> = kind.signals().iter().map(|s| format!("`{s}`")).collect();
    Problem::UnknownSignal {
        stage: stage.to_string(),
        kind,
        signal: signal.to_string(),
        expected: expected.join(" or "),
    }
}

/// Checks a role's harness, model and prompt; returns it as far as it is sound.
fn check_role(raw: &RawRole, checker: &dyn Checker, err: &mut impl FnMut(usize, Problem)) -> Role {
    let mut role = Role {
        harness: None,
        model: raw.model.as_ref().map(|m| m.value.clone()),
        effort: raw.effort.as_ref().map(|e| e.value.clone()),
        prompt: None,
    };
    if let Some(harness) = &raw.harness {
        let known = checker.harnesses();
        if known.contains(&harness.value) {
            role.harness = Some(harness.value.clone());
            if let Some(model) = &raw.model
                && let Err(reason) = checker.check_model(&harness.value, &model.value)
            {
                err(
                    model.line,
                    Problem::BadModel {
                        harness: harness.value.clone(),
                        model: model.value.clone(),
                        reason,
                    },
                );
            }
        } else {
            let hint = known
                .iter()
                .find(|h| h.starts_with(&harness.value) || harness.value.starts_with(h.as_str()))
                .map_or(String::new(), |h| format!(" (did you mean `{h}`?)"));
            err(
                harness.line,
                Problem::UnknownHarness {
                    harness: harness.value.clone(),
                    expected: known.join(", "),
                    hint,
                },
            );
        }
    }
    if let Some(prompt) = &raw.prompt {
        let path = &prompt.value;
        let relative = !path.starts_with('/') && !path.split('/').any(|part| part == "..");
        if !relative || !path.ends_with(".md") || path.len() <= 3 {
            err(prompt.line, Problem::PromptName { path: path.clone() });
        } else {
            if let Err(reason) = checker.check_prompt(path, prompt.line) {
                err(
                    prompt.line,
                    Problem::BadPrompt {
                        path: path.clone(),
                        reason,
                    },
                );
            }
            role.prompt = Some(path.clone());
        }
    }
    role
}

/// Reachability from the first stage, a path to `done`, and a cap on every loop.
fn check_graph(
    pipeline: &str,
    pipeline_line: usize,
    defs: &[(&RawStage, StageDef)],
    errors: &mut Vec<DefError>,
) {
    let Some((_, first)) = defs.first() else {
        return;
    };
    let index: BTreeMap<&str, usize> = defs
        .iter()
        .enumerate()
        .map(|(i, (_, def))| (def.name.as_str(), i))
        .collect();
    let edges = |i: usize| -> Vec<usize> {
        defs[i]
            .1
            .on
            .iter()
            .filter_map(|t| match &t.to {
                Target::Stage(name) => index.get(name.as_str()).copied(),
                Target::Done => None,
            })
            .collect()
    };

    // Reachability.
    let mut seen = BTreeSet::from([0usize]);
    let mut todo = vec![0usize];
    let mut ends = false;
    while let Some(i) = todo.pop() {
        ends |= defs[i].1.on.iter().any(|t| t.to == Target::Done);
        for next in edges(i) {
            if seen.insert(next) {
                todo.push(next);
            }
        }
    }
    for (i, (raw, def)) in defs.iter().enumerate() {
        if !seen.contains(&i) {
            errors.push(DefError {
                line: raw.name.as_ref().map_or(raw.line, |n| n.line),
                problem: Problem::Unreachable {
                    stage: def.name.clone(),
                    first: first.name.clone(),
                },
            });
        }
    }
    if !ends {
        errors.push(DefError {
            line: pipeline_line,
            problem: Problem::NoEnd {
                pipeline: pipeline.to_string(),
            },
        });
    }

    // Loops among uncapped stages: a depth-first search for a back edge.
    let uncapped = |i: usize| !defs[i].1.caps.bounds_loops();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Closed,
    }
    let mut marks = vec![Mark::New; defs.len()];
    for start in 0..defs.len() {
        if !uncapped(start) || marks[start] != Mark::New {
            continue;
        }
        // (stage, next edge to try); `path` mirrors the open stages.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Open;
        while let Some(&mut (i, ref mut next)) = stack.last_mut() {
            let out = edges(i);
            if *next >= out.len() {
                marks[i] = Mark::Closed;
                stack.pop();
                continue;
            }
            let j = out[*next];
            *next += 1;
            if !uncapped(j) {
                continue;
            }
            match marks[j] {
                Mark::New => {
                    marks[j] = Mark::Open;
                    stack.push((j, 0));
                }
                Mark::Open => {
                    let from = stack.iter().position(|&(k, _)| k == j).unwrap_or(0);
                    let mut path: Vec<&str> = stack[from..]
                        .iter()
                        .map(|&(k, _)| defs[k].1.name.as_str())
                        .collect();
                    path.push(defs[j].1.name.as_str());
                    // The line of the transition that closes the loop.
                    let raw = defs[i].0;
                    let line = raw
                        .on
                        .iter()
                        .find(|(_, target)| target.value == defs[j].1.name)
                        .map_or(raw.line, |(signal, _)| signal.line);
                    errors.push(DefError {
                        line,
                        problem: Problem::LoopWithoutCap {
                            path: path.join(" → "),
                        },
                    });
                    return;
                }
                Mark::Closed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
