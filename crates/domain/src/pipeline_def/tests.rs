//! Table tests of pipeline validation: each case is a pipeline as written (with the lines a file
//! would give it) and the whole list of problems expected, line by line.

use super::*;

/// The harnesses of a build, a model check that refuses `gpt-*` on claude-code, and a prompt
/// check that refuses `bad.md` as an engine with such a file would.
struct Fake;

impl Checker for Fake {
    fn harnesses(&self) -> Vec<String> {
        ["claude-code", "codex", "opencode", "scripted"]
            .map(String::from)
            .to_vec()
    }
    fn check_model(&self, harness: &str, model: &str) -> Result<(), String> {
        if harness == "claude-code" && model.starts_with("gpt") {
            return Err("a Claude Code model is a Claude model".into());
        }
        Ok(())
    }
    fn check_prompt(&self, path: &str, _line: usize) -> Result<(), String> {
        if path == "bad.md" {
            return Err("line 2: unknown variable `{{nope}}`".into());
        }
        Ok(())
    }
}

fn at<T>(value: T, line: usize) -> Located<T> {
    Located::new(value, line)
}

/// A stage starting at `line`: `kind` on the next line, then one line per `on` entry.
fn stage(line: usize, kind: &str, on: &[(&str, &str)]) -> RawStage {
    RawStage {
        line,
        kind: at(kind.to_string(), line + 1),
        on: on
            .iter()
            .enumerate()
            .map(|(i, (signal, to))| {
                (
                    at(signal.to_string(), line + 2 + i),
                    at(to.to_string(), line + 2 + i),
                )
            })
            .collect(),
        ..RawStage::default()
    }
}

fn named(name: &str, mut raw: RawStage) -> RawStage {
    raw.name = Some(at(name.to_string(), raw.line + 1));
    raw
}

fn rounds(max: u32, mut raw: RawStage) -> RawStage {
    raw.max_rounds = Some(at(max, raw.line + 1));
    raw
}

fn pipeline(stages: Vec<RawStage>) -> RawPipeline {
    RawPipeline {
        name: at("p".to_string(), 1),
        description: None,
        max_runs: None,
        stages,
    }
}

/// plan → implement ⇄ review → pr, on lines 10, 20, 30, 40.
fn standard_stages() -> Vec<RawStage> {
    vec![
        stage(10, "plan", &[("plan-ready", "implement")]),
        stage(20, "implement", &[("done", "review")]),
        rounds(
            3,
            stage(
                30,
                "review",
                &[("ready", "pr"), ("needs-work", "implement")],
            ),
        ),
        stage(40, "pr", &[("pr-done", "done")]),
    ]
}

fn role(harness: &str, model: &str, line: usize) -> RawRole {
    RawRole {
        harness: Some(at(harness.to_string(), line)),
        model: Some(at(model.to_string(), line)),
        ..RawRole::default()
    }
}

fn problems(raw: RawPipeline) -> Vec<(usize, Problem)> {
    match validate(&[raw], &Fake) {
        Ok(_) => vec![],
        Err(errors) => errors.into_iter().map(|e| (e.line, e.problem)).collect(),
    }
}

#[test]
fn every_builtin_is_valid_as_written() {
    for def in builtins() {
        let raw = to_raw(&def);
        assert_eq!(
            validate(&[raw], &Fake),
            Ok(vec![def.clone()]),
            "{}",
            def.name
        );
    }
    assert_eq!(
        builtins()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        BUILTIN_NAMES
    );
}

/// A definition written back as a file would give it (each field on its own line).
fn to_raw(def: &PipelineDef) -> RawPipeline {
    let mut line = 1;
    let mut next = || {
        line += 1;
        line
    };
    let located = |v: &Option<String>, line: usize| v.clone().map(|v| at(v, line));
    let stages = def
        .stages
        .iter()
        .map(|s| RawStage {
            line: next(),
            name: Some(at(s.name.clone(), next())),
            kind: at(s.kind.to_string(), next()),
            role: RawRole {
                harness: located(&s.role.harness, next()),
                model: located(&s.role.model, next()),
                effort: located(&s.role.effort, next()),
                prompt: located(&s.role.prompt, next()),
            },
            second_reviewer: None,
            on: s
                .on
                .iter()
                .map(|t| {
                    let l = next();
                    (at(t.signal.to_string(), l), at(t.to.to_string(), l))
                })
                .collect(),
            gate: Some(at(s.gate, next())),
            max_rounds: s.caps.max_rounds.map(|v| at(v, next())),
            max_runs: s.caps.max_runs.map(|v| at(v, next())),
            timeout_secs: s.caps.timeout_secs.map(|v| at(v, next())),
        })
        .collect();
    RawPipeline {
        name: at(def.name.clone(), 1),
        description: def.description.clone(),
        max_runs: def.max_runs.map(|v| at(v, 1)),
        stages,
    }
}

