//! Signals: the only way an agent tells Atelier something. The orchestrator never parses prose.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// The reviewer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ready,
    NeedsWork,
    Blocked,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ready => "ready",
            Verdict::NeedsWork => "needs-work",
            Verdict::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verdict `{0}`: expected ready, needs-work or blocked")]
pub struct UnknownVerdict(pub String);

impl FromStr for Verdict {
    type Err = UnknownVerdict;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ready" => Ok(Verdict::Ready),
            "needs-work" => Ok(Verdict::NeedsWork),
            "blocked" => Ok(Verdict::Blocked),
            other => Err(UnknownVerdict(other.to_string())),
        }
    }
}

/// What the QA agent found when it ran the plan's manual scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QaResult {
    Pass,
    Fail,
}

impl QaResult {
    pub fn as_str(self) -> &'static str {
        match self {
            QaResult::Pass => "pass",
            QaResult::Fail => "fail",
        }
    }
}

impl fmt::Display for QaResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown QA result `{0}`: expected pass or fail")]
pub struct UnknownQaResult(pub String);

impl FromStr for QaResult {
    type Err = UnknownQaResult;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pass" => Ok(QaResult::Pass),
            "fail" => Ok(QaResult::Fail),
            other => Err(UnknownQaResult(other.to_string())),
        }
    }
}

/// What an agent can tell Atelier with `atelier signal …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Signal {
    PlanReady,
    Question {
        text: String,
    },
    Verdict {
        verdict: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    PrDone {
        #[serde(default)]
        no_changes: bool,
    },
    /// `atelier signal qa pass|fail --reason …`: the QA stage's result.
    Qa {
        result: QaResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `atelier signal refine-done`: the refinement pass is finished.
    RefineDone,
}

/// A signal whose content is unacceptable (e.g. an empty question).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSignal {
    #[error("a question needs a non-empty text")]
    EmptyQuestion,
    #[error("a `blocked` verdict needs a --reason saying what a human must do")]
    BlockedWithoutReason,
    #[error("`qa fail` needs a --reason with the findings: what failed, and how to reproduce it")]
    FailWithoutReason,
    #[error("signal text is too long ({0} bytes, at most 16384)")]
    TooLong(usize),
}

impl Signal {
    /// Checks the content rules that the type alone cannot express.
    pub fn validate(&self) -> Result<(), InvalidSignal> {
        const MAX: usize = 16 * 1024;
        let text_len = match self {
            Signal::Question { text } => {
                if text.trim().is_empty() {
                    return Err(InvalidSignal::EmptyQuestion);
                }
                text.len()
            }
            Signal::Verdict { verdict, reason } => {
                let blank = reason.as_deref().is_none_or(|r| r.trim().is_empty());
                if *verdict == Verdict::Blocked && blank {
                    return Err(InvalidSignal::BlockedWithoutReason);
                }
                reason.as_deref().map_or(0, str::len)
            }
            Signal::Qa { result, reason } => {
                let blank = reason.as_deref().is_none_or(|r| r.trim().is_empty());
                if *result == QaResult::Fail && blank {
                    return Err(InvalidSignal::FailWithoutReason);
                }
                reason.as_deref().map_or(0, str::len)
            }
            Signal::PlanReady | Signal::PrDone { .. } | Signal::RefineDone => 0,
        };
        if text_len > MAX {
            return Err(InvalidSignal::TooLong(text_len));
        }
        Ok(())
    }
}
