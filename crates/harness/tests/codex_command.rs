//! `CodexHarness`'s command builder and role checks: whole process specs for fresh and resumed
//! turns with and without a `base_url` provider, TOML quoting, and the configuration errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::Stage;
use harness::codex::{CodexHarness, toml_string};
use harness::process::ProcessSpec;
use harness::{Capabilities, Harness, Interrupt, TurnRequest};
use serde_json::{Value, json};

#[test]
fn describes_itself() {
    let h = CodexHarness::new("/opt/codex");
    assert_eq!(h.name(), "codex");
    assert_eq!(h.bin(), std::path::Path::new("/opt/codex"));
    assert_eq!(
        h.capabilities(),
        Capabilities {
            live_text: false,
            interrupt: true,
            resume: true,
            subagents: false
        }
    );
    assert_eq!(h.interrupt(), Interrupt::Signal(libc::SIGINT));
}

fn request(settings: Value) -> TurnRequest {
    TurnRequest {
        stage: Stage::Review,
        iteration: 0,
        turn: 0,
        prompt: "Fix the bug".into(),
        workdir: "/work/tree".into(),
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), "/data/homes/t-1".into()),
        ],
        model: Some("gpt-5.5".into()),
        effort: None,
        resume_session: None,
        settings,
    }
}

fn spec(args: Vec<String>, env: &[(&str, &str)], stdin: Option<&str>) -> ProcessSpec {
    ProcessSpec {
        program: "/opt/codex".into(),
        args: args.into_iter().map(Into::into).collect(),
        cwd: "/work/tree".into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stdin: stdin.map(|s| s.as_bytes().to_vec()),
        stdin_open: false,
    }
}

const BASE_ENV: [(&str, &str); 2] = [("PATH", "/usr/bin:/bin"), ("HOME", "/data/homes/t-1")];

/// Flags every command carries, after `exec` (and `resume`).
const COMMON: [&str; 9] = [
    "--json",
    "--dangerously-bypass-approvals-and-sandbox",
    "--skip-git-repo-check",
    "--disable",
    "plugins",
    "-c",
    "analytics.enabled=false",
    "--disable",
    "unbounded_connection_retries",
];

