//! The Claude Code harness's command for each kind of turn (compared whole: program, args,
//! environment) and its check of a role's model and settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::Stage;
use harness::claude::ClaudeHarness;
use harness::{Capabilities, Harness, HarnessError, Interrupt, ProcessSpec, TurnRequest};
use serde_json::json;

const BIN: &str = "/opt/claude/bin/claude";

fn base_env() -> Vec<(String, String)> {
    [
        ("PATH", "/usr/bin:/bin"),
        ("HOME", "/data/homes/T-1"),
        ("LANG", "C.UTF-8"),
        ("ATELIER_TASK_DOC", "/data/docs/T-1.md"),
        ("ATELIER_RUN_TOKEN", "tok"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

fn request(stage: Stage, resume: Option<&str>, settings: serde_json::Value) -> TurnRequest {
    TurnRequest {
        stage,
        iteration: 0,
        turn: u32::from(resume.is_some()),
        prompt: "Do the thing.".into(),
        workdir: "/work/tree".into(),
        env: base_env(),
        model: Some("claude-sonnet-4-5".into()),
        effort: None,
        resume_session: resume.map(str::to_string),
        settings,
    }
}

const SYSTEM_PROMPT: &str = "You run unattended under Atelier, a coding-agent orchestrator: \
    nobody answers interactive prompts. The task doc is /data/docs/T-1.md. Signal Atelier with \
    `atelier signal …` (see `atelier signal --help`).";

/// The expected spec: `extra` (effort, session, tools) comes before the prompt, `env_tail`
/// replaces or follows the harness's own variables.
fn expected(extra: &[&str], env_tail: &[(&str, &str)]) -> ProcessSpec {
    let mut args = vec![
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--model",
        "claude-sonnet-4-5",
        "--permission-mode",
        "bypassPermissions",
        "--append-system-prompt",
        SYSTEM_PROMPT,
        "--mcp-config",
        r#"{"mcpServers":{}}"#,
        "--strict-mcp-config",
    ];
    args.extend(extra);
    args.extend(["--", "Do the thing."]);
    let mut env = base_env();
    env.extend(
        [
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("CLAUDE_CODE_MAX_RETRIES", "2"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("IS_SANDBOX", "1"),
            ("CLAUDE_CONFIG_DIR", "/data/homes/T-1/.claude"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    for (k, v) in env_tail {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(entry) => entry.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    ProcessSpec {
        program: BIN.into(),
        args: args.into_iter().map(Into::into).collect(),
        cwd: "/work/tree".into(),
        env,
        stdin: None,
        stdin_open: false,
    }
}

/// Replaces the value of `--session-id` (random) with `SESSION`, after checking it is a UUID v4.
fn fix_session_id(mut spec: ProcessSpec) -> ProcessSpec {
    let at = spec
        .args
        .iter()
        .position(|a| a == "--session-id")
        .expect("a fresh turn has --session-id");
    let id = spec.args[at + 1].to_str().unwrap().to_string();
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{id}"
    );
    assert!(
        id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(parts[2].starts_with('4'), "version 4: {id}");
    assert!(
        matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
        "variant: {id}"
    );
    spec.args[at + 1] = "SESSION".into();
    spec
}

#[test]
fn describes_itself() {
    let h = ClaudeHarness::new(BIN);
    assert_eq!(h.name(), "claude-code");
    assert_eq!(
        h.capabilities(),
        Capabilities {
            live_text: true,
            interrupt: true,
            resume: true,
            subagents: true
        }
    );
    assert_eq!(h.interrupt(), Interrupt::Signal(libc::SIGINT));
}

#[test]
fn builds_a_fresh_turn() {
    let h = ClaudeHarness::new(BIN);
    let spec = h.command(&request(Stage::Plan, None, json!(null))).unwrap();
    assert_eq!(
        fix_session_id(spec),
        expected(&["--session-id", "SESSION"], &[])
    );
    // A new id for every new session.
    let a = h.command(&request(Stage::Plan, None, json!(null))).unwrap();
    let b = h.command(&request(Stage::Plan, None, json!(null))).unwrap();
    assert_ne!(a.args, b.args);
}

#[test]
fn builds_a_resumed_turn_with_role_settings() {
    let h = ClaudeHarness::new(BIN);
    // What the engine passes: the serialized role config, plus this harness's keys.
    let settings = json!({
        "harness": "claude-code",
        "model": "claude-sonnet-4-5",
        "timeout_secs": 600,
        "max_retries": 5,
        "env": {
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
            "ANTHROPIC_API_KEY": "sk-ant-x",
            "LANG": "en_US.UTF-8"
        }
    });
    let mut req = request(
        Stage::Review,
        Some("2a27242c-7ccb-49aa-9d9a-0b98f2651424"),
        settings,
    );
    req.effort = Some("high".into());
    assert_eq!(
        h.command(&req).unwrap(),
        expected(
            &[
                "--effort",
                "high",
                "--resume",
                "2a27242c-7ccb-49aa-9d9a-0b98f2651424"
            ],
            &[
                ("LANG", "en_US.UTF-8"),
                ("CLAUDE_CODE_MAX_RETRIES", "5"),
                ("ANTHROPIC_API_KEY", "sk-ant-x"),
                ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ]
        )
    );
}

#[test]
fn builds_a_long_lived_session_fed_on_stdin() {
    let h = ClaudeHarness::new(BIN);
    assert!(h.long_lived());
    let user_line = |text: &str| {
        let mut line = json!({
            "type": "user",
            "message": {"role": "user", "content": text},
            "parent_tool_use_id": null,
            "session_id": "",
        })
        .to_string()
        .into_bytes();
        line.push(b'\n');
        line
    };
    for (resume, session_args) in [
        (None, ["--session-id", "SESSION"]),
        (
            Some("2a27242c-7ccb-49aa-9d9a-0b98f2651424"),
            ["--resume", "2a27242c-7ccb-49aa-9d9a-0b98f2651424"],
        ),
    ] {
        let spec = h
            .command(&request(
                Stage::Plan,
                resume,
                json!({"session": "long-lived"}),
            ))
            .unwrap();
        let spec = if resume.is_none() {
            fix_session_id(spec)
        } else {
            spec
        };
        // The one-shot command with `--input-format stream-json` after `-p`, and the prompt as
        // the first line on stdin, which stays open instead of the argument after `--`.
        let mut want = expected(&session_args, &[]);
        want.args.truncate(want.args.len() - 2);
        want.args
            .splice(1..1, ["--input-format".into(), "stream-json".into()]);
        want.stdin = Some(user_line("Do the thing."));
        want.stdin_open = true;
        assert_eq!(spec, want);
    }
    // Each later turn (an answer) is one more line; an input starting with `-` is no flag.
    assert_eq!(
        h.next_turn("- formal, please"),
        Some(user_line("- formal, please"))
    );
    // One-shot stays the default, and can be asked for.
    for settings in [json!(null), json!({"session": "one-shot"})] {
        let spec = h.command(&request(Stage::Plan, None, settings)).unwrap();
        assert!(!spec.stdin_open && spec.stdin.is_none());
    }
    let err = h
        .check_role(Some("sonnet"), &json!({"session": "forever"}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`session` must be \"one-shot\" or \"long-lived\""),
        "{err}"
    );
}

#[test]
fn keeps_the_implementer_from_delegating() {
    let h = ClaudeHarness::new(BIN);
    let spec = h
        .command(&request(Stage::Implement, None, json!({})))
        .unwrap();
    assert_eq!(
        fix_session_id(spec),
        expected(
            &["--session-id", "SESSION", "--disallowedTools", "Task,Agent"],
            &[]
        )
    );
}

#[test]
fn keeps_a_prompt_that_looks_like_a_flag_positional() {
    let h = ClaudeHarness::new(BIN);
    let mut req = request(Stage::Plan, Some("s"), json!(null));
    req.prompt = "--help me".into();
    let args = h.command(&req).unwrap().args;
    assert_eq!(
        args[args.len() - 2..],
        ["--", "--help me"].map(std::ffi::OsString::from)
    );
}

#[test]
fn refuses_what_it_cannot_run() {
    let h = ClaudeHarness::new(BIN);
    let msg = |e: HarnessError| e.to_string();

    let mut no_home = request(Stage::Plan, None, json!(null));
    no_home.env.retain(|(k, _)| k != "HOME");
    assert_eq!(
        msg(h.command(&no_home).unwrap_err()),
        "harness configuration: the agent environment has no HOME: claude-code keeps its \
         configuration and sessions there"
    );

    let mut bad_effort = request(Stage::Plan, None, json!(null));
    bad_effort.effort = Some("extreme".into());
    assert_eq!(
        msg(h.command(&bad_effort).unwrap_err()),
        "harness configuration: effort `extreme` is not understood by claude-code: use one of \
         low, medium, high, xhigh, max"
    );

    let mut wrong_model = request(Stage::Plan, None, json!(null));
    wrong_model.model = Some("gpt-5.5".into());
    assert!(h.command(&wrong_model).is_err());
}

#[test]
fn checks_the_role() {
    let h = ClaudeHarness::new(BIN);
    let check = |model: Option<&str>, settings: serde_json::Value| {
        h.check_role(model, &settings).map_err(|e| e.to_string())
    };
    for model in [
        "claude-sonnet-4-5",
        "claude-opus-4-1-20250805",
        "claude-sonnet-4-5[1m]",
        "sonnet",
        "opus",
        "haiku",
        "default",
        "opusplan",
        "sonnet[1m]",
    ] {
        assert_eq!(check(Some(model), json!(null)), Ok(()), "{model}");
    }
    assert_eq!(
        check(Some("gpt-5.5"), json!(null)),
        Err(
            "harness configuration: model `gpt-5.5` does not belong to the claude-code harness: \
             use a claude-… model or sonnet/opus/haiku"
                .into()
        )
    );
    for model in ["claude-", "Sonnet", "fake-model", "claude sonnet"] {
        assert!(check(Some(model), json!(null)).is_err(), "{model}");
    }
    assert_eq!(
        check(None, json!(null)),
        Err(
            "harness configuration: the claude-code harness needs a model: set a claude-… \
             model or sonnet/opus/haiku"
                .into()
        )
    );
    assert!(check(Some(""), json!(null)).is_err());

    assert_eq!(
        check(
            Some("sonnet"),
            json!({"harness": "claude-code", "env": {"ANTHROPIC_API_KEY": "k"}, "max_retries": 0})
        ),
        Ok(())
    );
    assert_eq!(
        check(Some("sonnet"), json!({"env": {"ANTHROPIC_API_KEY": 42}})),
        Err(
            "harness configuration: `env.ANTHROPIC_API_KEY` must be a string (e.g. \
             \"ANTHROPIC_API_KEY\": \"value\"), not 42"
                .into()
        )
    );
    assert_eq!(
        check(Some("sonnet"), json!({"env": ["A=b"]})),
        Err(
            "harness configuration: `env` must be an object of strings (e.g. \
             {\"ANTHROPIC_BASE_URL\": \"http://…\"}), not [\"A=b\"]"
                .into()
        )
    );
    assert_eq!(
        check(Some("sonnet"), json!({"env": {"ATELIER_RUN_TOKEN": "x"}})),
        Err(
            "harness configuration: `env.ATELIER_RUN_TOKEN`: ATELIER_* variables are set by \
             Atelier itself"
                .into()
        )
    );
    assert!(check(Some("sonnet"), json!({"env": {"A=B": "x"}})).is_err());
    assert_eq!(
        check(Some("sonnet"), json!({"max_retries": -1})),
        Err(
            "harness configuration: `max_retries` must be a whole number of retries (e.g. 2), \
             not -1"
                .into()
        )
    );
    assert!(check(Some("sonnet"), json!("env")).is_err());
}
