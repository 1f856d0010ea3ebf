//! Scenario → next answer, API-neutral: segments between tool calls, the end of a turn,
//! `question`, task-doc steps, infrastructure steps and their counters, errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harness::scenario::Step;
use serde_json::json;
use simulator::conversation::Conversation;
use simulator::play::{
    Action, Answer, Counters, Outcome, Part, PlayError, Reply, Tail, play, to_action,
};
use std::time::Duration;

fn dir(scenario: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.json"), scenario.to_string()).unwrap();
    dir
}

/// A conversation at turn `turn` (typed messages) after `calls` tool calls.
fn conv(turn: usize, calls: usize) -> Conversation {
    let mut c = Conversation::default();
    c.push_user(&["Atelier-Stage: plan #0\nPlan it."], false);
    for i in 0..turn {
        c.push_user(&[&format!("follow-up {i}")], false);
    }
    c.push_calls(calls);
    c
}

fn answer(reply: Result<Reply, PlayError>) -> Answer {
    match reply.unwrap().outcome {
        Outcome::Answer(a) => a,
        other => panic!("{other:?}"),
    }
}

fn shell(command: &str) -> Tail {
    Tail::Action(Action::Shell {
        command: command.into(),
    })
}

#[test]
fn walks_the_segments_between_tool_calls() {
    let d = dir(json!({"runs": [[
        {"do": "message", "text": "a"},
        {"do": "sleep", "ms": 5},
        {"do": "run", "command": "ls"},
        {"do": "check", "item": "it's"},
        {"do": "thinking", "text": "t"},
        {"do": "question", "text": "Why?"},
        {"do": "message", "text": "never said"}
    ]]}));
    let counters = Counters::default();
    let at = |calls| answer(play(&conv(0, calls), d.path(), &counters));
    assert_eq!(
        at(0),
        Answer {
            parts: vec![
                Part::Text("a".into()),
                Part::Pause(Duration::from_millis(5))
            ],
            tail: shell("ls"),
            pacing: None,
        }
    );
    assert_eq!(
        at(1).tail,
        shell(r#"atelier scripted-step '{"do":"check","item":"it'\''s"}'"#)
    );
    assert_eq!(
        at(2),
        Answer {
            parts: vec![Part::Thinking("t".into())],
            tail: shell("atelier signal question 'Why?'"),
            pacing: None,
        }
    );
    // After the question the turn is over, whatever follows it.
    for calls in [3, 4, 9] {
        assert_eq!(
            at(calls),
            Answer {
                parts: vec![Part::Text("done".into())],
                ..Answer::default()
            }
        );
    }
}

#[test]
fn maps_every_action_step() {
    let action =
        |step: serde_json::Value| to_action(&serde_json::from_value::<Step>(step).unwrap());
    let shell = |c: &str| Some(Action::Shell { command: c.into() });
    assert_eq!(
        action(json!({"do": "write", "path": "a", "content": "x"})),
        Some(Action::Write {
            path: "a".into(),
            content: "x".into()
        })
    );
    assert_eq!(
        action(json!({"do": "append", "path": "d/a b", "content": "x\n"})),
        shell("mkdir -p d && cat >> 'd/a b' <<'ATELIER_EOF'\nx\nATELIER_EOF")
    );
    assert_eq!(
        action(json!({"do": "append", "path": "a", "content": "it's"})),
        shell(r"printf '%s' 'it'\''s' >> a")
    );
    assert_eq!(
        action(json!({"do": "spawn", "command": "sleep 9"})),
        shell("nohup sh -c 'sleep 9' > /dev/null 2>&1 &")
    );
    assert_eq!(
        action(json!({"do": "signal", "args": ["verdict", "needs-work"]})),
        shell("atelier signal verdict needs-work")
    );
    assert_eq!(
        action(json!({"do": "doc_section", "heading": "Plan", "body": "x"})),
        shell(r#"atelier scripted-step '{"do":"doc_section","heading":"Plan","body":"x"}'"#)
    );
    assert_eq!(
        action(json!({"do": "tool", "name": "Grep", "input": {"q": 1}, "output": "o"})),
        Some(Action::Named {
            name: "Grep".into(),
            input: json!({"q": 1}),
            output: "o".into()
        })
    );
    for passive in [
        json!({"do": "message", "text": "x"}),
        json!({"do": "hang"}),
        json!({"do": "slow", "ms_per_chunk": 1}),
    ] {
        assert_eq!(action(passive), None);
    }
}

#[test]
fn infrastructure_steps_apply_as_often_as_asked() {
    let d = dir(json!({"runs": [[
        {"do": "stall", "ms": 7},
        {"do": "http_error", "status": 529, "times": 2},
        {"do": "garbage"},
        {"do": "slow", "ms_per_chunk": 3},
        {"do": "message", "text": "through"}
    ]]}));
    let counters = Counters::default();
    let reply = || play(&conv(0, 0), d.path(), &counters).unwrap();
    let first = reply();
    assert_eq!(first.stall, Some(Some(Duration::from_millis(7))));
    assert_eq!(
        first.outcome,
        Outcome::HttpError {
            status: 529,
            message: "Overloaded (simulated)".into(),
            body: None
        }
    );
    let second = reply();
    assert_eq!(second.stall, None);
    assert!(matches!(
        second.outcome,
        Outcome::HttpError { status: 529, .. }
    ));
    assert_eq!(reply().outcome, Outcome::Garbage { lines: 3 });
    let through = reply();
    assert_eq!(
        through.outcome,
        Outcome::Answer(Answer {
            parts: vec![Part::Text("through".into())],
            tail: Tail::EndTurn,
            pacing: Some(Duration::from_millis(3)),
        })
    );
    assert_eq!(through.position, "plan #0 turn 0 step 0");
    // Another simulator (fresh counters) starts over.
    let fresh = Counters::default();
    assert!(matches!(
        play(&conv(0, 0), d.path(), &fresh).unwrap().outcome,
        Outcome::HttpError { .. }
    ));
}

#[test]
fn fail_hang_and_crash() {
    let d = dir(json!({"runs": [
        {"turns": [[{"do": "message", "text": "x"}, {"do": "fail", "error": "broken"}],
                   [{"do": "message", "text": "waiting"}, {"do": "hang"}],
                   [{"do": "crash", "code": 3}]]}
    ]}));
    let counters = Counters::default();
    assert_eq!(
        play(&conv(0, 0), d.path(), &counters).unwrap().outcome,
        Outcome::HttpError {
            status: 400,
            message: "broken".into(),
            body: None
        }
    );
    let hang = answer(play(&conv(1, 0), d.path(), &counters));
    assert_eq!(
        (hang.parts, hang.tail),
        (vec![Part::Text("waiting".into())], Tail::Hang)
    );
    assert_eq!(
        answer(play(&conv(2, 0), d.path(), &counters)).tail,
        Tail::Cut
    );
    // Past the last turn (a continued session), the last turn repeats.
    assert_eq!(
        answer(play(&conv(3, 0), d.path(), &counters)).tail,
        Tail::Cut
    );
}

#[test]
fn runs_past_the_end_repeat_the_last() {
    let d = dir(json!({"runs": [[{"do": "message", "text": "first"}], [{"do": "echo_input"}]]}));
    let mut c = Conversation::default();
    c.push_system("Atelier-Stage: plan #7");
    c.push_user(
        &["<system-reminder>x</system-reminder>", "the prompt"],
        false,
    );
    let reply = play(&c, d.path(), &Counters::default()).unwrap();
    assert_eq!(reply.position, "plan #1 turn 0 step 0");
    assert_eq!(
        answer(Ok(reply)).parts,
        vec![Part::Text("the prompt".into())]
    );
}

#[test]
fn explains_what_cannot_be_played() {
    let d = dir(json!({"runs": [[{"do": "message", "text": "x"}]]}));
    std::fs::write(d.path().join("bad.json"), r#"{"runs": []}"#).unwrap();
    let counters = Counters::default();
    let err = |text: &str| {
        let mut c = Conversation::default();
        c.push_user(&[text], false);
        play(&c, d.path(), &counters).unwrap_err().0
    };
    assert!(err("no line").contains("no `Atelier-Stage: <stage> #<iteration>` line"));
    let missing = err("Atelier-Stage: review #0");
    assert!(
        missing.starts_with("Atelier simulator: stage `review`: cannot read scenario file"),
        "{missing}"
    );
    assert!(missing.contains("review.json"), "{missing}");
    let invalid = err("Atelier-Stage: bad #0");
    assert!(invalid.contains("`runs` is empty"), "{invalid}");
}
