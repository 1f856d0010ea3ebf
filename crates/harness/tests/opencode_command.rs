//! `OpenCodeHarness`'s command builder and role checks: the whole process specs (with the parsed
//! `OPENCODE_CONFIG_CONTENT`) for fresh, resumed and implement-stage turns, and the errors that
//! explain roles and turns it cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::Stage;
use harness::opencode::{CONFIG_ENV, OpenCodeHarness};
use harness::process::ProcessSpec;
use harness::{Capabilities, Harness, Interrupt, TurnRequest};
use serde_json::{Value, json};

const BIN: &str = "/opt/oc/opencode";

fn base_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("HOME".into(), "/tasks/7/home".into()),
        ("OPENCODE_DISABLE_SHARE".into(), "0".into()),
    ]
}

fn request(stage: Stage, settings: Value) -> TurnRequest {
    TurnRequest {
        stage,
        iteration: 0,
        turn: 0,
        prompt: "Fix \"the\" bug\n- then test".into(),
        workdir: "/tasks/7/tree".into(),
        env: base_env(),
        model: Some("qwen3-coder".into()),
        effort: None,
        resume_session: None,
        settings,
    }
}

fn fake_settings() -> Value {
    json!({
        "harness": "opencode",
        "base_url": "http://127.0.0.1:8080/v1",
        "api_key_env": "FAKE_KEY",
        "env": {"FAKE_KEY": "sk-fake", "OPENCODE_DISABLE_LSP_DOWNLOAD": "0"},
    })
}

/// The spec with `OPENCODE_CONFIG_CONTENT` replaced by `<config>`, and that config parsed.
fn split_config(mut spec: ProcessSpec) -> (ProcessSpec, Value) {
    let entry = spec.env.iter_mut().find(|(k, _)| k == CONFIG_ENV).unwrap();
    let config = serde_json::from_str(&entry.1).unwrap();
    entry.1 = "<config>".into();
    (spec, config)
}

fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
    list.iter().map(Into::into).collect()
}

fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The environment every `fake_settings` spec gets.
fn fake_env() -> Vec<(String, String)> {
    env(&[
        ("PATH", "/usr/bin:/bin"),
        ("HOME", "/tasks/7/home"),
        ("OPENCODE_DISABLE_SHARE", "1"),
        ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
        ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
        ("OPENCODE_DISABLE_LSP_DOWNLOAD", "0"),
        ("FAKE_KEY", "sk-fake"),
        (CONFIG_ENV, "<config>"),
    ])
}

fn fake_config(permission: Value) -> Value {
    json!({
        "provider": {"atelier": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Atelier",
            "options": {"baseURL": "http://127.0.0.1:8080/v1", "apiKey": "{env:FAKE_KEY}"},
            "models": {"qwen3-coder": {"name": "qwen3-coder", "tool_call": true}},
        }},
        "model": "atelier/qwen3-coder",
        "small_model": "atelier/qwen3-coder",
        "permission": permission,
        "autoupdate": false,
        "share": "disabled",
    })
}

const RUN_ARGS: [&str; 9] = [
    "run",
    "--format",
    "json",
    "--thinking",
    "--print-logs",
    "--log-level",
    "ERROR",
    "--model",
    "atelier/qwen3-coder",
];

#[test]
fn describes_itself() {
    let h = OpenCodeHarness::new(BIN);
    assert_eq!(h.name(), "opencode");
    assert_eq!(h.bin(), std::path::Path::new(BIN));
    assert_eq!(
        h.capabilities(),
        Capabilities {
            live_text: false,
            interrupt: false,
            resume: true,
            subagents: true
        }
    );
    assert_eq!(h.interrupt(), Interrupt::Signal(libc::SIGTERM));
}

#[test]
fn builds_a_fresh_turn() {
    let h = OpenCodeHarness::new(BIN);
    let (spec, config) = split_config(h.command(&request(Stage::Plan, fake_settings())).unwrap());
    assert_eq!(
        spec,
        ProcessSpec {
            program: BIN.into(),
            args: args(&RUN_ARGS),
            cwd: "/tasks/7/tree".into(),
            env: fake_env(),
            stdin: Some(b"Fix \"the\" bug\n- then test".to_vec()),
        }
    );
    assert_eq!(
        config,
        fake_config(json!({"edit": "allow", "bash": "allow"}))
    );
}

