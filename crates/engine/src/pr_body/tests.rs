use super::*;
use domain::{RunId, RunStatus, Verdict};

fn run(id: i64, stage: Stage, iteration: u32) -> RunRow {
    RunRow {
        id: RunId(id),
        task_id: TaskId(7),
        stage,
        status: RunStatus::Completed,
        iteration,
        turns: 1,
        session: None,
        mark: String::new(),
        pending_input: None,
        signal: None,
        reason: None,
        created_at: 0,
        started_at: Some(1_000),
        ended_at: Some(3_500),
        spawned_us: None,
        exited_us: None,
        input_tokens: 100,
        output_tokens: 10,
        cost_usd: 0.0,
        harness: Some("scripted".into()),
        model: None,
        start_head: None,
        start_checked: None,
        reviewed_commit: None,
    }
}

fn verdict(mut row: RunRow, verdict: Verdict, reason: Option<&str>, commit: &str) -> RunRow {
    row.signal = Some(Signal::Verdict {
        verdict,
        reason: reason.map(str::to_string),
    });
    row.reviewed_commit = Some(commit.to_string());
    row
}

const DOC: &str = "# Add a greeting\n\n## Overview\n\nAdd greeting and farewell files.\nKeep it short.\n\n## To-Do List\n\n### Implementation\n- [x] Add greeting.txt\n- [ ] Add farewell.txt\n\n```\n- [ ] an example\n```\n\n## Review Findings\n\nNone.\n";

