//! The stage prompts: every built-in renders with the task's context, its role's signal commands
//! and the `Atelier-Stage` metadata line; the planner's prompt carries the whole plan template;
//! rendering is strict; overrides replace built-ins and are validated when loaded.
//!
//! The module is private to the engine, so it is compiled into this test from its source file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
use domain::{Stage, TaskId};
use engine::prompt::{PromptError, PromptVars, Prompts};
use std::path::Path;

fn vars(iteration: u32) -> PromptVars {
    PromptVars {
        task_id: TaskId(42),
        title: "Export the board as CSV".to_string(),
        doc_path: "/srv/atelier/tasks/42-export-the-board-as-csv/task.md".to_string(),
        worktree: "/srv/repos/shop-worktrees/42-export-the-board-as-csv".to_string(),
        branch: "atelier/42-export-the-board-as-csv".to_string(),
        base: "main".to_string(),
        port: 41200,
        port_count: 10,
        iteration,
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// The exact signal commands each role is told to run.
fn signals(stage: Stage) -> &'static [&'static str] {
    match stage {
        Stage::Plan => &["atelier signal question \"", "atelier signal plan-ready"],
        Stage::Implement => &[],
        Stage::Review | Stage::SecondReview => &[
            "atelier signal verdict ready",
            "atelier signal verdict needs-work --reason \"",
            "atelier signal verdict blocked --reason \"",
        ],
        Stage::Qa => &[
            "atelier signal qa pass",
            "atelier signal qa fail --reason \"",
        ],
        Stage::Refine => &["atelier signal refine-done"],
        Stage::Pr => &[
            "atelier signal pr-done",
            "atelier signal pr-done --no-changes",
        ],
    }
}

#[test]
fn every_builtin_renders_with_its_context_signals_and_metadata_line() {
    let prompts = Prompts::builtin();
    let vars = vars(2);
    for stage in Stage::ALL {
        let text = prompts.render(stage, &vars).unwrap();
        for needle in [
            "#42",
            "Export the board as CSV",
            vars.doc_path.as_str(),
            vars.worktree.as_str(),
            vars.branch.as_str(),
            "`main`",
            "ATELIER_PORT` = 41200",
            "10 ports",
        ] {
            assert!(text.contains(needle), "{stage} prompt lacks `{needle}`");
        }
        for signal in signals(stage) {
            assert!(text.contains(signal), "{stage} prompt lacks `{signal}`");
        }
        assert!(
            !text.contains("{{"),
            "{stage} prompt has an unfilled placeholder"
        );
        let last = text.lines().last().unwrap();
        assert_eq!(last, format!("Atelier-Stage: {stage} #2"));
        // The second reviewer keeps its own findings section, beside the first's.
        assert_eq!(
            text.contains(engine::prompt::SECOND_REVIEWER),
            stage == Stage::SecondReview,
            "{stage}"
        );
        assert_eq!(
            text.matches("Atelier-Stage:").count(),
            1,
            "{stage}: one metadata line"
        );
    }
}

#[test]
fn review_iteration_two_ends_with_its_metadata_line() {
    let text = Prompts::builtin().render(Stage::Review, &vars(2)).unwrap();
    assert!(text.ends_with("\nAtelier-Stage: review #2\n"), "{text}");
}

#[test]
fn the_plan_prompt_contains_the_whole_plan_template() {
    let prompts = Prompts::builtin();
    let text = prompts.render(Stage::Plan, &vars(0)).unwrap();
    let template = prompts.plan_template().trim_end();
    assert!(
        text.contains(template),
        "the plan prompt lacks the template"
    );
    for heading in [
        "## Original Request",
        "## Overview",
        "## Implementation Plan",
        "## Testing Strategy",
        "### Unit tests",
        "### Manual QA scenarios",
        "## To-Do List",
        "### Implementation",
        "### Testing",
        "- [ ]",
        "## Docs Update",
    ] {
        assert!(template.contains(heading), "the template lacks `{heading}`");
    }
    assert!(text.ends_with("\nAtelier-Stage: plan #0\n"));
}

#[test]
fn the_role_rules_are_spelled_out() {
    let prompts = Prompts::builtin();
    let render = |stage| prompts.render(stage, &vars(0)).unwrap();
    let plan = render(Stage::Plan);
    for rule in [
        "read-only",
        "real trade-offs",
        "testing strategy",
        "INTO THE TASK DOC",
        "verbatim",
        "git or pull-request work",
        "Touch nothing but the task doc",
    ] {
        assert!(plan.contains(rule), "plan prompt lacks `{rule}`");
    }
    let implement = render(Stage::Implement);
    for rule in [
        "Review Findings` section, address it first",
        "`- [x]`",
        "Commit your work",
        "Never ask questions",
        "Never delegate to sub-agents",
        "Ending your turn means \"done\"",
    ] {
        assert!(implement.contains(rule), "implement prompt lacks `{rule}`");
    }
    let review = render(Stage::Review);
    for rule in [
        "skeptical and independent",
        "Status: in progress",
        "the full suite",
        "manual scenario",
        "Never edit code",
        "Replace the `## Review Findings` section each round",
        "EXACTLY ONE",
    ] {
        assert!(review.contains(rule), "review prompt lacks `{rule}`");
    }
    let pr = render(Stage::Pr);
    for rule in [
        "Commit anything uncommitted",
        "Never push",
        "never merge",
        "Every loop is bounded",
    ] {
        assert!(pr.contains(rule), "pr prompt lacks `{rule}`");
    }
}

#[test]
fn a_missing_variable_is_an_error_naming_template_and_variable() {
    let prompts = Prompts::builtin();
    let mut no_worktree = vars(0);
    no_worktree.worktree = String::new();
    let err = prompts.render(Stage::Implement, &no_worktree).unwrap_err();
    assert_eq!(
        err,
        PromptError::MissingVariable {
            template: "built-in implement.md".to_string(),
            variable: "worktree".to_string(),
        }
    );
    assert!(err.to_string().contains("implement.md"));
    assert!(err.to_string().contains("`worktree`"));

    let mut no_port = vars(0);
    no_port.port = 0;
    let err = prompts.render(Stage::Review, &no_port).unwrap_err();
    assert!(matches!(err, PromptError::MissingVariable { ref variable, .. } if variable == "port"));
}

#[test]
fn values_are_not_scanned_for_placeholders() {
    let mut tricky = vars(0);
    tricky.title = "Support {{handlebars}} in emails".to_string();
    let text = Prompts::builtin().render(Stage::Plan, &tricky).unwrap();
    assert!(text.contains("Support {{handlebars}} in emails"));
}

#[test]
fn an_override_replaces_the_builtin() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "review.md",
        "Custom review of #{{ task_id }} in {{worktree}}; doc {{doc_path}}.\n\
         Run `atelier signal verdict ready`.\n",
    );
    write(
        dir.path(),
        "plan-template.md",
        "# {{title}}\n\n## Original Request\n\n## Our Own Section\n",
    );
    write(dir.path(), "notes.txt", "not a prompt, ignored");
    let prompts = Prompts::with_overrides(dir.path()).unwrap();

    let review = prompts.render(Stage::Review, &vars(2)).unwrap();
    assert_eq!(
        review,
        "Custom review of #42 in /srv/repos/shop-worktrees/42-export-the-board-as-csv; \
         doc /srv/atelier/tasks/42-export-the-board-as-csv/task.md.\n\
         Run `atelier signal verdict ready`.\n\nAtelier-Stage: review #2\n"
    );
    let plan = prompts.render(Stage::Plan, &vars(0)).unwrap();
    assert!(
        plan.contains("# Export the board as CSV\n\n## Original Request\n\n## Our Own Section")
    );
    assert!(
        !plan.contains("## Docs Update"),
        "the built-in template is replaced"
    );
    assert_eq!(
        prompts.render(Stage::Implement, &vars(0)).unwrap(),
        Prompts::builtin()
            .render(Stage::Implement, &vars(0))
            .unwrap(),
        "stages without an override keep the built-in"
    );
}