#[test]
fn builds_a_resumed_turn_with_an_effort() {
    let h = OpenCodeHarness::new(BIN);
    let req = TurnRequest {
        turn: 1,
        prompt: "go on".into(),
        effort: Some("high".into()),
        resume_session: Some("ses_dff8fa15effezvJJrsFkQvy8pe".into()),
        ..request(Stage::Review, fake_settings())
    };
    let (spec, config) = split_config(h.command(&req).unwrap());
    let mut want_args = RUN_ARGS.to_vec();
    want_args.extend([
        "--variant",
        "high",
        "--session",
        "ses_dff8fa15effezvJJrsFkQvy8pe",
    ]);
    assert_eq!(
        spec,
        ProcessSpec {
            program: BIN.into(),
            args: args(&want_args),
            cwd: "/tasks/7/tree".into(),
            env: fake_env(),
            stdin: Some(b"go on".to_vec()),
        }
    );
    assert_eq!(
        config,
        fake_config(json!({"edit": "allow", "bash": "allow"}))
    );
}

#[test]
fn denies_sub_agents_in_the_implement_stage() {
    let h = OpenCodeHarness::new(BIN);
    let (spec, config) = split_config(
        h.command(&request(Stage::Implement, fake_settings()))
            .unwrap(),
    );
    assert_eq!(spec.args, args(&RUN_ARGS));
    assert_eq!(spec.env, fake_env());
    assert_eq!(
        config,
        fake_config(json!({"edit": "allow", "bash": "allow", "task": "deny"}))
    );
}

#[test]
fn uses_built_in_providers_without_base_url() {
    let h = OpenCodeHarness::new(BIN);
    let req = TurnRequest {
        model: Some("anthropic/claude-sonnet-4-5".into()),
        ..request(Stage::Pr, json!({"env": {"ANTHROPIC_API_KEY": "sk-ant"}}))
    };
    let (spec, config) = split_config(h.command(&req).unwrap());
    let mut want_args = RUN_ARGS.to_vec();
    want_args[8] = "anthropic/claude-sonnet-4-5";
    assert_eq!(
        spec,
        ProcessSpec {
            program: BIN.into(),
            args: args(&want_args),
            cwd: "/tasks/7/tree".into(),
            env: env(&[
                ("PATH", "/usr/bin:/bin"),
                ("HOME", "/tasks/7/home"),
                ("OPENCODE_DISABLE_SHARE", "1"),
                ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
                ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
                ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
                ("ANTHROPIC_API_KEY", "sk-ant"),
                (CONFIG_ENV, "<config>"),
            ]),
            stdin: Some(b"Fix \"the\" bug\n- then test".to_vec()),
        }
    );
    assert_eq!(
        config,
        json!({
            "model": "anthropic/claude-sonnet-4-5",
            "permission": {"edit": "allow", "bash": "allow"},
            "autoupdate": false,
            "share": "disabled",
        })
    );
}

#[test]
fn writes_a_literal_key_and_slashed_model_ids() {
    let h = OpenCodeHarness::new(BIN);
    let req = TurnRequest {
        model: Some("Qwen/Qwen3-Coder-30B".into()),
        ..request(
            Stage::Plan,
            json!({"base_url": "https://llm.example/v1", "api_key": "sk-lit"}),
        )
    };
    let (spec, config) = split_config(h.command(&req).unwrap());
    assert_eq!(spec.args[8], "atelier/Qwen/Qwen3-Coder-30B");
    assert_eq!(
        config["provider"]["atelier"]["options"],
        json!({"baseURL": "https://llm.example/v1", "apiKey": "sk-lit"})
    );
    assert_eq!(
        config["provider"]["atelier"]["models"],
        json!({"Qwen/Qwen3-Coder-30B": {"name": "Qwen/Qwen3-Coder-30B", "tool_call": true}})
    );
    assert_eq!(config["model"], "atelier/Qwen/Qwen3-Coder-30B");

    // No key at all: a server without authentication.
    let req = TurnRequest {
        settings: json!({"base_url": "http://127.0.0.1:9/v1"}),
        ..req
    };
    let (_, config) = split_config(h.command(&req).unwrap());
    assert_eq!(
        config["provider"]["atelier"]["options"],
        json!({"baseURL": "http://127.0.0.1:9/v1"})
    );
}

