//! `OpenCodeHarness`'s command builder and role checks: the whole process specs (with the parsed
//! `OPENCODE_CONFIG_CONTENT`) for fresh, resumed and implement-stage turns, and the errors that
//! explain roles and turns it cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::Stage;
use harness::opencode::{CONFIG_ENV, OpenCodeHarness, PLUGIN_PACKAGE};
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
        "snapshot": false,
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
            stdin_open: false,
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
            stdin_open: false,
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
            stdin_open: false,
        }
    );
    assert_eq!(
        config,
        json!({
            "model": "anthropic/claude-sonnet-4-5",
            "permission": {"edit": "allow", "bash": "allow"},
            "autoupdate": false,
            "share": "disabled",
            "snapshot": false,
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

/// The request of a turn whose `HOME` is `home`.
fn request_in(home: &std::path::Path) -> TurnRequest {
    let mut req = request(Stage::Plan, fake_settings());
    req.env[1].1 = home.display().to_string();
    req
}

fn read_lock(dir: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("package-lock.json")).unwrap()).unwrap()
}

#[test]
fn prepares_the_config_folder_that_stops_the_plugin_install() {
    let home = tempfile::tempdir().unwrap();
    let h = OpenCodeHarness::new(BIN);
    let req = request_in(home.path());
    h.prepare(&req).unwrap();
    let dir = home.path().join(".config/opencode");
    // What OpenCode's `Npm.install` checks: a node_modules folder and a lock whose root lists
    // the plugin (nothing is installed in it).
    assert!(dir.join("node_modules").is_dir());
    assert_eq!(
        std::fs::read_dir(dir.join("node_modules")).unwrap().count(),
        0
    );
    assert_eq!(
        read_lock(&dir)["packages"][""]["dependencies"],
        json!({PLUGIN_PACKAGE: "*"})
    );
    // Idempotent, and a lock that already names the plugin is left as it is.
    std::fs::write(
        dir.join("package-lock.json"),
        json!({"packages": {"": {"dependencies": {PLUGIN_PACKAGE: "1.18.33", "x": "1"}}}})
            .to_string(),
    )
    .unwrap();
    h.prepare(&req).unwrap();
    assert_eq!(
        read_lock(&dir)["packages"][""]["dependencies"],
        json!({PLUGIN_PACKAGE: "1.18.33", "x": "1"})
    );
    // Another lock keeps its entries and gains the plugin; a broken one is replaced.
    std::fs::write(
        dir.join("package-lock.json"),
        json!({"lockfileVersion": 3, "packages": {"": {"dependencies": {"x": "1"}}, "node_modules/x": {}}})
            .to_string(),
    )
    .unwrap();
    h.prepare(&req).unwrap();
    let lock = read_lock(&dir);
    assert_eq!(
        lock["packages"][""]["dependencies"],
        json!({PLUGIN_PACKAGE: "*", "x": "1"})
    );
    assert_eq!(lock["packages"]["node_modules/x"], json!({}));
    std::fs::write(dir.join("package-lock.json"), "{not json").unwrap();
    h.prepare(&req).unwrap();
    assert_eq!(
        read_lock(&dir)["packages"][""]["dependencies"],
        json!({PLUGIN_PACKAGE: "*"})
    );
    // Nothing else is left in the folder (no temporary file).
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["node_modules", "package-lock.json"]);
}

#[test]
fn prepares_under_the_roles_xdg_config_home() {
    let home = tempfile::tempdir().unwrap();
    let xdg = tempfile::tempdir().unwrap();
    let mut req = request_in(home.path());
    req.settings["env"]["XDG_CONFIG_HOME"] = xdg.path().display().to_string().into();
    OpenCodeHarness::new(BIN).prepare(&req).unwrap();
    assert!(xdg.path().join("opencode/node_modules").is_dir());
    assert!(!home.path().join(".config").exists());
}

#[test]
fn never_writes_through_a_link_in_the_agents_home() {
    let home = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("precious");
    std::fs::write(&victim, "keep me").unwrap();
    let h = OpenCodeHarness::new(BIN);
    let req = request_in(home.path());

    // A lock that is a link is replaced, not written through.
    let dir = home.path().join(".config/opencode");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("package-lock.json")).unwrap();
    h.prepare(&req).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!dir.join("package-lock.json").is_symlink());

    // A folder that is a link is refused with its path.
    std::fs::remove_dir_all(home.path().join(".config")).unwrap();
    std::os::unix::fs::symlink(outside.path(), home.path().join(".config")).unwrap();
    let err = h.prepare(&req).unwrap_err().to_string();
    assert!(err.contains(".config is not a folder"), "{err}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);

    // A relative HOME is refused.
    let mut req = request(Stage::Plan, fake_settings());
    req.env[1].1 = "relative/home".into();
    let err = h.prepare(&req).unwrap_err().to_string();
    assert!(err.contains("absolute HOME"), "{err}");
}

/// `session = "long-lived"`: the `atelier` bridge to `opencode serve`, the prompt its first stdin
/// line, stdin kept open; later inputs are more lines; an empty prompt (a warm start) writes none.
#[test]
fn a_long_lived_session_runs_the_bridge() {
    let harness = OpenCodeHarness::new(BIN).with_bridge("/opt/atelier/atelier");
    assert!(harness.long_lived());
    let mut settings = fake_settings();
    settings["session"] = json!("long-lived");
    let mut req = request(Stage::Implement, settings.clone());
    req.effort = Some("high".into());
    req.resume_session = Some("ses_abc".into());
    let (spec, config) = split_config(harness.command(&req).unwrap());
    assert_eq!(
        spec.program,
        std::path::PathBuf::from("/opt/atelier/atelier")
    );
    assert_eq!(
        spec.args,
        args(&[
            "opencode-bridge",
            "--opencode",
            BIN,
            "--model",
            "atelier/qwen3-coder",
            "--variant",
            "high",
            "--session",
            "ses_abc"
        ])
    );
    assert!(spec.stdin_open);
    let first: Value = serde_json::from_slice(spec.stdin.as_deref().unwrap()).unwrap();
    assert_eq!(first, json!({"text": "Fix \"the\" bug\n- then test"}));
    // As a one-shot turn's, and OpenCode's question tool denied (nobody would answer it).
    assert_eq!(config["permission"]["question"], "deny");
    assert_eq!(config["permission"]["task"], "deny");
    assert_eq!(config["model"], "atelier/qwen3-coder");
    let next = harness.next_turn("Formal.").unwrap();
    assert_eq!(next.last(), Some(&b'\n'));
    assert_eq!(
        serde_json::from_slice::<Value>(&next).unwrap(),
        json!({"text": "Formal."})
    );
    let mut warm = request(Stage::Review, settings);
    warm.prompt = String::new();
    let spec = harness.command(&warm).unwrap();
    assert_eq!(spec.stdin, Some(Vec::new()));
    assert!(harness.warm_env().is_empty());
}
