//! The built-in pipelines as data: `standard` (the default), `full` (with QA and a refinement
//! pass) and `yolo` (one agent, no plan gate). Their roles are left to the project's settings;
//! their caps are the project policy's defaults.

use super::{Caps, PipelineDef, Role, StageDef, StageKind, StageSignal, Target, Transition};

/// Names of the built-in pipelines, in the order [`builtins`] returns them.
pub const BUILTIN_NAMES: [&str; 3] = ["standard", "full", "yolo"];

/// Review rounds that may end without `ready` (the project policy's default).
const REVIEW_ROUNDS: u32 = 3;
/// QA rounds that may fail before the task blocks.
const QA_ROUNDS: u32 = 2;
/// Runs of yolo's single implementer before the task blocks.
const YOLO_RUNS: u32 = 5;

/// Every built-in pipeline.
pub fn builtins() -> Vec<PipelineDef> {
    vec![standard(), full(), yolo()]
}

/// The built-in pipeline called `name`.
pub fn builtin(name: &str) -> Option<PipelineDef> {
    builtins().into_iter().find(|p| p.name == name)
}

fn stage(kind: StageKind, on: &[(StageSignal, &str)]) -> StageDef {
    StageDef {
        name: kind.as_str().to_string(),
        kind,
        role: Role::default(),
        second_reviewer: None,
        on: on
            .iter()
            .map(|&(signal, to)| Transition {
                signal,
                to: if to == super::DONE {
                    Target::Done
                } else {
                    Target::Stage(to.to_string())
                },
            })
            .collect(),
        gate: false,
        caps: Caps::default(),
    }
}

fn plan() -> StageDef {
    StageDef {
        gate: true,
        ..stage(StageKind::Plan, &[(StageSignal::PlanReady, "implement")])
    }
}

fn review(ready: &str) -> StageDef {
    StageDef {
        caps: Caps {
            max_rounds: Some(REVIEW_ROUNDS),
            ..Caps::default()
        },
        ..stage(
            StageKind::Review,
            &[
                (StageSignal::Ready, ready),
                (StageSignal::NeedsWork, "implement"),
            ],
        )
    }
}

fn pr() -> StageDef {
    stage(StageKind::Pr, &[(StageSignal::PrDone, "done")])
}

/// plan → gate → implement ⇄ review → pr.
pub fn standard() -> PipelineDef {
    PipelineDef {
        name: "standard".into(),
        description: Some("plan → human gate → implement ⇄ review → pr (today's pipeline)".into()),
        max_runs: None,
        stages: vec![
            plan(),
            stage(StageKind::Implement, &[(StageSignal::Done, "review")]),
            review("pr"),
            pr(),
        ],
    }
}

/// plan → gate → implement ⇄ review → qa → refine → pr.
fn full() -> PipelineDef {
    PipelineDef {
        name: "full".into(),
        description: Some(
            "plan → human gate → implement ⇄ review → qa → refine → pr; a failed QA goes back to \
             implement"
                .into(),
        ),
        max_runs: None,
        stages: vec![
            plan(),
            stage(StageKind::Implement, &[(StageSignal::Done, "review")]),
            review("qa"),
            StageDef {
                caps: Caps {
                    max_rounds: Some(QA_ROUNDS),
                    ..Caps::default()
                },
                ..stage(
                    StageKind::Qa,
                    &[
                        (StageSignal::Pass, "refine"),
                        (StageSignal::Fail, "implement"),
                    ],
                )
            },
            stage(StageKind::Refine, &[(StageSignal::RefineDone, "pr")]),
            pr(),
        ],
    }
}

/// One implementer that tests its work and signals `pr-done`; no plan, no gate, no review.
fn yolo() -> PipelineDef {
    PipelineDef {
        name: "yolo".into(),
        description: Some(
            "one agent implements, tests and signals pr-done → pr; no plan gate, no review".into(),
        ),
        max_runs: None,
        stages: vec![
            StageDef {
                caps: Caps {
                    max_runs: Some(YOLO_RUNS),
                    ..Caps::default()
                },
                ..stage(StageKind::Implement, &[(StageSignal::PrDone, "pr")])
            },
            pr(),
        ],
    }
}
