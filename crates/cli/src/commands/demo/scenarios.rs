//! The demo's four scenario files: a planner that writes a three-item plan, an implementer, a
//! reviewer that sends the work back once, and a pr stage. Built from the harness's typed steps so
//! a change of the scenario format breaks the build, not the demo.

use anyhow::{Context, Result};
use domain::Stage;
use harness::scenario::{RunScript, Scenario, Step};
use std::path::Path;

const ITEM_OPTION: &str = "Add a --name option to greet.sh";
const ITEM_TEST: &str = "Add tests/test_greet.sh";
const ITEM_DOCS: &str = "Document the option in README.md";

pub const GREET_WITH_NAME: &str = r#"#!/bin/sh
# Prints a greeting: `sh greet.sh [--name NAME]`.
name="world"
if [ "$1" = "--name" ] && [ -n "$2" ]; then
  name="$2"
fi
echo "Hello, $name!"
"#;

const TEST_NAME_ONLY: &str = r#"#!/bin/sh
set -e
test "$(sh greet.sh --name Ada)" = "Hello, Ada!"
echo "ok: --name"
"#;

const TEST_BOTH: &str = r#"#!/bin/sh
set -e
test "$(sh greet.sh --name Ada)" = "Hello, Ada!"
test "$(sh greet.sh)" = "Hello, world!"
echo "ok: --name and the default greeting"
"#;

const README: &str = "# greeter\n\nA tiny script that greets.\n\n    sh greet.sh               # Hello, world!\n    sh greet.sh --name Ada    # Hello, Ada!\n";

fn say(text: &str) -> Step {
    Step::Message { text: text.into() }
}

fn think(text: &str) -> Step {
    Step::Thinking { text: text.into() }
}

fn run(command: &str) -> Step {
    Step::Run {
        command: command.into(),
    }
}

fn write(path: &str, content: &str) -> Step {
    Step::Write {
        path: path.into(),
        content: content.into(),
    }
}

fn check(item: &str) -> Step {
    Step::Check { item: item.into() }
}

fn section(heading: &str, body: &str) -> Step {
    Step::DocSection {
        heading: heading.into(),
        body: body.into(),
    }
}

fn signal(args: &[&str]) -> Step {
    Step::Signal {
        args: args.iter().map(|a| (*a).to_string()).collect(),
    }
}

fn plan() -> Scenario {
    let todo = format!("- [ ] {ITEM_OPTION}\n- [ ] {ITEM_TEST}\n- [ ] {ITEM_DOCS}");
    Scenario {
        runs: vec![RunScript::single(vec![
            think("The request asks for a --name option. Let me look at the script first."),
            run("cat greet.sh"),
            section(
                "Overview",
                "Let `greet.sh` greet someone other than the world with `--name NAME`; without it, it keeps saying `Hello, world!`.",
            ),
            section(
                "Implementation Plan",
                "1. `greet.sh`: parse `--name NAME`, default to `world`.\n2. `tests/test_greet.sh`: a shell test of both greetings.\n3. `README.md`: document the option.",
            ),
            section(
                "Testing Strategy",
                "- Unit: `sh tests/test_greet.sh` checks `--name Ada` and the default greeting.\n- Manual: run `sh greet.sh --name Ada` and read the output.",
            ),
            section("To-Do List", &todo),
            say("The plan is in the task doc: three to-do items, tested by a small shell test."),
            signal(&["plan-ready"]),
        ])],
    }
}

fn implement() -> Scenario {
    let first = vec![
        say("Working the to-do list."),
        write("greet.sh", GREET_WITH_NAME),
        check(ITEM_OPTION),
        write("tests/test_greet.sh", TEST_NAME_ONLY),
        run("sh tests/test_greet.sh"),
        check(ITEM_TEST),
        write("README.md", README),
        check(ITEM_DOCS),
        run("git add -A && git commit -qm 'Add a --name option to greet.sh'"),
        say("All three items are done and committed."),
    ];
    let fix = vec![
        say("Addressing the Review Findings first: the test misses the default greeting."),
        write("tests/test_greet.sh", TEST_BOTH),
        run("sh tests/test_greet.sh"),
        check(ITEM_TEST),
        run("git add -A && git commit -qm 'Test the default greeting too'"),
        say("Fixed: the test now covers both greetings."),
    ];
    Scenario {
        runs: vec![RunScript::single(first), RunScript::single(fix)],
    }
}

fn review() -> Scenario {
    let first = vec![
        think("Every item is checked. Verifying each one against the plan."),
        run("sh tests/test_greet.sh"),
        Step::Uncheck {
            item: ITEM_TEST.into(),
        },
        section(
            "Review Findings",
            "- `tests/test_greet.sh` only tests `--name`; the plan's Testing Strategy also asks for the default greeting (`Hello, world!`).",
        ),
        say("One item does not meet the plan; sending it back."),
        signal(&[
            "verdict",
            "needs-work",
            "--reason",
            "the test misses the default greeting",
        ]),
    ];
    let second = vec![
        run("sh tests/test_greet.sh"),
        run("sh greet.sh --name Ada"),
        section(
            "Review Findings",
            "None: every item verified against the plan; tests green.",
        ),
        say("Everything is verified and green."),
        signal(&["verdict", "ready"]),
    ];
    Scenario {
        runs: vec![RunScript::single(first), RunScript::single(second)],
    }
}

fn pr() -> Scenario {
    Scenario {
        runs: vec![RunScript::single(vec![
            say(
                "The branch is committed; handing it to Atelier to push and open the pull request.",
            ),
            signal(&["pr-done"]),
        ])],
    }
}

/// Writes `<dir>/<stage>.json` for every stage.
pub fn write_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for stage in Stage::STANDARD {
        let scenario = match stage {
            Stage::Plan => plan(),
            Stage::Implement => implement(),
            Stage::Review => review(),
            _ => pr(),
        };
        scenario
            .validate()
            .with_context(|| format!("the demo's {stage} scenario is invalid"))?;
        let path = dir.join(format!("{stage}.json"));
        let json = serde_json::to_vec_pretty(&scenario).context("cannot encode a scenario")?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_round_trip_through_the_harness_loader() {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path()).unwrap();
        for stage in Stage::STANDARD {
            Scenario::load(&dir.path().join(format!("{stage}.json"))).unwrap();
        }
        let review = Scenario::load(&dir.path().join("review.json")).unwrap();
        assert_eq!(review.runs.len(), 2);
    }
}