#[test]
fn refuses_turns_it_cannot_run() {
    let h = OpenCodeHarness::new(BIN);
    let msg = |req: TurnRequest| h.command(&req).unwrap_err().to_string();
    let req = || request(Stage::Implement, fake_settings());

    assert_eq!(
        msg(TurnRequest {
            env: vec![("PATH".into(), "/bin".into())],
            ..req()
        }),
        "harness configuration: the opencode agent needs an absolute HOME in its environment \
         (OpenCode keeps its sessions under $HOME/.local/share/opencode)"
    );
    assert_eq!(
        msg(TurnRequest {
            settings: json!({"base_url": "http://127.0.0.1:8080/v1", "api_key_env": "FAKE_KEY"}),
            ..req()
        }),
        "harness configuration: the opencode provider at `base_url` reads its API key from \
         FAKE_KEY, which is not in the agent's environment: set it in the role's settings `env`, \
         or give the key as `api_key`, or remove `api_key_env` for a server without \
         authentication"
    );
    assert_eq!(
        msg(TurnRequest {
            prompt: " \n".into(),
            ..req()
        }),
        "harness configuration: the opencode harness got an empty prompt for the implement stage"
    );
    assert_eq!(
        msg(TurnRequest {
            effort: Some("--max".into()),
            ..req()
        }),
        "harness configuration: the opencode role has the `effort` `--max`; remove it or use a \
         model variant such as high or max"
    );
    assert_eq!(
        msg(TurnRequest {
            resume_session: Some("-x".into()),
            ..req()
        }),
        "harness configuration: `-x` is not an opencode session id to resume"
    );
    assert_eq!(
        msg(TurnRequest {
            model: None,
            ..req()
        }),
        "harness configuration: the opencode harness needs a `model`: provider/model such as \
         anthropic/claude-sonnet-4-5, or a model id of the `base_url` server"
    );
}

fn check(model: Option<&str>, settings: Value) -> Result<(), String> {
    OpenCodeHarness::new(BIN)
        .check_role(model, &settings)
        .map_err(|e| e.to_string())
}

#[test]
fn accepts_valid_roles() {
    assert_eq!(
        check(Some("anthropic/claude-sonnet-4-5"), json!(null)),
        Ok(())
    );
    assert_eq!(
        check(Some("openai/gpt-5.5"), json!({"harness": "opencode"})),
        Ok(())
    );
    assert_eq!(
        check(
            Some("qwen3-coder"),
            json!({"base_url": "http://127.0.0.1:8080/v1"})
        ),
        Ok(())
    );
    // With base_url, ids of any shape are the server's own names.
    assert_eq!(
        check(
            Some("claude-sonnet-4-5"),
            json!({"base_url": "https://proxy.local/v1"})
        ),
        Ok(())
    );
    assert_eq!(check(Some("meta/llama-4"), fake_settings()), Ok(()));
    assert_eq!(
        check(
            Some("m"),
            json!({"base_url": "http://h/v1", "api_key": "k", "env": {}})
        ),
        Ok(())
    );
}

