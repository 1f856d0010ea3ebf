//! Tests of the scenario format: both run forms, validation, loading errors, the stage line.

use super::*;
use serde_json::json;

fn every_step() -> Vec<Step> {
    vec![
        Step::Message { text: "hi".into() },
        Step::Thinking { text: "hm".into() },
        Step::Tool {
            name: "search".into(),
            input: json!({"q": "x"}),
            output: "found".into(),
        },
        Step::Write {
            path: "a.txt".into(),
            content: "a".into(),
        },
        Step::Append {
            path: "a.txt".into(),
            content: "b".into(),
        },
        Step::Run {
            command: "ls".into(),
        },
        Step::Spawn {
            command: "sleep 9".into(),
        },
        Step::Check { item: "one".into() },
        Step::Uncheck { item: "one".into() },
        Step::DocAppend { text: "t".into() },
        Step::DocSection {
            heading: "Review Findings".into(),
            body: "none".into(),
        },
        Step::Signal {
            args: vec!["plan-ready".into()],
        },
        Step::Question { text: "?".into() },
        Step::EchoInput {},
        Step::Sleep { ms: 5 },
        Step::Hang {},
        Step::Burst {
            count: 3,
            per_second: None,
        },
        Step::Burst {
            count: 3,
            per_second: Some(50.0),
        },
        Step::Crash {
            code: 3,
            stderr: Some("boom".into()),
        },
        Step::Crash {
            code: 4,
            stderr: None,
        },
        Step::Garbage { lines: 2 },
        Step::Fail { error: "no".into() },
        Step::HttpError {
            status: 429,
            body: None,
            times: None,
        },
        Step::HttpError {
            status: 500,
            body: Some("{}".into()),
            times: Some(2),
        },
        Step::Stall { ms: None },
        Step::Stall { ms: Some(10) },
        Step::Slow { ms_per_chunk: 5 },
    ]
}

#[test]
fn round_trips_every_step_in_both_forms() {
    let scenario = Scenario {
        runs: vec![
            RunScript::single(every_step()),
            RunScript::with_turns(vec![every_step(), vec![Step::EchoInput {}]]),
        ],
    };
    let text = serde_json::to_string_pretty(&scenario).unwrap();
    let back: Scenario = serde_json::from_str(&text).unwrap();
    assert_eq!(back, scenario);
    scenario.validate().unwrap();
}

#[test]
fn parses_the_documented_shapes() {
    let text = r#"{"runs": [
        [{"do": "message", "text": "hi"}, {"do": "tool", "name": "grep"}],
        {"turns": [[{"do": "question", "text": "why?"}], [{"do": "echo_input"}]]}
    ]}"#;
    let scenario: Scenario = serde_json::from_str(text).unwrap();
    assert_eq!(
        scenario,
        Scenario {
            runs: vec![
                RunScript::single(vec![
                    Step::Message { text: "hi".into() },
                    Step::Tool {
                        name: "grep".into(),
                        input: serde_json::Value::Null,
                        output: String::new(),
                    },
                ]),
                RunScript::with_turns(vec![
                    vec![Step::Question {
                        text: "why?".into()
                    }],
                    vec![Step::EchoInput {}],
                ]),
            ]
        }
    );
    assert_eq!(
        serde_json::to_value(&scenario.runs[0]).unwrap(),
        json!([{"do": "message", "text": "hi"}, {"do": "tool", "name": "grep", "input": null, "output": ""}])
    );
}

#[test]
fn the_last_run_repeats() {
    let a = RunScript::single(vec![Step::Message { text: "a".into() }]);
    let b = RunScript::single(vec![Step::Message { text: "b".into() }]);
    let scenario = Scenario {
        runs: vec![a.clone(), b.clone()],
    };
    assert_eq!(scenario.run(0), &a);
    assert_eq!(scenario.run(1), &b);
    assert_eq!(scenario.run(7), &b);
    assert_eq!(Scenario { runs: vec![] }.run(0), &RunScript::default());
    assert_eq!(b.turn(0), Some(&[Step::Message { text: "b".into() }][..]));
    // A session continued past its scripted turns replays the last one.
    assert_eq!(b.turn(1), Some(&[Step::Message { text: "b".into() }][..]));
    assert_eq!(RunScript::default().turn(0), None);
}

#[test]
fn rejects_unknown_steps_and_fields() {
    for bad in [
        r#"{"runs": [[{"do": "teleport"}]]}"#,
        r#"{"runs": [[{"do": "message", "text": "x", "extra": 1}]]}"#,
        r#"{"runs": [[{"do": "echo_input", "extra": 1}]]}"#,
        r#"{"runs": [{"turns": [], "extra": 1}]}"#,
        r#"{"runs": [[{"text": "no tag"}]]}"#,
        r#"{"runs": ["message"]}"#,
        r#"{"runs": [], "name": "x"}"#,
    ] {
        assert!(serde_json::from_str::<Scenario>(bad).is_err(), "{bad}");
    }
}

