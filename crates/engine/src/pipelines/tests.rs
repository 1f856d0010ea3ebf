//! Definition files: every problem is reported at the line it is on, whether toml or the
//! domain's validation finds it, and prompt files are checked relative to the file.

use super::*;

const STANDARD: &str = r#"[pipeline.standard]
description = "today's"

[[pipeline.standard.stage]]
kind = "plan"
gate = true
on = { plan-ready = "implement" }

[[pipeline.standard.stage]]
kind = "implement"
on = { done = "review" }

[[pipeline.standard.stage]]
kind = "review"
max_rounds = 3
on = { ready = "pr", needs-work = "implement" }

[[pipeline.standard.stage]]
kind = "pr"
on = { pr-done = "done" }
"#;

fn errors(text: &str) -> Vec<String> {
    let checker = FileChecker::new(Path::new("/nonexistent"));
    match parse("p.toml", text, &checker) {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_standard_pipeline_in_toml_is_the_builtin() {
    let checker = FileChecker::new(Path::new("/nonexistent"));
    let defined = parse("p.toml", STANDARD, &checker).unwrap_or_default();
    let mut builtin = domain::pipeline_def::builtin("standard").unwrap_or_else(|| unreachable!());
    builtin.description = Some("today's".into());
    assert_eq!(
        defined,
        vec![Defined {
            file: "p.toml".into(),
            line: 1,
            def: builtin
        }]
    );
}

#[test]
fn each_problem_names_the_file_and_its_line() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "toml syntax",
            STANDARD.replace("max_rounds = 3", "max_rounds = "),
            vec!["p.toml:15: "],
        ),
        (
            "unknown field",
            STANDARD.replace("max_rounds = 3", "max_round = 3"),
            vec!["p.toml:15: unknown field `max_round`, expected one of"],
        ),
        (
            "wrong type",
            STANDARD.replace("gate = true", "gate = \"yes\""),
            vec!["p.toml:6: invalid type: string \"yes\", expected a boolean"],
        ),
        (
            "a negative cap",
            STANDARD.replace("max_rounds = 3", "max_rounds = -1"),
            vec!["p.toml:15: invalid value: integer `-1`, expected u32"],
        ),
        (
            "unknown kind",
            STANDARD.replace("kind = \"review\"", "kind = \"reveiw\""),
            vec!["p.toml:14: unknown stage kind `reveiw`: expected one of plan, implement"],
        ),
        (
            "unknown signal",
            STANDARD.replace("ready = \"pr\"", "approved = \"pr\""),
            vec!["p.toml:16: stage `review` (review) has no signal `approved`"],
        ),
        (
            "unknown target",
            STANDARD.replace("ready = \"pr\"", "ready = \"qa\""),
            vec!["p.toml:16: signal `ready` of stage `review` leads to `qa`, which is not a stage"],
        ),
        (
            "loop without cap",
            STANDARD.replace("max_rounds = 3\n", ""),
            vec!["p.toml:15: the loop implement → review → implement has no cap"],
        ),
        (
            "unknown harness",
            STANDARD.replace(
                "kind = \"implement\"",
                "kind = \"implement\"\nharness = \"claude\"",
            ),
            vec![
                "p.toml:11: unknown harness `claude`: expected one of claude-code, codex, opencode, scripted (did you mean `claude-code`?)",
            ],
        ),
        (
            "a model of another harness",
            STANDARD.replace(
                "kind = \"implement\"",
                "kind = \"implement\"\nharness = \"claude-code\"\nmodel = \"gpt-5\"",
            ),
            vec!["p.toml:12: model `gpt-5` does not belong to the claude-code harness"],
        ),
        (
            "no pipeline",
            String::new(),
            vec!["p.toml:1: no pipeline is defined"],
        ),
    ];
    for (what, text, expected) in cases {
        let got = errors(&text);
        assert_eq!(got.len(), expected.len(), "{what}: {got:?}");
        for (got, expected) in got.iter().zip(expected) {
            assert!(got.starts_with(expected), "{what}: {got}");
        }
    }
}

#[test]
fn prompt_files_are_checked_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("prompts")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("prompts/implement.md"),
        "Work on {{title}}.\nSee {{ticket}}.\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("pipelines.toml");
    let text = STANDARD.replace(
        "kind = \"implement\"",
        "kind = \"implement\"\nprompt = \"prompts/implement.md\"",
    );
    std::fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
    let checked = check_files(std::slice::from_ref(&file));
    assert_eq!(checked.errors.len(), 1, "{:?}", checked.errors);
    let error = checked.errors[0].to_string();
    assert!(
        error.starts_with(&format!("{}:11: prompt template ", file.display()))
            && error.contains("implement.md, line 2: unknown variable `{{ticket}}`"),
        "{error}"
    );

    // A prompt that is not there is a note at its line, not an error.
    std::fs::write(&file, text.replace("prompts/implement.md", "prompts/qa.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let checked = check_files(std::slice::from_ref(&file));
    assert_eq!(checked.errors, vec![]);
    assert_eq!(checked.pipelines.len(), 1);
    assert_eq!(checked.notes.len(), 1);
    assert!(
        checked.notes[0]
            .to_string()
            .starts_with(&format!("{}:11: note: prompt file ", file.display())),
        "{}",
        checked.notes[0]
    );
}

#[test]
fn a_name_defined_in_two_files_is_refused_at_the_second() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, STANDARD).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&b, format!("\n\n{STANDARD}")).unwrap_or_else(|e| panic!("{e}"));
    let checked = check_files(&[a.clone(), b.clone()]);
    assert_eq!(
        checked.errors,
        vec![PipelineError {
            file: b.display().to_string(),
            line: 3,
            reason: format!(
                "pipeline `standard` is also defined at {}:1: rename one of them",
                a.display()
            ),
        }]
    );
    assert_eq!(checked.pipelines.len(), 1);
}