#[test]
fn no_override_folder_means_the_builtins() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = Prompts::with_overrides(&dir.path().join("prompts")).unwrap();
    assert_eq!(prompts, Prompts::builtin());
}

#[test]
fn an_override_with_an_unknown_variable_is_rejected_naming_file_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "implement.md",
        "Work in {{worktree}}.\nThe ticket: {{ticket_url}}\n",
    );
    let err = Prompts::with_overrides(dir.path()).unwrap_err();
    let file = dir.path().join("implement.md").display().to_string();
    assert_eq!(
        err,
        PromptError::UnknownVariable {
            template: file.clone(),
            line: 2,
            variable: "ticket_url".to_string(),
        }
    );
    let message = err.to_string();
    assert!(message.contains(&file), "{message}");
    assert!(message.contains("{{ticket_url}}"), "{message}");
}

#[test]
fn malformed_overrides_are_rejected_at_load() {
    let cases: [(&str, &str, &str); 5] = [
        ("pr.md", "Push {{branch\n", "without a closing"),
        (
            "plan.md",
            "Plan it.\nAtelier-Stage: plan #0\n",
            "Atelier-Stage",
        ),
        ("review.md", "  \n", "is empty"),
        ("plan-template.md", "# T\n{{plan_template}}\n", "itself"),
        (
            "planner.md",
            "A misspelt name.\n",
            "unknown prompt override",
        ),
    ];
    for (name, text, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), name, text);
        let message = Prompts::with_overrides(dir.path()).unwrap_err().to_string();
        assert!(message.contains(name), "{name}: {message}");
        assert!(message.contains(expected), "{name}: {message}");
    }
}