#[test]
fn a_sound_pipeline_becomes_its_definition() {
    let defs = validate(&[pipeline(standard_stages())], &Fake).unwrap_or_default();
    let mut expected = builtin("standard").unwrap_or_else(|| unreachable!());
    expected.name = "p".into();
    expected.description = None;
    // The raw stages carry no gate.
    expected.stages[0].gate = false;
    assert_eq!(defs, vec![expected]);
}

/// What is wrong, the pipeline as written, the problems expected at their lines.
type Case = (&'static str, RawPipeline, Vec<(usize, Problem)>);

#[test]
fn each_kind_of_mistake_is_named_at_its_line() {
    let mut cases: Vec<Case> = Vec::new();

    let mut s = standard_stages();
    s[2].kind = at("reveiw".into(), 31);
    cases.push((
        "unknown stage kind",
        pipeline(s),
        vec![(
            31,
            Problem::UnknownKind {
                kind: "reveiw".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[2].on[0].0 = at("approved".into(), 32);
    cases.push((
        "unknown signal for the kind",
        pipeline(s),
        vec![(
            32,
            Problem::UnknownSignal {
                stage: "review".into(),
                kind: StageKind::Review,
                signal: "approved".into(),
                expected: "`ready` or `needs-work`".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[0].on[0].0 = at("pass".into(), 12);
    cases.push((
        "a signal of another kind",
        pipeline(s),
        vec![(
            12,
            Problem::UnknownSignal {
                stage: "plan".into(),
                kind: StageKind::Plan,
                signal: "pass".into(),
                expected: "`plan-ready`".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[2].on[0].1 = at("qa".into(), 32);
    cases.push((
        "a transition to a stage that does not exist",
        pipeline(s),
        vec![(
            32,
            Problem::UnknownTarget {
                stage: "review".into(),
                signal: StageSignal::Ready,
                target: "qa".into(),
                expected: "`implement`, `plan`, `pr`, `review`, `done`".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[2].on.pop();
    cases.push((
        "a signal without a destination",
        pipeline(s),
        vec![(
            30,
            Problem::MissingSignal {
                stage: "review".into(),
                kind: StageKind::Review,
                signal: "needs-work".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[1].role.harness = Some(at("claude".into(), 25));
    cases.push((
        "an unknown harness",
        pipeline(s),
        vec![(
            25,
            Problem::UnknownHarness {
                harness: "claude".into(),
                expected: "claude-code, codex, opencode, scripted".into(),
                hint: " (did you mean `claude-code`?)".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[1].role = role("claude-code", "gpt-5", 25);
    cases.push((
        "a model of another harness",
        pipeline(s),
        vec![(
            25,
            Problem::BadModel {
                harness: "claude-code".into(),
                model: "gpt-5".into(),
                reason: "a Claude Code model is a Claude model".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[1].role.prompt = Some(at("bad.md".into(), 26));
    cases.push((
        "a prompt with an unknown variable",
        pipeline(s),
        vec![(
            26,
            Problem::BadPrompt {
                path: "bad.md".into(),
                reason: "line 2: unknown variable `{{nope}}`".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[1].role.prompt = Some(at("../prompts/implement.txt".into(), 26));
    cases.push((
        "a prompt path outside the folder",
        pipeline(s),
        vec![(
            26,
            Problem::PromptName {
                path: "../prompts/implement.txt".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s.insert(3, stage(35, "qa", &[("pass", "pr"), ("fail", "implement")]));
    cases.push((
        "an unreachable stage",
        pipeline(s),
        vec![(
            35,
            Problem::Unreachable {
                stage: "qa".into(),
                first: "plan".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[2].max_rounds = None;
    cases.push((
        "a loop without a cap",
        pipeline(s),
        vec![(
            33,
            Problem::LoopWithoutCap {
                path: "implement → review → implement".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s.pop();
    s[2].on[0].1 = at("implement".into(), 32);
    cases.push((
        "no path to done",
        pipeline(s),
        vec![(
            1,
            Problem::NoEnd {
                pipeline: "p".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[1].on[0].1 = at("done".into(), 22);
    cases.push((
        "done from a stage that is not pr",
        pipeline(s),
        vec![(
            22,
            Problem::DoneOutsidePr {
                stage: "implement".into(),
                signal: StageSignal::Done,
            },
        )],
    ));

    let mut s = standard_stages();
    s[3].on[0].1 = at("review".into(), 42);
    cases.push((
        "a pr stage that does not end",
        pipeline(s),
        vec![(
            42,
            Problem::PrNotEnding {
                stage: "pr".into(),
                target: "review".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s.insert(
        3,
        rounds(
            2,
            stage(
                35,
                "review",
                &[("ready", "pr"), ("needs-work", "implement")],
            ),
        ),
    );
    cases.push((
        "duplicate stage names",
        pipeline(s),
        vec![(
            35,
            Problem::DuplicateStage {
                name: "review".into(),
                first_line: 30,
            },
        )],
    ));

    let mut s = standard_stages();
    s[2].role = role("codex", "gpt-5", 33);
    s[2].second_reviewer = Some(at(role("codex", "gpt-5", 36), 36));
    cases.push((
        "a second reviewer on the same harness and model",
        pipeline(s),
        vec![(
            36,
            Problem::SameReviewers {
                stage: "review".into(),
                harness: "codex".into(),
                model: ", gpt-5".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[2].second_reviewer = Some(at(role("codex", "gpt-5", 36), 36));
    cases.push((
        "a second reviewer next to an unnamed first",
        pipeline(s),
        vec![(
            36,
            Problem::SecondReviewerUnnamed {
                stage: "review".into(),
            },
        )],
    ));

    let mut s = standard_stages();
    s[1].role = role("codex", "gpt-5", 23);
    s[1].second_reviewer = Some(at(role("claude-code", "opus", 26), 26));
    cases.push((
        "a second reviewer outside review",
        pipeline(s),
        vec![(
            26,
            Problem::SecondReviewerOutsideReview {
                stage: "implement".into(),
                kind: StageKind::Implement,
            },
        )],
    ));

    let mut s = standard_stages();
    s[2].max_rounds = Some(at(0, 31));
    cases.push((
        "a zero cap",
        pipeline(s),
        vec![(
            31,
            Problem::ZeroCap {
                field: "max_rounds",
            },
        )],
    ));

    let mut s = standard_stages();
    s[2] = named(
        "done",
        rounds(
            3,
            stage(
                30,
                "review",
                &[("ready", "pr"), ("needs-work", "implement")],
            ),
        ),
    );
    s[1].on[0].1 = at("done".into(), 22);
    cases.push((
        "a stage named done",
        pipeline(s),
        vec![
            (
                22,
                Problem::DoneOutsidePr {
                    stage: "implement".into(),
                    signal: StageSignal::Done,
                },
            ),
            (
                31,
                Problem::ReservedName {
                    name: "done".into(),
                },
            ),
        ],
    ));

    let mut s = standard_stages();
    s[1].on.clear();
    cases.push((
        "an implement stage that leads nowhere",
        pipeline(s),
        vec![(
            20,
            Problem::MissingSignal {
                stage: "implement".into(),
                kind: StageKind::Implement,
                signal: "done` or `pr-done".into(),
            },
        )],
    ));

    cases.push((
        "no stages",
        pipeline(vec![]),
        vec![(
            1,
            Problem::NoStages {
                pipeline: "p".into(),
            },
        )],
    ));

    let mut p = pipeline(standard_stages());
    p.name = at("My Pipeline".into(), 1);
    cases.push((
        "a bad pipeline name",
        p,
        vec![(
            1,
            Problem::BadName {
                what: "pipeline",
                name: "My Pipeline".into(),
            },
        )],
    ));

    for (what, raw, expected) in cases {
        assert_eq!(problems(raw), expected, "{what}");
    }
}

#[test]
fn two_reviewers_on_different_models_are_kept() {
    let mut s = standard_stages();
    s[2].role = role("codex", "gpt-5", 33);
    s[2].second_reviewer = Some(at(role("claude-code", "opus", 36), 36));
    let defs = validate(&[pipeline(s)], &Fake).unwrap_or_default();
    let review = defs[0].stage("review").cloned();
    assert_eq!(
        review.and_then(|r| r.second_reviewer),
        Some(Role {
            harness: Some("claude-code".into()),
            model: Some("opus".into()),
            ..Role::default()
        })
    );
}

#[test]
fn a_loop_capped_anywhere_on_it_passes() {
    // qa fail → implement → review → qa: capped by review's rounds alone.
    let s = vec![
        stage(10, "plan", &[("plan-ready", "implement")]),
        stage(20, "implement", &[("done", "review")]),
        rounds(
            3,
            stage(
                30,
                "review",
                &[("ready", "qa"), ("needs-work", "implement")],
            ),
        ),
        stage(40, "qa", &[("pass", "pr"), ("fail", "implement")]),
        stage(50, "pr", &[("pr-done", "done")]),
    ];
    assert_eq!(problems(pipeline(s)), vec![]);
}

#[test]
fn signals_and_kinds_round_trip_their_names() {
    for kind in StageKind::ALL {
        assert_eq!(kind.as_str().parse::<StageKind>(), Ok(kind));
    }
    for signal in StageSignal::ALL {
        assert_eq!(signal.as_str().parse::<StageSignal>(), Ok(signal));
    }
}
