//! Which pipeline a task runs. `decide` runs the built-in pipelines whose stages are today's
//! [`Stage`]s: `standard` (plan → gate → implement ⇄ review → pr) and `yolo` (implement → pr,
//! no plan, no gate, no review). `full` is defined (`pipeline_def`) but not runnable yet.

use crate::pipeline_def::{self, StageKind};
use crate::stage::Stage;
use std::fmt;

/// A runnable pipeline, as the task records it (`tasks.pipeline`, its [`PipelineKind::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PipelineKind {
    /// plan → human gate → implement ⇄ review → pr: what every task ran before pipelines.
    #[default]
    Standard,
    /// One implementer that tests its work and signals `pr-done`; its pull request is published
    /// with no plan, no gate and no review.
    Yolo,
}

/// Why a pipeline name cannot be run by a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownPipeline {
    #[error(
        "the pipeline `{name}` is not runnable yet: {why}; choose one of {}",
        known_list()
    )]
    NotRunnable { name: String, why: &'static str },
    #[error("unknown pipeline `{name}`: expected one of {}", known_list())]
    Unknown { name: String },
}

/// The runnable names, quoted: "`standard`, `yolo`".
fn known_list() -> String {
    PipelineKind::ALL
        .iter()
        .map(|kind| format!("`{}`", kind.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PipelineKind {
    /// Every runnable pipeline, in the order they are listed.
    pub const ALL: [PipelineKind; 2] = [PipelineKind::Standard, PipelineKind::Yolo];

    /// The pipeline's name, as in `pipeline_def::builtins` and the task row.
    pub fn name(self) -> &'static str {
        match self {
            PipelineKind::Standard => "standard",
            PipelineKind::Yolo => "yolo",
        }
    }

    /// The runnable pipeline called `name`, or why there is none: a built-in that is defined but
    /// not runnable yet (`full`) says so, any other name lists the runnable ones.
    pub fn parse(name: &str) -> Result<PipelineKind, UnknownPipeline> {
        if let Some(kind) = PipelineKind::ALL.into_iter().find(|k| k.name() == name) {
            return Ok(kind);
        }
        if name == "full" {
            return Err(UnknownPipeline::NotRunnable {
                name: name.to_string(),
                why: "its qa and refine stages have no agents yet",
            });
        }
        Err(UnknownPipeline::Unknown {
            name: name.to_string(),
        })
    }

    /// The stages a task of this pipeline can run, in order; the first is where it starts.
    pub fn stages(self) -> &'static [Stage] {
        match self {
            PipelineKind::Standard => &Stage::ALL,
            PipelineKind::Yolo => &[Stage::Implement, Stage::Pr],
        }
    }

    /// Where a new task starts.
    pub fn first_stage(self) -> Stage {
        self.stages()[0]
    }

    pub fn has_stage(self, stage: Stage) -> bool {
        self.stages().contains(&stage)
    }

    /// The cap the built-in definition puts on the implement stage's runs (`max_runs`), if any:
    /// 5 for `yolo`, none for `standard` (its loop is capped by review rounds).
    pub fn implement_runs_cap(self) -> Option<u32> {
        pipeline_def::builtin(self.name())?
            .stages
            .iter()
            .find(|stage| stage.kind == StageKind::Implement)?
            .caps
            .max_runs
    }
}

impl fmt::Display for PipelineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