#[test]
fn a_projects_prompt_wins_over_the_servers_which_wins_over_the_builtin() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "review.md", "Server review of {{title}}.\n");
    write(
        dir.path(),
        "implement.md",
        "Server implement of {{title}}.\n",
    );
    let server = Prompts::with_overrides(dir.path()).unwrap();
    let project: std::collections::BTreeMap<String, String> = [
        ("review", "Project review of {{title}}."),
        ("plan-template", "# {{title}}\n\n## Project Section\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let prompts = server.with_project(&project).unwrap();
    let render = |stage| prompts.render(stage, &vars(0)).unwrap();
    assert!(
        render(Stage::Review).starts_with("Project review of Export the board as CSV."),
        "the project's text wins over the server's: {}",
        render(Stage::Review)
    );
    assert!(
        render(Stage::Implement).starts_with("Server implement of Export the board as CSV."),
        "without the project's own, the server's: {}",
        render(Stage::Implement)
    );
    assert!(
        render(Stage::Plan).contains("# Export the board as CSV\n\n## Project Section"),
        "the project's plan template reaches the planner"
    );
    assert_eq!(
        render(Stage::Pr),
        Prompts::builtin().render(Stage::Pr, &vars(0)).unwrap(),
        "overridden by neither: the built-in"
    );
    assert_eq!(
        server.with_project(&Default::default()).unwrap(),
        server,
        "no project overrides: the server's prompts as they are"
    );

    // A project's text is checked as the server's is: an unknown variable names its line.
    let bad: std::collections::BTreeMap<String, String> =
        [("review".to_string(), "Fine.\nReview {{titel}}.".to_string())].into();
    let err = server.with_project(&bad).unwrap_err().to_string();
    assert!(
        err.contains("prompts.review, line 2: unknown variable `{{titel}}`"),
        "{err}"
    );
    let checked = engine::prompt::check_project_prompt("review", "Review {{titel}}.").unwrap_err();
    assert!(
        checked.starts_with("prompt template prompts.review, line 1: unknown variable `{{titel}}`"),
        "{checked}"
    );
    let unknown = engine::prompt::check_project_prompt("reviews", "x").unwrap_err();
    assert!(
        unknown.contains("prompts.reviews: no such prompt (use one of plan, implement, review"),
        "{unknown}"
    );
}