#[test]
fn validate_rejects_empty_and_nonsense() {
    let msg = |s: Scenario| s.validate().unwrap_err().to_string();
    assert_eq!(
        msg(Scenario { runs: vec![] }),
        "invalid scenario: `runs` is empty: give at least one run"
    );
    assert_eq!(
        msg(Scenario {
            runs: vec![RunScript::with_turns(vec![])]
        }),
        "invalid scenario: run 0 has no turns"
    );
    assert_eq!(
        msg(Scenario {
            runs: vec![
                RunScript::single(vec![Step::EchoInput {}]),
                RunScript::single(vec![])
            ]
        }),
        "invalid scenario: run 1 turn 0 has no steps"
    );
    assert_eq!(
        msg(Scenario {
            runs: vec![RunScript::single(vec![Step::Burst {
                count: 1,
                per_second: Some(0.0)
            }])]
        }),
        "invalid scenario: run 0 turn 0 step 0: `per_second` must be a positive number, not 0"
    );
    assert_eq!(
        msg(Scenario {
            runs: vec![RunScript::single(vec![Step::Signal { args: vec![] }])]
        }),
        "invalid scenario: run 0 turn 0 step 0: `args` is empty: give the signal kind, e.g. [\"plan-ready\"]"
    );
}

#[test]
fn load_errors_name_the_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");

    let err = Scenario::load(&path).unwrap_err().to_string();
    assert!(err.starts_with(&format!("cannot read scenario file {}", path.display())));

    std::fs::write(
        &path,
        "{\"runs\": [\n  [{\"do\": \"message\", \"txt\": \"x\"}]\n]}",
    )
    .unwrap();
    let err = Scenario::load(&path).unwrap_err();
    let ScenarioError::Parse { line, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*line, 2);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "invalid scenario file {} at line 2, column",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains("txt"), "{text}");

    std::fs::write(&path, r#"{"runs": []}"#).unwrap();
    assert_eq!(
        Scenario::load(&path).unwrap_err().to_string(),
        format!(
            "invalid scenario file {}: `runs` is empty: give at least one run",
            path.display()
        )
    );

    std::fs::write(&path, r#"{"runs": [[{"do": "hang"}]]}"#).unwrap();
    assert_eq!(
        Scenario::load(&path).unwrap(),
        Scenario {
            runs: vec![RunScript::single(vec![Step::Hang {}])]
        }
    );
}

#[test]
fn parses_the_infrastructure_steps_with_defaults() {
    let text = r#"{"runs": [[{"do": "http_error", "status": 529}, {"do": "stall"},
        {"do": "slow", "ms_per_chunk": 20}, {"do": "garbage"}]]}"#;
    let scenario: Scenario = serde_json::from_str(text).unwrap();
    assert_eq!(
        scenario.run(0).turn(0).unwrap(),
        &[
            Step::HttpError {
                status: 529,
                body: None,
                times: None
            },
            Step::Stall { ms: None },
            Step::Slow { ms_per_chunk: 20 },
            Step::Garbage { lines: 3 },
        ]
    );
    let msg = |step: Step| {
        Scenario {
            runs: vec![RunScript::single(vec![step])],
        }
        .validate()
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        msg(Step::HttpError {
            status: 200,
            body: None,
            times: None
        }),
        "invalid scenario: run 0 turn 0 step 0: `status` must be an HTTP error status (400 to 599), not 200"
    );
    assert_eq!(
        msg(Step::HttpError {
            status: 429,
            body: None,
            times: Some(0)
        }),
        "invalid scenario: run 0 turn 0 step 0: `times` must be at least 1 (leave it out for 1)"
    );
}

#[test]
fn the_stage_line_round_trips() {
    assert_eq!(stage_line("review", 1), "Atelier-Stage: review #1");
    let prompt = format!("You review.\n\n{}\nMore text #3\n", stage_line("review", 1));
    assert_eq!(parse_stage_line(&prompt), Some(("review".into(), 1)));
    assert_eq!(
        parse_stage_line("  Atelier-Stage:   my_stage-2  #12 (second)"),
        Some(("my_stage-2".into(), 12))
    );
    assert_eq!(
        parse_stage_line("\"Atelier-Stage: plan #2\n\nDo it.\""),
        Some(("plan".into(), 2))
    );
    for bad in [
        "no line here",
        "Atelier-Stage: review",
        "Atelier-Stage: review #x",
        "Atelier-Stage: ../etc #1",
        "Atelier-Stage:  #1",
        "Atelier-Stage: two words #1",
    ] {
        assert_eq!(parse_stage_line(bad), None, "{bad}");
    }
    assert_eq!(
        parse_stage_line("Atelier-Stage: bad/x #1\nAtelier-Stage: plan #0"),
        Some(("plan".into(), 0))
    );
}
