//! Which pipeline a task runs: a validated definition (`pipeline_def`) — a built-in
//! (`standard`, `full`, `yolo`) or one a project defines — wrapped so `decide` can ask it where
//! a signal leads and what caps a stage. The task keeps the definition it was created with.

use crate::pipeline_def::{self, PipelineDef, StageDef, StageKind, StageSignal, Target};
use crate::stage::Stage;
use std::fmt;
use std::sync::Arc;

/// A runnable pipeline: a validated definition with at most one stage of each kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline(Arc<PipelineDef>);

/// Where a signal of a stage leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Start a run of this stage (for a `pr` stage reached from `implement`'s `pr-done`: publish).
    Stage(Stage),
    /// The pipeline ends: the pull request is open and followed until a human merges it.
    Done,
}

/// Why a pipeline name cannot be run by a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownPipeline {
    #[error("unknown pipeline `{name}`: expected one of {known}")]
    Unknown { name: String, known: String },
    #[error("pipeline `{name}` cannot run: {reason}")]
    NotRunnable { name: String, reason: String },
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::standard()
    }
}

impl Pipeline {
    /// Wraps a validated definition, refusing one a task cannot run (two stages of one kind;
    /// `pipeline_def::validate` refuses those too).
    pub fn new(def: PipelineDef) -> Result<Pipeline, UnknownPipeline> {
        for (i, stage) in def.stages.iter().enumerate() {
            if def.stages[..i].iter().any(|s| s.kind == stage.kind) {
                return Err(UnknownPipeline::NotRunnable {
                    name: def.name.clone(),
                    reason: format!("it has two {} stages", stage.kind),
                });
            }
        }
        if def.stages.is_empty() {
            return Err(UnknownPipeline::NotRunnable {
                name: def.name.clone(),
                reason: "it has no stages".into(),
            });
        }
        Ok(Pipeline(Arc::new(def)))
    }

    /// The built-in pipeline called `name`.
    #[allow(
        clippy::expect_used,
        reason = "every built-in is runnable: the pipeline tests build each one"
    )]
    pub fn builtin(name: &str) -> Option<Pipeline> {
        pipeline_def::builtin(name).map(|def| Pipeline::new(def).expect("built-ins are runnable"))
    }

    /// plan → gate → implement ⇄ review → pr: the default.
    #[allow(clippy::expect_used, reason = "`standard` is one of the built-ins")]
    pub fn standard() -> Pipeline {
        Pipeline::builtin("standard").expect("`standard` is built in")
    }

    /// The built-in called `name`, or why there is none (naming the built-ins).
    pub fn parse_builtin(name: &str) -> Result<Pipeline, UnknownPipeline> {
        Pipeline::builtin(name).ok_or_else(|| UnknownPipeline::Unknown {
            name: name.to_string(),
            known: pipeline_def::BUILTIN_NAMES
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn def(&self) -> &PipelineDef {
        &self.0
    }

    /// The stages a task of this pipeline can run, in order (a second reviewer right after its
    /// review stage); the first is where it starts.
    pub fn stages(&self) -> Vec<Stage> {
        let mut stages = Vec::new();
        for stage in &self.0.stages {
            stages.push(stage.kind.stage());
            if stage.second_reviewer.is_some() {
                stages.push(Stage::SecondReview);
            }
        }
        stages
    }

    /// Where a new task starts.
    pub fn first_stage(&self) -> Stage {
        self.0.stages[0].kind.stage()
    }

    pub fn has_stage(&self, stage: Stage) -> bool {
        self.stage_def(stage).is_some()
    }

    /// The definition of `stage` (a second reviewer's is its review stage's).
    pub fn stage_def(&self, stage: Stage) -> Option<&StageDef> {
        let def = self.0.stages.iter().find(|s| match stage {
            Stage::SecondReview => s.kind == StageKind::Review,
            _ => s.kind.stage() == stage,
        })?;
        (stage != Stage::SecondReview || def.second_reviewer.is_some()).then_some(def)
    }

    /// Whether the review stage has a second, independent reviewer.
    pub fn has_second_reviewer(&self) -> bool {
        self.has_stage(Stage::SecondReview)
    }

    /// Where `signal` of `stage` leads, if the stage routes it.
    pub fn next(&self, stage: Stage, signal: StageSignal) -> Option<Next> {
        match self.stage_def(stage)?.next(signal)? {
            Target::Done => Some(Next::Done),
            Target::Stage(name) => Some(Next::Stage(self.0.stage(name)?.kind.stage())),
        }
    }

    /// Whether a human approves `stage`'s signal before it is followed.
    pub fn gated(&self, stage: Stage) -> bool {
        self.stage_def(stage).is_some_and(|s| s.gate)
    }

    /// The cap on runs of `stage` (`max_runs` of its definition), if any.
    pub fn runs_cap(&self, stage: Stage) -> Option<u32> {
        self.stage_def(stage)?.caps.max_runs
    }

    /// The cap on rounds of a loop through `stage` (`max_rounds`), if any.
    pub fn rounds_cap(&self, stage: Stage) -> Option<u32> {
        self.stage_def(stage)?.caps.max_rounds
    }

    /// The cap on the task's runs of the whole pipeline (`max_runs`), if any.
    pub fn total_runs_cap(&self) -> Option<u32> {
        self.0.max_runs
    }

    /// The signals `stage` ends with in this pipeline, for an agent's prompt and refusals.
    pub fn signals(&self, stage: Stage) -> Vec<StageSignal> {
        self.stage_def(stage)
            .map(|s| s.on.iter().map(|t| t.signal).collect())
            .unwrap_or_default()
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
