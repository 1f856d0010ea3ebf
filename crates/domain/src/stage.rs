//! The stages a task's runs belong to: each has a role with its own agent. A pipeline
//! (`pipeline_def`) runs some of them in an order of its own.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// One stage; each stage has a role with its own agent. `SecondReview` is the second,
/// independent reviewer of a pipeline whose review stage declares one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Plan,
    Implement,
    Review,
    SecondReview,
    Qa,
    Refine,
    Pr,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Plan,
        Stage::Implement,
        Stage::Review,
        Stage::SecondReview,
        Stage::Qa,
        Stage::Refine,
        Stage::Pr,
    ];

    /// The stages of the `standard` pipeline (what every project has a role for).
    pub const STANDARD: [Stage; 4] = [Stage::Plan, Stage::Implement, Stage::Review, Stage::Pr];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Implement => "implement",
            Stage::Review => "review",
            Stage::SecondReview => "second_review",
            Stage::Qa => "qa",
            Stage::Refine => "refine",
            Stage::Pr => "pr",
        }
    }

    /// Whether a run of the stage gives a review verdict (`atelier signal verdict …`).
    pub fn reviews(self) -> bool {
        matches!(self, Stage::Review | Stage::SecondReview)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a stage name that is not one of the stages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown stage `{0}`: expected one of plan, implement, review, second_review, qa, refine, pr"
)]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_string()))
    }
}