#[test]
fn explains_models_it_cannot_run() {
    let err = |model: Option<&str>| check(model, json!({})).unwrap_err();
    assert_eq!(
        err(None),
        "harness configuration: the opencode harness needs a `model`: provider/model such as \
         anthropic/claude-sonnet-4-5, or a model id of the `base_url` server"
    );
    assert_eq!(
        err(Some("claude-sonnet-4-5")),
        "harness configuration: the opencode harness takes models as provider/model without \
         `base_url`, not `claude-sonnet-4-5`; `claude-sonnet-4-5` looks like an Anthropic model: \
         use anthropic/claude-sonnet-4-5 to run it through OpenCode, or the claude harness"
    );
    assert_eq!(
        err(Some("gpt-5.5")),
        "harness configuration: the opencode harness takes models as provider/model without \
         `base_url`, not `gpt-5.5`; `gpt-5.5` looks like an OpenAI model: use openai/gpt-5.5 to \
         run it through OpenCode, or the codex harness"
    );
    assert!(err(Some("o3-mini")).contains("use openai/o3-mini"));
    assert_eq!(
        err(Some("qwen3-coder")),
        "harness configuration: the opencode harness takes models as provider/model without \
         `base_url`, not `qwen3-coder` (e.g. anthropic/qwen3-coder or openai/qwen3-coder), or \
         set `base_url` to serve `qwen3-coder` from an OpenAI-compatible endpoint"
    );
    for model in ["/x", "anthropic/", "a b/c", ""] {
        assert!(check(Some(model), json!({})).is_err(), "{model}");
    }
    assert_eq!(
        check(Some(" "), json!({"base_url": "http://h/v1"})).unwrap_err(),
        "harness configuration: the opencode model ` ` must be a non-empty id without spaces"
    );
}

#[test]
fn explains_bad_settings() {
    let err = |settings: Value| check(Some("m"), settings).unwrap_err();
    let url = |u: &str| {
        format!(
            "harness configuration: the opencode setting `base_url` must be an http:// or \
             https:// URL (e.g. http://127.0.0.1:8080/v1), not `{u}`"
        )
    };
    assert_eq!(err(json!({"base_url": "ftp://h/v1"})), url("ftp://h/v1"));
    assert_eq!(err(json!({"base_url": "http://"})), url("http://"));
    assert_eq!(err(json!({"base_url": "http:// h"})), url("http:// h"));
    assert_eq!(
        err(json!({"base_url": 3})),
        "harness configuration: the opencode setting `base_url` must be a non-empty string, not 3"
    );
    assert_eq!(
        err(json!([1])),
        "harness configuration: the opencode role settings must be an object, not [1]"
    );
    assert_eq!(
        err(json!({"api_key_env": "K"})),
        "harness configuration: the opencode setting `api_key_env` configures the `base_url` \
         provider; set `base_url` too or remove `api_key_env` (OpenCode's built-in providers \
         take their keys from the task's environment or HOME)"
    );
    assert!(err(json!({"api_key": "k"})).contains("`api_key` configures the `base_url`"));
    assert_eq!(
        err(json!({"base_url": "http://h/v1", "api_key": "k", "api_key_env": "K"})),
        "harness configuration: the opencode settings `api_key_env` and `api_key` both give the \
         provider's key; keep one"
    );
    assert_eq!(
        err(json!({"base_url": "http://h/v1", "api_key_env": "1K"})),
        "harness configuration: the opencode setting `api_key_env` has `1K`, which is not an \
         environment variable name (letters, digits and _, not starting with a digit)"
    );
    assert_eq!(
        err(json!({"env": ["A=b"]})),
        "harness configuration: the opencode setting `env` must be an object of strings \
         (name → value), not [\"A=b\"]"
    );
    assert_eq!(
        err(json!({"env": {"A": 1}})),
        "harness configuration: the opencode setting `env.A` must be a string, not 1"
    );
    assert_eq!(
        err(json!({"env": {"A-B": "1"}})),
        "harness configuration: the opencode setting `env` has `A-B`, which is not an \
         environment variable name (letters, digits and _, not starting with a digit)"
    );
    assert_eq!(
        err(json!({"env": {"A": "x\u{0}y"}})),
        "harness configuration: the opencode setting `env.A` contains a NUL character"
    );
    for reserved in ["HOME", "OPENCODE_CONFIG_CONTENT"] {
        assert_eq!(
            err(json!({"env": {reserved: "/x"}})),
            format!(
                "harness configuration: the opencode setting `env` cannot set {reserved}: every \
                 task has its own HOME, and Atelier writes OpenCode's configuration from \
                 `base_url` and the role's model"
            )
        );
    }
}