#[test]
fn the_bundle_carries_every_piece_of_evidence() {
    let mut plan = run(1, Stage::Plan, 0);
    plan.cost_usd = 0.004;
    let implement = run(2, Stage::Implement, 0);
    let mut review = verdict(
        run(3, Stage::Review, 0),
        Verdict::NeedsWork,
        Some("farewell is wrong"),
        "0123456789abcdef0123456789abcdef01234567",
    );
    review.model = Some("claude-sonnet-4-5".into());
    review.cost_usd = 1.5;
    let mut implement2 = run(4, Stage::Implement, 1);
    implement2.ended_at = Some(3_601_000);
    let review2 = verdict(
        run(5, Stage::Review, 1),
        Verdict::Ready,
        None,
        "fedcba9876543210fedcba9876543210fedcba98",
    );
    let mut pr = run(6, Stage::Pr, 0);
    pr.ended_at = None;
    let runs = [plan, implement, review, implement2, review2, pr];
    let commands = [
        CommandRun {
            command: "sh test.sh".into(),
            stage: Stage::Implement,
            exit_code: Some(1),
            failed: true,
        },
        CommandRun {
            command: "make lint".into(),
            stage: Stage::Review,
            exit_code: None,
            failed: false,
        },
        CommandRun {
            command: "npm test".into(),
            stage: Stage::Review,
            exit_code: None,
            failed: true,
        },
        CommandRun {
            command: "cargo test".into(),
            stage: Stage::Review,
            exit_code: Some(0),
            failed: false,
        },
    ];
    let attachments = ["evidence.md".to_string(), "shot.png".to_string()];
    let body = build(&Evidence {
        task: TaskId(7),
        title: "Add a greeting",
        doc: DOC,
        runs: &runs,
        commands: &commands,
        attachments: &attachments,
        server_url: Some("http://127.0.0.1:4000/"),
    });
    assert_eq!(
        body,
        "Atelier task #7: Add a greeting

## Plan summary

Add greeting and farewell files.\\
Keep it short.

## To-do list

1 of 2 done.

- [x] Add greeting.txt
- [ ] Add farewell.txt

## Review verdicts

- review round 1 by `scripted` (model `claude-sonnet-4-5`): **needs-work** on commit `0123456` — reason: `farewell is wrong`
- review round 2 by `scripted`: **ready** on commit `fedcba9`

## Test commands

- ✗ `sh test.sh` — exit 1 (implement)
- · `make lint` — no exit code reported (review)
- ✗ `npm test` — failed, no exit code reported (review)
- ✓ `cargo test` — exit 0 (review)

## QA evidence

- [`shot.png`](http://127.0.0.1:4000/api/tasks/7/attachments/shot.png)

## Runs and usage

| Stage | Runs | Tokens in | Tokens out | Cost | Wall time |
| --- | ---: | ---: | ---: | ---: | ---: |
| plan | 1 | 100 | 10 | <$0.01 | 2.5s |
| implement | 2 | 200 | 20 | — | 1h 00m |
| review | 2 | 200 | 20 | $1.50 | 5.0s |
| pr | 1 | 100 | 10 | — | — |
| **total** | 6 | 600 | 60 | $1.50 | 1h 00m |

---

_Built by Atelier from the task doc and its run records at publish time, and kept as `evidence.md` in the task's attachments. Text written by agents is quoted, not rendered._
"
    );
}

#[test]
fn a_bare_task_says_what_is_missing() {
    let body = build(&Evidence {
        task: TaskId(3),
        title: "Nothing yet",
        doc: "# Nothing yet\n\nJust a request.\n",
        runs: &[],
        commands: &[],
        attachments: &["notes.txt".to_string()],
        server_url: None,
    });
    assert_eq!(
        body,
        "Atelier task #3: Nothing yet

## Plan summary

_The task doc has no Overview, or it is empty._

## To-do list

_The task doc has no to-do list._

## Review verdicts

_No verdict has been given._

## Test commands

_No test, build or lint command was seen in the agents' transcripts._

## QA evidence

- `notes.txt` (`/api/tasks/3/attachments/notes.txt`)

## Runs and usage

_No runs._

---

_Built by Atelier from the task doc and its run records at publish time, and kept as `evidence.md` in the task's attachments. Text written by agents is quoted, not rendered._
"
    );
}

/// What an agent could write to hide text from the human reading the pull request, or to inject
/// HTML, images and links into it: none of it survives as markup.
#[test]
fn hostile_agent_text_is_quoted_not_rendered() {
    let doc = "## Overview\n\n<!-- approve this -->\u{202E}evil\u{202C} <img src=x onerror=alert(1)>\n[click](javascript:alert(1))\n## To-Do List\n\n- [x] </details><script>alert(1)</script>\n- [x] ![track](http://evil/p.png)\n- [x] \u{200B}`code` **bold**\n";
    let mut review = verdict(
        run(1, Stage::Review, 0),
        Verdict::Ready,
        Some("ok ``` <b>\n# not a heading\n<!--"),
        "<img src=x>",
    );
    review.harness = Some("scripted`<i>".into());
    review.model = Some("m\u{1b}[31m".into());
    let commands = [CommandRun {
        command: "echo `` <script> `` && make test\u{2067}".into(),
        stage: Stage::Review,
        exit_code: Some(0),
        failed: false,
    }];
    let body = build(&Evidence {
        task: TaskId(1),
        title: "<b>Title</b> *x*",
        doc,
        runs: &[review],
        commands: &commands,
        attachments: &["../x".to_string(), "ok.png".to_string()],
        server_url: Some("javascript:alert(1)"),
    });
    let expected = "Atelier task #1: \\<b\\>Title\\</b\\> \\*x\\*

## Plan summary

\\<\\!-- approve this --\\>evil \\<img src=x onerror=alert\\(1\\)\\>\\
\\[click\\]\\(javascript:alert\\(1\\)\\)

## To-do list

3 of 3 done.

- [x] \\</details\\>\\<script\\>alert\\(1\\)\\</script\\>
- [x] \\!\\[track\\]\\(http://evil/p.png\\)
- [x] \\`code\\` \\*\\*bold\\*\\*

## Review verdicts

- review round 1 by ``scripted`<i>`` (model `m[31m`): **ready** on commit `<img src=x>` — reason: ````ok ``` <b> ⏎ # not a heading ⏎ <!--````

## Test commands

- ✓ ```echo `` <script> `` && make test``` — exit 0 (review)

## QA evidence

- `ok.png` (`/api/tasks/1/attachments/ok.png`)

## Runs and usage

| Stage | Runs | Tokens in | Tokens out | Cost | Wall time |
| --- | ---: | ---: | ---: | ---: | ---: |
| review | 1 | 100 | 10 | — | 2.5s |
| **total** | 1 | 100 | 10 | — | 2.5s |

---

_Built by Atelier from the task doc and its run records at publish time, and kept as `evidence.md` in the task's attachments. Text written by agents is quoted, not rendered._
";
    assert_eq!(body, expected);
}

#[test]
fn long_lists_and_texts_are_bounded() {
    let items: String = (0..120).map(|i| format!("- [ ] item {i}\n")).collect();
    let doc = format!(
        "## Overview\n\n{}\n## To-Do List\n\n{items}",
        "word ".repeat(2_000)
    );
    let commands: Vec<CommandRun> = (0..35)
        .map(|i| CommandRun {
            command: format!("make test-{i} {}", "x".repeat(300)),
            stage: Stage::Implement,
            exit_code: Some(0),
            failed: false,
        })
        .collect();
    let body = build(&Evidence {
        task: TaskId(1),
        title: "t",
        doc: &doc,
        runs: &[],
        commands: &commands,
        attachments: &[],
        server_url: None,
    });
    let summary = body
        .split("## Plan summary\n\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n## ").next())
        .unwrap();
    assert_eq!(summary.chars().count(), OVERVIEW_LIMIT);
    assert!(summary.ends_with("word…"), "{summary}");
    assert!(body.contains("0 of 120 done.\n"));
    assert!(body.contains("- [ ] item 99\n\n_20 more items not shown._"));
    assert!(!body.contains("item 100\n"));
    assert!(body.contains("_5 earlier commands not shown._\n\n- ✓ `make test-5 xxx"));
    assert!(!body.contains("make test-4 "));
    let longest = body.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest <= OVERVIEW_LIMIT, "{longest}");
    let command_line = body.lines().find(|l| l.contains("make test-34")).unwrap();
    assert_eq!(
        command_line,
        format!(
            "- ✓ `make test-34 {}…` — exit 0 (implement)",
            "x".repeat(186)
        )
    );
}

#[test]
fn durations_and_costs_read_at_a_glance() {
    let cases = [
        (0, "0.0s"),
        (420, "0.4s"),
        (9_949, "9.9s"),
        (10_000, "10s"),
        (65_000, "1m 05s"),
        (3_599_999, "59m 59s"),
        (7_380_000, "2h 03m"),
    ];
    for (ms, text) in cases {
        assert_eq!(duration(ms), text, "{ms}");
    }
    assert_eq!(
        [0.0, 0.004, 0.01, 12.345].map(dollars),
        ["—", "<$0.01", "$0.01", "$12.35"].map(String::from)
    );
}
