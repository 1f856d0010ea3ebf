//! The stages of the default pipeline.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// One stage of the default pipeline; each stage has a role with its own agent.
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
    Pr,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Plan, Stage::Implement, Stage::Review, Stage::Pr];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Implement => "implement",
            Stage::Review => "review",
            Stage::Pr => "pr",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a stage name that is not one of `plan`, `implement`, `review`, `pr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage `{0}`: expected one of plan, implement, review, pr")]
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