fn args(head: &[&str], tail: &[&str]) -> Vec<String> {
    head.iter()
        .chain(&COMMON)
        .chain(tail)
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn the_implementer_cannot_delegate_to_sub_agents() {
    let h = CodexHarness::new("/opt/codex");
    let req = TurnRequest {
        stage: Stage::Implement,
        ..request(json!({"harness": "codex", "model": "gpt-5.5"}))
    };
    assert_eq!(
        h.command(&req).unwrap(),
        spec(
            args(
                &["exec"],
                &[
                    "-m",
                    "gpt-5.5",
                    "--disable",
                    "multi_agent",
                    "--disable",
                    "multi_agent_v2",
                    "--",
                    "Fix the bug"
                ]
            ),
            &BASE_ENV,
            None
        )
    );
}

#[test]
fn builds_a_fresh_turn_on_the_default_provider() {
    let h = CodexHarness::new("/opt/codex");
    let req = request(json!({"harness": "codex", "model": "gpt-5.5", "timeout_secs": 60}));
    assert_eq!(
        h.command(&req).unwrap(),
        spec(
            args(&["exec"], &["-m", "gpt-5.5", "--", "Fix the bug"]),
            &BASE_ENV,
            None
        )
    );
}

#[test]
fn builds_a_fresh_turn_on_a_base_url_provider() {
    let h = CodexHarness::new("/opt/codex");
    let mut req = request(json!({
        "harness": "codex",
        "base_url": "http://127.0.0.1:8080/v1",
        "env": {"ATELIER_CODEX_API_KEY": "sk-1", "PATH": "/opt/bin", "A_FLAG": "1"},
    }));
    req.effort = Some("high".into());
    let expected = args(
        &["exec"],
        &[
            "-m",
            "gpt-5.5",
            "-c",
            r#"model_reasoning_effort="high""#,
            "-c",
            r#"model_provider="atelier""#,
            "-c",
            r#"model_providers.atelier.name="atelier""#,
            "-c",
            r#"model_providers.atelier.base_url="http://127.0.0.1:8080/v1""#,
            "-c",
            r#"model_providers.atelier.env_key="ATELIER_CODEX_API_KEY""#,
            "-c",
            r#"model_providers.atelier.wire_api="responses""#,
            "-c",
            "model_providers.atelier.request_max_retries=2",
            "-c",
            "model_providers.atelier.stream_max_retries=2",
            "--",
            "Fix the bug",
        ],
    );
    // settings.env replaces PATH in place and appends the others in name order.
    let env = [
        ("PATH", "/opt/bin"),
        ("HOME", "/data/homes/t-1"),
        ("ATELIER_CODEX_API_KEY", "sk-1"),
        ("A_FLAG", "1"),
    ];
    assert_eq!(h.command(&req).unwrap(), spec(expected, &env, None));
}

#[test]
fn builds_a_resumed_turn() {
    let h = CodexHarness::new("/opt/codex");
    let mut req = request(json!({
        "base_url": "https://llm.example/v1?tenant=\"a\\b\"",
        "api_key_env": "MY_KEY",
        "max_retries": 0,
        "env": {"MY_KEY": "sk-2"},
    }));
    req.resume_session = Some("01a20070-1c10-7c50-b850-3076ed760111".into());
    req.prompt = "-v looks wrong".into();
    req.model = Some("o4-mini".into());
    req.effort = Some("x\"y\\z\n".into());
    let expected = args(
        &["exec", "resume"],
        &[
            "-m",
            "o4-mini",
            "-c",
            r#"model_reasoning_effort="x\"y\\z\n""#,
            "-c",
            r#"model_provider="atelier""#,
            "-c",
            r#"model_providers.atelier.name="atelier""#,
            "-c",
            r#"model_providers.atelier.base_url="https://llm.example/v1?tenant=\"a\\b\"""#,
            "-c",
            r#"model_providers.atelier.env_key="MY_KEY""#,
            "-c",
            r#"model_providers.atelier.wire_api="responses""#,
            "-c",
            "model_providers.atelier.request_max_retries=0",
            "-c",
            "model_providers.atelier.stream_max_retries=0",
            "--",
            "01a20070-1c10-7c50-b850-3076ed760111",
            "-v looks wrong",
        ],
    );
    let env = [BASE_ENV[0], BASE_ENV[1], ("MY_KEY", "sk-2")];
    assert_eq!(h.command(&req).unwrap(), spec(expected, &env, None));
}

#[test]
fn passes_long_prompts_and_a_lone_dash_through_stdin() {
    let h = CodexHarness::new("/opt/codex");
    let mut req = request(Value::Null);
    req.prompt = "z".repeat(100 * 1024 + 1);
    let want = spec(
        args(&["exec"], &["-m", "gpt-5.5", "--", "-"]),
        &BASE_ENV,
        Some(&req.prompt),
    );
    assert_eq!(h.command(&req).unwrap(), want);

    req.prompt = "z".repeat(100 * 1024);
    assert_eq!(h.command(&req).unwrap().stdin, None);

    req.prompt = "-".into();
    req.resume_session = Some("t-1".into());
    let want = spec(
        args(&["exec", "resume"], &["-m", "gpt-5.5", "--", "t-1", "-"]),
        &BASE_ENV,
        Some("-"),
    );
    assert_eq!(h.command(&req).unwrap(), want);
}

fn command_error(req: &TurnRequest) -> String {
    CodexHarness::new("/opt/codex")
        .command(req)
        .unwrap_err()
        .to_string()
}

#[test]
fn refuses_commands_it_cannot_build() {
    let mut req = request(json!({"base_url": "http://127.0.0.1:1/v1"}));
    assert_eq!(
        command_error(&req),
        "harness configuration: the codex provider at `base_url` reads its API key from \
         ATELIER_CODEX_API_KEY, which is not in the agent's environment: set it in the role's \
         settings `env` (any placeholder for a server without authentication), or name another \
         variable with `api_key_env`"
    );
    req.env
        .push(("ATELIER_CODEX_API_KEY".into(), "from-engine".into()));
    assert!(CodexHarness::new("c").command(&req).is_ok());

    let mut req = request(Value::Null);
    req.env.retain(|(k, _)| k != "HOME");
    let no_home = "harness configuration: the codex agent needs an absolute HOME in its \
                   environment (Codex keeps its sessions in $HOME/.codex)";
    assert_eq!(command_error(&req), no_home);
    req.env.push(("HOME".into(), "relative/home".into()));
    assert_eq!(command_error(&req), no_home);

    let mut req = request(Value::Null);
    req.model = Some("claude-sonnet-4-5".into());
    assert!(command_error(&req).contains("does not belong to the codex harness"));

    let mut req = request(Value::Null);
    req.effort = Some(" ".into());
    assert!(command_error(&req).contains("empty `effort`"));

    let mut req = request(Value::Null);
    req.resume_session = Some("--last".into());
    assert!(command_error(&req).contains("not a codex thread id"));
}

fn role_error(model: Option<&str>, settings: Value) -> String {
    CodexHarness::new("/opt/codex")
        .check_role(model, &settings)
        .unwrap_err()
        .to_string()
}

#[test]
fn accepts_catalog_models_only() {
    let h = CodexHarness::new("/opt/codex");
    for model in [
        "gpt-5.5",
        "gpt-5.1-codex",
        "o1",
        "o3",
        "o3-mini",
        "o4-mini",
        "codex-mini-latest",
    ] {
        assert!(h.check_role(Some(model), &Value::Null).is_ok(), "{model}");
    }
    assert_eq!(
        role_error(Some("claude-sonnet-4-5"), Value::Null),
        "harness configuration: model `claude-sonnet-4-5` does not belong to the codex harness: \
         it takes OpenAI/Codex catalog names (gpt-…, o1…/o3…/o4…, codex-…) such as gpt-5.5; \
         Codex offers its apply_patch tool only to models it knows"
    );
    for model in [
        "",
        "gpt-",
        "o",
        "o3x",
        "o3-",
        "opus",
        "qwen3",
        "gpt-5 mini",
        "GPT-5",
    ] {
        assert!(h.check_role(Some(model), &Value::Null).is_err(), "{model}");
    }
    assert_eq!(
        role_error(None, Value::Null),
        "harness configuration: the codex harness needs a `model`, e.g. gpt-5.5 (an \
         OpenAI/Codex catalog name)"
    );
}

#[test]
fn checks_role_settings() {
    let h = CodexHarness::new("/opt/codex");
    let ok = json!({
        "harness": "codex", "model": "gpt-5.5", "effort": "high", "timeout_secs": 600,
        "base_url": "https://api.example/v1", "api_key_env": "_KEY2", "max_retries": 100,
        "env": {"_KEY2": "x"},
    });
    assert!(h.check_role(Some("gpt-5.5"), &ok).is_ok());
    assert!(
        h.check_role(Some("gpt-5.5"), &json!({"base_url": null, "env": null}))
            .is_ok()
    );

    let cases = [
        (
            json!([1]),
            "the codex role settings must be an object, not [1]",
        ),
        (
            json!({"env": "A=1"}),
            "the codex setting `env` must be an object of strings (name → value), not \"A=1\"",
        ),
        (
            json!({"env": {"N": 1}}),
            "the codex setting `env.N` must be a string, not 1",
        ),
        (
            json!({"env": {"A-B": "1"}}),
            "the codex setting `env` has `A-B`, which is not an environment variable name (letters, digits and _, not starting with a digit)",
        ),
        (
            json!({"env": {"N": "a\u{0}b"}}),
            "the codex setting `env.N` contains a NUL character",
        ),
        (
            json!({"env": {"HOME": "/root"}}),
            "the codex setting `env` cannot set HOME: every task has its own HOME and Codex keeps its state in $HOME/.codex",
        ),
        (
            json!({"env": {"CODEX_HOME": "/x"}}),
            "the codex setting `env` cannot set CODEX_HOME: every task has its own HOME and Codex keeps its state in $HOME/.codex",
        ),
        (
            json!({"base_url": "ftp://h/v1"}),
            "the codex setting `base_url` must be an http:// or https:// URL (e.g. http://127.0.0.1:8080/v1), not `ftp://h/v1`",
        ),
        (
            json!({"base_url": "http://"}),
            "the codex setting `base_url` must be an http:// or https:// URL (e.g. http://127.0.0.1:8080/v1), not `http://`",
        ),
        (
            json!({"base_url": "http://h /v1"}),
            "the codex setting `base_url` must be an http:// or https:// URL (e.g. http://127.0.0.1:8080/v1), not `http://h /v1`",
        ),
        (
            json!({"base_url": ""}),
            "the codex setting `base_url` must be a non-empty string, not \"\"",
        ),
        (
            json!({"base_url": 8080}),
            "the codex setting `base_url` must be a non-empty string, not 8080",
        ),
        (
            json!({"base_url": "http://h", "api_key_env": "1KEY"}),
            "the codex setting `api_key_env` has `1KEY`, which is not an environment variable name (letters, digits and _, not starting with a digit)",
        ),
        (
            json!({"base_url": "http://h", "max_retries": -1}),
            "the codex setting `max_retries` must be a whole number from 0 to 100, not -1",
        ),
        (
            json!({"base_url": "http://h", "max_retries": "3"}),
            "the codex setting `max_retries` must be a whole number from 0 to 100, not \"3\"",
        ),
        (
            json!({"base_url": "http://h", "max_retries": 101}),
            "the codex setting `max_retries` must be a whole number from 0 to 100, not 101",
        ),
        (
            json!({"api_key_env": "K"}),
            "the codex setting `api_key_env` configures the `base_url` provider; set `base_url` too or remove `api_key_env`",
        ),
        (
            json!({"max_retries": 1}),
            "the codex setting `max_retries` configures the `base_url` provider; set `base_url` too or remove `max_retries`",
        ),
    ];
    for (settings, message) in cases {
        assert_eq!(
            role_error(Some("gpt-5.5"), settings),
            format!("harness configuration: {message}")
        );
    }
}

#[test]
fn quotes_toml_strings() {
    assert_eq!(toml_string("plain"), r#""plain""#);
    assert_eq!(toml_string(""), r#""""#);
    assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(toml_string("t\tn\nr\r"), r#""t\tn\nr\r""#);
    assert_eq!(toml_string("\u{1}\u{7f}é'"), r#""\u0001\u007Fé'""#);
}

/// The bridge's configuration, parsed from a long-lived spec's arguments.
fn bridge_config(spec: &ProcessSpec) -> harness::codex::bridge::BridgeConfig {
    assert_eq!(spec.args.len(), 2, "{spec:?}");
    assert_eq!(spec.args[0], "codex-bridge");
    serde_json::from_str(spec.args[1].to_str().unwrap()).unwrap()
}

#[test]
fn builds_a_long_lived_session_behind_the_bridge() {
    let h = CodexHarness::new("/opt/codex").with_bridge("/opt/atelier");
    assert!(h.long_lived());
    let mut req = request(json!({
        "harness": "codex", "session": "long-lived",
        "base_url": "http://127.0.0.1:8080/v1", "max_retries": 0,
        "env": {"ATELIER_CODEX_API_KEY": "sk-1"},
    }));
    req.stage = Stage::Implement;
    req.effort = Some("high".into());
    req.prompt = "- starts with a dash\nand \"quotes\"".into();
    let spec = h.command(&req).unwrap();
    assert_eq!(spec.program, std::path::Path::new("/opt/atelier"));
    assert_eq!(spec.cwd, std::path::Path::new("/work/tree"));
    assert!(spec.stdin_open);
    // The prompt is the first stdin line; each later input another (no process arguments).
    assert_eq!(
        spec.stdin.as_deref(),
        Some(harness::codex::bridge::wire::turn_line(&req.prompt).as_slice())
    );
    assert_eq!(
        h.next_turn("Formal, please."),
        Some(harness::codex::bridge::wire::turn_line("Formal, please."))
    );
    let mut env: Vec<(String, String)> = BASE_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("ATELIER_CODEX_API_KEY".into(), "sk-1".into()));
    assert_eq!(spec.env, env);
    // `app-server` with the one-shot mode's options: quiet, bounded, the model by `-c`.
    let config = bridge_config(&spec);
    assert_eq!(config.codex, std::path::Path::new("/opt/codex"));
    assert_eq!(config.resume, None);
    let expected: Vec<String> = [
        "app-server",
        "--disable",
        "plugins",
        "-c",
        "analytics.enabled=false",
        "--disable",
        "unbounded_connection_retries",
        "-c",
        "model=\"gpt-5.5\"",
        "--disable",
        "multi_agent",
        "--disable",
        "multi_agent_v2",
        "-c",
        "model_reasoning_effort=\"high\"",
        "-c",
        "model_provider=\"atelier\"",
        "-c",
        "model_providers.atelier.name=\"atelier\"",
        "-c",
        "model_providers.atelier.base_url=\"http://127.0.0.1:8080/v1\"",
        "-c",
        "model_providers.atelier.env_key=\"ATELIER_CODEX_API_KEY\"",
        "-c",
        "model_providers.atelier.wire_api=\"responses\"",
        "-c",
        "model_providers.atelier.request_max_retries=0",
        "-c",
        "model_providers.atelier.stream_max_retries=0",
    ]
    .map(String::from)
    .into();
    assert_eq!(config.args, expected);
    // Nothing Codex snapshots at boot needs turning off for a warm standby.
    assert_eq!(h.warm_env(), Vec::new());
    // Two starts of the same role are the same process (a warm standby matches its run).
    assert_eq!(h.command(&req).unwrap(), spec);

    // A resumed session: the bridge resumes the thread; one-shot stays the default.
    req.resume_session = Some("0199a-thread".into());
    let resumed = bridge_config(&h.command(&req).unwrap());
    assert_eq!(resumed.resume.as_deref(), Some("0199a-thread"));
    req.settings["session"] = json!("one-shot");
    let one_shot = h.command(&req).unwrap();
    assert_eq!(one_shot.program, std::path::Path::new("/opt/codex"));
    assert!(!one_shot.stdin_open);
    // Without `with_bridge`, the bridge is `atelier` from the agent's PATH.
    req.settings["session"] = json!("long-lived");
    let bare = CodexHarness::new("/opt/codex").command(&req).unwrap();
    assert_eq!(bare.program, std::path::Path::new("atelier"));
    req.settings["session"] = json!("forever");
    assert!(
        command_error(&req).contains("`session`"),
        "{}",
        command_error(&req)
    );
}
