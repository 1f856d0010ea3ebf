//! The web UI in a real browser (headless Chromium through chromedriver, see
//! `support/browser.rs`) against the real `atelier serve` with scripted agents: a whole task from
//! first-run setup to Done, XSS payloads everywhere user or agent text is shown (a pull request's
//! title included), a cross-origin forgery attempt, what a non-member sees (every UI route that
//! names a project or task is a 404), every screen audited in the light and the dark scheme (sign-in
//! and setup in the light one), the pages with JavaScript off, and the doc's edit form for those who may edit it only.
//!
//! Then the finer points: the board and the inbox following a task without a reload (and the
//! dashboard while an agent works), a blocked task's reason and unblocking action, the task
//! page's folding, clocks, plan revision and re-run, the keyboard, and `atelier demo --ui`.
//!
//! Every step is photographed at a phone's and a laptop's size into
//! `target/ui-artifacts/<test>/`, fails on any browser console error, and every screen is audited
//! with axe-core (no `serious` or `critical` violation). Without chromedriver and axe-core
//! configured (`scripts/test` installs and sets them) these tests are compiled as ignored outside
//! CI; under `CI=true` they run and fail naming what is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::Browser;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use support::people::{add_member, create_user, password_of, remove_member, sign_in, with_session};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The id in a `/tasks/{id}` path.
fn task_id_of(path: &str) -> Option<i64> {
    path.strip_prefix("/tasks/")?
        .split(['?', '#', '/'])
        .next()?
        .parse()
        .ok()
}

/// Submits the new-task dialog and waits for the new task's page; returns its id.
async fn create_from_dialog(b: &Browser) -> i64 {
    b.click("form#new-task button[type=submit]").await;
    let path = b
        .wait_js(
            "the new task's page",
            "return /^\\/tasks\\/\\d+$/.test(location.pathname) ? location.pathname : null",
            vec![],
        )
        .await;
    task_id_of(path.as_str().unwrap()).unwrap()
}

/// Signs `login` in through the login page; lands on the inbox.
async fn log_in(b: &Browser, login: &str) {
    log_in_with(b, login, &password_of(login)).await;
}

/// Signs `login` in with `password` through the login page; lands on the inbox.
async fn log_in_with(b: &Browser, login: &str, password: &str) {
    b.goto("/login").await;
    b.fill("form#login input[name=login]", login).await;
    b.fill("form#login input[name=password]", password).await;
    b.click("form#login button[type=submit]").await;
    b.wait_path("/").await;
    b.wait_for("nav#nav").await;
    b.assert_no_console_errors(&format!("log in {login}")).await;
}

/// Signs out with the navigation's button; lands on the login page.
async fn log_out(b: &Browser) {
    b.click("nav#nav button#logout").await;
    b.wait_path("/login").await;
    b.wait_for("form#login").await;
}

/// A browser (Chromium started with `switches` besides the usual ones) signed in as `login`, on
/// the inbox; its artifacts go under `test`.
async fn signed_in(test: &str, world: &World, login: &str, switches: &[&str]) -> Browser {
    let b = Browser::start_with(test, world.server.url(), switches).await;
    log_in(&b, login).await;
    b
}

/// A `yolo` task of the world's project (its implementer publishes, see
/// `publishing_implement_scenario`), once it awaits its merge; returns its id.
async fn published_task(world: &World, title: &str, body: &str) -> i64 {
    let (status, created) = world.create_in_pipeline(title, body, "yolo").await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    world.wait_state(id, "awaiting_merge").await;
    id
}

/// Gives `project` the world's scripted roles and the gated sandbox (as `World::add_project`
/// does), as the administrator.
async fn play_scenarios(world: &World, project: &str) {
    let settings = json!({"roles": world.roles(&world.scenarios), "sandbox": gated_sandbox()});
    let (status, body) = world
        .server
        .client()
        .request(
            Method::PUT,
            &format!("/api/projects/{project}/settings"),
            Some(&settings),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Sets `window.__sameDocument`: [`assert_same_document`] then proves the page was updated live,
/// not reloaded (a reload forgets it).
async fn mark_document(b: &Browser) {
    b.js("window.__sameDocument = true", vec![]).await;
}

async fn assert_same_document(b: &Browser, what: &str) {
    assert_eq!(
        b.js("return window.__sameDocument === true", vec![]).await,
        json!(true),
        "{what}: the page was reloaded or left instead of updating live"
    );
}

/// Waits until the task page shows the state `state`.
async fn wait_task_state(b: &Browser, state: &str) {
    b.wait_for(&format!("#task-state[data-state=\"{state}\"]"))
        .await;
}

/// A whole task through the browser: first-run setup, sign-in, a project, a task created from
/// the board, its transcript growing live, a question answered, the plan approved at the gate,
/// a needs-work review round on the timeline, stop and resume, the pull request and the merge,
/// and the task Done on the board. Every screen is photographed and audited.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn a_task_from_first_run_setup_to_done() {
    let go_plan = release_file("flow-plan");
    let go_fix = release_file("flow-fix");
    let plan = json!({"runs": [{"turns": [
        [
            {"do": "message", "text": "Reading the request."},
            wait_for_file(&go_plan),
            {"do": "message", "text": "Second thought: one product question first."},
            {"do": "question", "text": "Should the greeting be formal?"}
        ],
        [
            {"do": "echo_input"},
            {"do": "doc_section", "heading": "Overview", "body": "Add greeting and farewell files."},
            {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n- [ ] Add farewell.txt\n"},
            {"do": "signal", "args": ["plan-ready"]}
        ]
    ]}]});
    let implement = json!({"runs": [
        [
            {"do": "write", "path": "greeting.txt", "content": "hello\n"},
            {"do": "check", "item": "Add greeting.txt"},
            {"do": "write", "path": "farewell.txt", "content": "bye?\n"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Add greeting and farewell'"}
        ],
        [
            {"do": "message", "text": "Addressing the review findings first."},
            wait_for_file(&go_fix),
            {"do": "write", "path": "farewell.txt", "content": "goodbye\n"},
            {"do": "check", "item": "Add farewell.txt"},
            {"do": "run", "command": "git add -A && git commit -qm 'Fix farewell'"}
        ]
    ]});
    let scenarios = [
        ("plan", plan),
        ("implement", implement),
        ("review", review_scenario()),
        ("pr", pr_scenario()),
    ];
    // The project is added in the web form with the default roles (Claude Code): a stand-in
    // `claude` that answers its version passes the check that its CLI starts.
    let tools = tempfile::tempdir().unwrap();
    let claude = fake_agent_cli(tools.path(), "claude", "2.1.330 (Claude Code)");
    let world = World::start_bare(
        &scenarios,
        &[
            "--merge-poll-ms",
            "200",
            "--claude-bin",
            claude.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let b = Browser::start("a_task_from_first_run_setup_to_done", world.server.url()).await;

    // First run: every page leads to the setup page while no account has a password.
    b.goto("/").await;
    b.wait_path("/setup").await;
    b.wait_for("form#setup").await;
    b.screen("01-setup").await;
    b.fill("form#setup input[name=token]", world.server.token())
        .await;
    b.fill("form#setup input[name=login]", "ada").await;
    b.fill("form#setup input[name=password]", &password_of("ada"))
        .await;
    b.click("form#setup button[type=submit]").await;
    b.wait_path("/").await;
    b.wait_for("nav#nav").await;
    for link in ["/", "/projects", "/admin", "/me"] {
        assert!(
            b.exists(&format!("nav#nav a[href=\"{link}\"]")).await,
            "the navigation links to {link}"
        );
    }
    b.wait_for("section#needs-you").await;
    b.screen("02-inbox-empty").await;

    // Sign out, and in again with the password just chosen.
    log_out(&b).await;
    b.screen("03-login").await;
    b.goto("/projects").await;
    b.wait_path("/login").await;
    assert!(
        b.path().await.contains("next="),
        "a signed-out page request keeps where it was going: {}",
        b.path().await
    );
    log_in(&b, "ada").await;

    // Add the project on the projects page.
    b.goto("/projects").await;
    b.wait_for("form#add-project").await;
    b.screen("04-projects-empty").await;
    b.fill(
        "form#add-project input[name=path]",
        world.repo.path.to_str().unwrap(),
    )
    .await;
    b.fill("form#add-project input[name=name]", "app").await;
    b.click("form#add-project button[type=submit]").await;
    // The page may show the list again or go on to the new board: either settles it.
    b.wait_js(
        "the project to be added",
        "return location.pathname === '/projects/app' ||
                [...document.querySelectorAll('ul#projects li a')]
                  .some(a => a.textContent.includes('app'))",
        vec![],
    )
    .await;
    b.goto("/projects").await;
    b.wait_js(
        "the project in the list",
        "return [...document.querySelectorAll('ul#projects li a')]
                .some(a => a.textContent.includes('app'))",
        vec![],
    )
    .await;
    b.snap("05-projects").await;
    let projects = world.server.get("/api/projects").await.unwrap();
    assert_eq!(projects[0]["name"], "app", "{projects}");
    // The agents play the test's scenarios (roles are not what this test is about).
    play_scenarios(&world, "app").await;

    b.goto("/projects/app/settings").await;
    b.wait_for("nav#nav").await;
    b.wait_text("main", "app").await;
    b.screen("06-project-settings").await;
    // Saving the form changes what was edited and keeps everything else (roles, sandbox).
    let before = world.server.get("/api/projects").await.unwrap()[0]["settings"].clone();
    b.fill("#cap-max_review_rounds", "4").await;
    b.click("form#settings button[type=submit]").await;
    let after = testkit::wait_until(
        "the saved review-rounds cap",
        std::time::Duration::from_secs(10),
        || async {
            let settings = world.server.get("/api/projects").await.ok()?[0]["settings"].clone();
            (settings["max_review_rounds"] == 4).then_some(settings)
        },
    )
    .await
    .unwrap();
    let mut expected = before.clone();
    expected["max_review_rounds"] = json!(4);
    assert_eq!(after, expected, "only the edited field changed");
    b.wait_for("form#settings").await;

    // A task from the board's dialog.
    b.goto("/projects/app").await;
    for column in [
        "planning",
        "plan-review",
        "building",
        "pr",
        "awaiting-merge",
        "done",
        "blocked",
    ] {
        b.wait_for(&format!("section.column[data-column=\"{column}\"]"))
            .await;
    }
    b.screen("07-board-empty").await;
    b.click("button#new-task").await;
    b.wait_for("dialog#new-task-dialog[open] form#new-task")
        .await;
    b.fill("form#new-task input[name=title]", "Add greeting & farewell")
        .await;
    b.fill(
        "form#new-task textarea[name=body]",
        "Please add a greeting.",
    )
    .await;
    b.set_checked("form#new-task input[name=technical]", true)
        .await;
    // A file attached in the dialog goes to the new task's attachments.
    let spec = world.dir.path().join("spec notes.txt");
    std::fs::write(&spec, "the greeting is formal").unwrap();
    b.wait_for("form#new-task input[name=files]")
        .await
        .send_keys(spec.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        b.attr(
            "form#new-task select[name=pipeline] option[selected]",
            "value"
        )
        .await
        .as_deref(),
        Some("standard")
    );
    b.snap("08-new-task-dialog").await;
    b.axe("new-task-dialog").await;
    let id = create_from_dialog(&b).await;
    let detail = world.task_detail(id).await;
    assert_eq!(detail.task.title, "Add greeting & farewell");
    assert_eq!(
        detail.task.pipeline, "standard",
        "the project's default pipeline"
    );
    b.wait_text("#attachments", "spec-notes.txt").await;
    let (status, attached) = world
        .server
        .client()
        .request(Method::GET, &format!("/api/tasks/{id}/attachments"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(attached[0]["name"], "spec-notes.txt", "{attached}");
    assert_eq!(attached[0]["size"], 22, "{attached}");

    // The transcript grows live while the planner works.
    b.wait_for("#task-state").await;
    b.wait_text("#transcript", "Reading the request.").await;
    mark_document(&b).await;
    let before = b.count("#transcript li.ev[data-key]").await;
    assert!(before >= 1);
    b.screen("09-task-running").await;
    std::fs::write(&go_plan, "go").unwrap();
    b.wait_text("#transcript", "Second thought").await;
    assert!(b.count("#transcript li.ev[data-key]").await > before);
    assert!(
        b.exists("#transcript li.ev.tool").await,
        "the planner's wait is a tool call in the transcript"
    );

    // A question: shown on the task page and in the inbox, answered from the page.
    b.wait_text("#question", "Should the greeting be formal?")
        .await;
    wait_task_state(&b, "needs_input").await;
    assert_same_document(&b, "the question").await;
    b.screen("10-task-question").await;
    b.goto("/").await;
    b.wait_for(&format!(
        "section#needs-you li.inbox-item[data-task=\"{id}\"][data-kind=\"question\"]"
    ))
    .await;
    b.screen("11-inbox-question").await;
    b.goto(&format!("/tasks/{id}")).await;
    b.fill("form#answer textarea[name=text]", "Yes, formal please.")
        .await;
    mark_document(&b).await;
    b.click("form#answer [type=submit]").await;

    // The plan gate: the page shows the plan, and the plan is approved from it.
    wait_task_state(&b, "plan_gate").await;
    b.wait_text("#doc", "Add farewell.txt").await;
    b.wait_text("#transcript", "Yes, formal please.").await;
    b.wait_for("form#approve").await;
    assert!(
        b.exists("form#request-changes textarea[name=feedback]")
            .await
    );
    assert!(!b.exists("#question").await, "the question is answered");
    assert_same_document(&b, "the answer").await;
    b.screen("12-task-plan-gate").await;
    b.goto("/").await;
    b.wait_for(&format!(
        "section#needs-you li.inbox-item[data-task=\"{id}\"][data-kind=\"plan\"]"
    ))
    .await;
    b.snap("13-inbox-plan").await;
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_text("#doc", "Add greeting.txt").await;
    mark_document(&b).await;
    b.click("form#approve [type=submit]").await;

    // implement → review says needs-work → implement again, shown live on the timeline.
    b.wait_for("ol#timeline > li.run.needs-work[data-stage=\"review\"]")
        .await;
    b.wait_text("#transcript", "Addressing the review findings first.")
        .await;
    wait_task_state(&b, "running").await;
    b.wait_for("button#stop").await;
    assert_same_document(&b, "the implement ⇄ review rounds").await;
    b.screen("14-task-needs-work").await;

    // Stop, then resume.
    b.click_and_confirm("button#stop").await;
    wait_task_state(&b, "stopped").await;
    b.wait_for("button#resume").await;
    b.wait_gone("button#stop").await;
    assert_eq!(world.detail(id).await["task"]["state"]["state"], "stopped");
    b.screen("15-task-stopped").await;
    b.click("button#resume").await;
    wait_task_state(&b, "running").await;
    b.wait_for("button#stop").await;
    std::fs::write(&go_fix, "go").unwrap();

    // The pull request, then the merge.
    wait_task_state(&b, "awaiting_merge").await;
    let pr = world.wait_until_pr(id).await;
    b.wait_for("#pr .pr-link").await;
    let pr_url = pr["url"].as_str().unwrap();
    assert!(
        b.text("#pr .pr-link").await.contains(pr_url),
        "the pull request is named: {pr_url}"
    );
    // A hosted pull request is a link; the local forge's (a branch, merged here) is text.
    if pr_url.starts_with("http") {
        assert_eq!(
            b.attr("#pr a.pr-link", "href").await.as_deref(),
            Some(pr_url)
        );
    } else {
        assert!(
            b.attr("#pr .pr-link", "href").await.is_none(),
            "no link to nowhere"
        );
    }
    // The diff may be folded away until asked for.
    b.js(
        "const d = document.querySelector('#diff')?.closest('details');
         if (d && !d.open) d.querySelector('summary').click();",
        vec![],
    )
    .await;
    b.wait_text("#diff", "farewell.txt").await;
    let runs = world.detail(id).await["runs"].as_array().unwrap().len();
    assert_eq!(
        b.count("ol#timeline > li.run").await,
        runs,
        "one timeline entry per run"
    );
    assert_eq!(
        b.count("ol#timeline > li.run.needs-work").await,
        1,
        "one review said needs-work"
    );
    assert_same_document(&b, "the pull request").await;
    b.screen("16-task-awaiting-merge").await;
    b.goto("/").await;
    b.wait_for(&format!(
        "section#needs-you li.inbox-item[data-task=\"{id}\"][data-kind=\"merge\"]"
    ))
    .await;
    b.snap("17-inbox-merge").await;
    b.goto(&format!("/tasks/{id}")).await;
    b.click("button#merge").await;
    wait_task_state(&b, "done").await;
    world.wait_state(id, "done").await;
    b.wait_gone("button#merge").await;
    b.screen("18-task-done").await;

    // Done on the board.
    b.goto("/projects/app").await;
    let card = format!(
        "section.column[data-column=\"done\"] article.card[data-task=\"{id}\"][data-state=\"done\"]"
    );
    b.wait_for(&card).await;
    assert!(
        b.text(&format!("{card} a.card-title"))
            .await
            .contains("Add greeting & farewell")
    );
    b.screen("19-board-done").await;

    // The administrator's and the user's own pages.
    b.goto("/admin").await;
    b.wait_for("form#create-user").await;
    b.screen("20-admin").await;
    // A prompt override: an unknown variable is refused inline, naming it; a good one is saved.
    b.js(
        "document.querySelector('#prompt-review').closest('details').open = true;",
        vec![],
    )
    .await;
    b.fill("#prompt-text-review", "Review {{titel}} closely.")
        .await;
    b.click("form#prompt-review button[type=submit]").await;
    b.wait_text("form#prompt-review .form-error", "unknown variable")
        .await;
    assert!(
        b.text("form#prompt-review .form-error")
            .await
            .contains("titel")
    );
    // The refusal is the API's 400, which the browser logs as a failed load (a moment after the
    // page shows it): that one is expected, anything else is not.
    b.expect_failed_load("/api/prompts/review.md", "400").await;
    b.fill("#prompt-text-review", "Review {{title}} closely.")
        .await;
    b.click("form#prompt-review button[type=submit]").await;
    b.wait_text("#prompts", "overridden").await;
    assert_eq!(
        std::fs::read_to_string(world.data.join("prompts/review.md")).unwrap(),
        "Review {{title}} closely."
    );
    b.goto("/me").await;
    b.wait_text("main", "ada").await;
    b.screen("21-me").await;
}

/// A payload in every shape a careless page would run: a script element, an image's error
/// handler, a markdown `javascript:` link, a raw `javascript:` link, an iframe and an `onclick`
/// attribute. Each sets `window.__pwned` to `tag`; `XSS-<tag>` is plain text to find it by.
fn payload(tag: &str) -> String {
    format!(
        "XSS-{tag} <script>window.__pwned='{tag}'</script> \
         <img src=x onerror=\"window.__pwned='{tag}'\"> \
         [click me](javascript:window.__pwned='{tag}') \
         <a href=\"javascript:window.__pwned='{tag}'\">raw link</a> \
         <iframe src=\"javascript:parent.__pwned='{tag}'\"></iframe> \
         <b onclick=\"window.__pwned='{tag}'\">bold</b>"
    )
}

/// Fails if any payload ran or left something executable in the DOM: `window.__pwned` is unset,
/// no attribute anywhere carries the payload's code (event handlers, `javascript:` URLs, iframe
/// sources), no script element holds it, and there is no iframe or `javascript:` link at all.
async fn assert_nothing_executed(b: &Browser, page: &str) {
    let pwned = b
        .js(
            "return window.__pwned === undefined ? null : String(window.__pwned)",
            vec![],
        )
        .await;
    assert_eq!(pwned, Value::Null, "{page}: a payload ran");
    let found = b
        .js(
            "const bad = [];
             for (const el of document.querySelectorAll('*')) {
               for (const a of el.attributes) {
                 if (a.value.includes('__pwned') || a.name.startsWith('on')) {
                   bad.push(el.tagName + ' ' + a.name + '=' + a.value);
                 }
               }
               if (el.tagName === 'SCRIPT' && el.textContent.includes('__pwned')) {
                 bad.push('SCRIPT ' + el.textContent);
               }
             }
             for (const el of document.querySelectorAll('iframe, a[href^=\"javascript:\" i]')) {
               bad.push(el.outerHTML);
             }
             return bad;",
            vec![],
        )
        .await;
    assert_eq!(
        found,
        json!([]),
        "{page}: executable payload elements or attributes in the DOM"
    );
    // Clicking what the payload wanted clicked runs nothing either.
    b.js(
        "for (const el of document.querySelectorAll('#doc a, #transcript a, #question a, b')) {
           if (el.textContent.includes('click me') || el.textContent.includes('bold')) el.click();
         }",
        vec![],
    )
    .await;
    let pwned = b
        .js(
            "return window.__pwned === undefined ? null : String(window.__pwned)",
            vec![],
        )
        .await;
    assert_eq!(pwned, Value::Null, "{page}: a clicked payload ran");
    // Decision: the page must log no console error, with one exception: the failed load of the
    // payload's own image URL `x` (the sanitizer may keep a harmless `<img src=x>` without its
    // handler, and the browser then fetches `x`). A CSP violation report is NOT excepted: it
    // would mean a payload reached the DOM in executable form and only the policy stopped it —
    // that already fails the DOM checks above, and it fails here too.
    let severe: Vec<_> = b
        .take_console()
        .await
        .into_iter()
        .filter(|e| e.level == "SEVERE")
        .filter(|e| {
            !(e.source == "network"
                && e.message
                    .split(' ')
                    .next()
                    .is_some_and(|url| url.ends_with("/x")))
        })
        .collect();
    let csp = severe.iter().filter(|e| e.is_csp_violation()).count();
    assert!(
        severe.is_empty(),
        "{page}: console errors ({csp} of them CSP violation reports: the policy blocked a \
         payload that escaping should have neutralized): {severe:#?}"
    );
}

/// XSS payloads in a task's title and request (the doc's original request), in the doc written
/// by an agent, in a transcript message and in a question: shown on the task page (arriving live,
/// then server-rendered after a reload), in the inbox and on the board, and never executed.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn xss_payloads_are_shown_as_text_and_never_run() {
    let go = release_file("xss-go");
    let plan = json!({"runs": [[
        {"do": "message", "text": "Starting."},
        wait_for_file(&go),
        {"do": "message", "text": payload("message")},
        {"do": "doc_section", "heading": "Notes", "body": payload("doc")},
        {"do": "question", "text": payload("question")}
    ]]});
    let world = World::start(&[("plan", plan)], &[]).await;
    create_user(&world, "ada", true).await;
    add_member(&world, "app", "ada", "owner").await;
    let title = "XSS-title <script>window.__pwned='title'</script><img src=x onerror=\"window.__pwned='title'\">";
    let (status, body) = world
        .server
        .post(
            "/api/tasks",
            &json!({"project": "app", "title": title, "body": payload("body"), "technical": true}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = typed::<engine::api::TaskView>(&body).id.0;

    let b = Browser::start(
        "xss_payloads_are_shown_as_text_and_never_run",
        world.server.url(),
    )
    .await;
    log_in(&b, "ada").await;

    // Live: the agent's payloads arrive while the page is open.
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_text("#transcript", "Starting.").await;
    mark_document(&b).await;
    std::fs::write(&go, "go").unwrap();
    b.wait_text("#transcript", "XSS-message").await;
    b.wait_text("#doc", "XSS-doc").await;
    b.wait_text("#question", "XSS-question").await;
    wait_task_state(&b, "needs_input").await;
    assert_same_document(&b, "the payloads arriving").await;
    b.wait_text("#doc", "XSS-body").await;
    b.wait_text("body", "XSS-title").await;
    assert_nothing_executed(&b, "the task page (live)").await;
    b.snap("01-task-live").await;

    // Server-rendered: the same page loaded afresh.
    b.goto(&format!("/tasks/{id}")).await;
    for (css, text) in [
        ("#transcript", "XSS-message"),
        ("#doc", "XSS-doc"),
        ("#doc", "XSS-body"),
        ("#question", "XSS-question"),
        ("body", "XSS-title"),
    ] {
        b.wait_text(css, text).await;
    }
    assert_nothing_executed(&b, "the task page").await;
    b.snap("02-task").await;

    b.goto("/").await;
    b.wait_for(&format!("li.inbox-item[data-task=\"{id}\"]"))
        .await;
    b.wait_text("section#needs-you", "XSS-title").await;
    assert_nothing_executed(&b, "the inbox").await;
    b.snap("03-inbox").await;

    b.goto("/projects/app").await;
    b.wait_text(&format!("article.card[data-task=\"{id}\"]"), "XSS-title")
        .await;
    assert_nothing_executed(&b, "the board").await;
    b.snap("04-board").await;
}

/// A payload in every executable shape that fits a task title (at most 200 characters): a script
/// element, an image's error handler, a `javascript:` link, an iframe and an `onclick` attribute.
const PR_TITLE_PAYLOAD: &str = "XSS-pr <script>__pwned=1</script><img src=x onerror=\"__pwned=1\">\
     <a href=\"javascript:__pwned=1\">click me</a><iframe src=\"javascript:parent.__pwned=1\">\
     </iframe><b onclick=\"__pwned=1\">bold</b>";

/// A yolo implementer that commits a change and signals `pr-done`: its task goes straight to an
/// open pull request (on the local forge) and awaits its merge.
fn publishing_implement_scenario() -> Value {
    json!({"runs": [[
        {"do": "message", "text": "Writing the greeting."},
        {"do": "write", "path": "greeting.txt", "content": "hello\n"},
        {"do": "run", "command": "git add -A && git commit -qm 'Add greeting'"},
        {"do": "signal", "args": ["pr-done"]}
    ]]})
}

/// XSS payloads in a pull request's title, taken through to an open pull request. Atelier opens a
/// pull request with its task's title (the engine's outbox; an agent has no say in it: the pr
/// stage only signals `pr-done`), so the payload is planted in the task's title — the pull
/// request's title and the task's are the same string here. The task page's pull-request panel
/// shows the pull request's own title as the forge record keeps it (`#pr-title`, exactly the
/// text), the board card and the inbox's awaiting-merge item show it; nothing runs, no markup of
/// it reaches the DOM, and the console stays clean.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn xss_payloads_in_a_pull_request_title_are_shown_as_text_and_never_run() {
    let world = World::start(
        &[
            ("plan", plan_scenario()),
            ("implement", publishing_implement_scenario()),
        ],
        &[],
    )
    .await;
    create_user(&world, "ada", true).await;
    add_member(&world, "app", "ada", "owner").await;
    assert!(
        PR_TITLE_PAYLOAD.chars().count() <= 200,
        "a valid task title"
    );
    let id = published_task(&world, PR_TITLE_PAYLOAD, "Add a greeting.").await;
    let pr = world.wait_until_pr(id).await;
    assert_eq!(
        pr["title"], PR_TITLE_PAYLOAD,
        "the pull request was opened with the task's title: {pr}"
    );

    let b = signed_in(
        "xss_payloads_in_a_pull_request_title_are_shown_as_text_and_never_run",
        &world,
        "ada",
        &[],
    )
    .await;

    b.goto(&format!("/tasks/{id}")).await;
    b.wait_text("#pr-title", "XSS-pr").await;
    assert_eq!(
        b.js(
            "return document.querySelector('#pr-title').textContent",
            vec![]
        )
        .await,
        json!(PR_TITLE_PAYLOAD),
        "the pull request's title is shown as text, whole"
    );
    assert_eq!(
        b.count("#pr script, #pr img, #pr iframe, #pr b, #pr a:not(.pr-link)")
            .await,
        0,
        "no element of the payload in the pull-request panel"
    );
    assert_nothing_executed(&b, "the task page's pull request").await;
    b.snap("01-task-pr").await;

    b.goto("/projects/app").await;
    let card = format!("article.card[data-task=\"{id}\"] a.card-title");
    b.wait_text(&card, "XSS-pr").await;
    assert_eq!(
        b.js(
            "return document.querySelector(arguments[0]).textContent",
            vec![json!(card)]
        )
        .await,
        json!(PR_TITLE_PAYLOAD)
    );
    assert_nothing_executed(&b, "the board").await;
    b.snap("02-board").await;

    b.goto("/").await;
    let item = format!("li.inbox-item[data-task=\"{id}\"][data-kind=\"merge\"]");
    b.wait_text(&item, "XSS-pr").await;
    assert_nothing_executed(&b, "the inbox's awaiting-merge item").await;
    b.snap("03-inbox-merge").await;
}

/// A tiny web server on another loopback port — another origin, though the same site as the
/// Atelier server, so the browser sends its `SameSite=Lax` session cookie along — that serves
/// `html` for every request. Returns its base URL; the server task ends with the test.
async fn foreign_site(html: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let html = html.clone();
            tokio::spawn(async move {
                // Read the request head; the page ignores what was asked.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

/// A signed-in user visits a page of another origin whose script and form post to the Atelier
/// API (approve the plan, create a task) with the user's cookie; nothing happens. The same
/// session then approves through Atelier's own page, so the refusals were the CSRF defence and
/// not a dead session.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn a_foreign_origin_cannot_act_for_a_signed_in_user() {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    create_user(&world, "ada", true).await;
    add_member(&world, "app", "ada", "owner").await;
    let id = world.new_task("Guarded", true).await;
    world.wait_state(id, "plan_gate").await;

    let b = Browser::start(
        "a_foreign_origin_cannot_act_for_a_signed_in_user",
        world.server.url(),
    )
    .await;
    log_in(&b, "ada").await;
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_for("form#approve").await;
    b.assert_no_console_errors("the task page").await;

    let base = world.server.url().trim_end_matches('/').to_string();
    let html = format!(
        r#"<!doctype html><html lang="en"><head><title>A friendly page</title></head><body>
<form id="forged" method="POST" action="{base}/api/tasks/{id}/approve" enctype="text/plain">
<input name='{{"feedback":"' value='"}}'></form>
<script>
(async () => {{
  const base = {base:?};
  const tries = [
    fetch(base + "/api/tasks", {{method: "POST", mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "text/plain"}},
      body: JSON.stringify({{project: "app", title: "forged-simple", body: "x"}})}}),
    fetch(base + "/api/tasks/{id}/approve", {{method: "POST", mode: "no-cors",
      credentials: "include", headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
      body: "a=b"}}),
    fetch(base + "/api/tasks", {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "application/json", "X-CSRF-Token": "guessed"}},
      body: JSON.stringify({{project: "app", title: "forged-preflight", body: "x"}})}}),
  ];
  const results = await Promise.allSettled(tries);
  window.__tries = results.map(r => r.status);
  document.getElementById("forged").submit();
}})();
</script></body></html>"#
    );
    let foreign = foreign_site(html).await;
    b.goto(&format!("{foreign}/")).await;
    // The script's last act is the form post, which takes the browser to the API's answer.
    b.wait_js(
        "the forged form to be posted",
        "return location.href.startsWith(arguments[0])",
        vec![json!(format!("{base}/api/tasks/{id}/approve"))],
    )
    .await;
    // The foreign page's console holds its own failures (a refused preflight); not checked.
    b.take_console().await;

    let detail = world.detail(id).await;
    assert_eq!(
        detail["task"]["state"]["state"], "plan_gate",
        "a forged approval moved the task: {detail:#}"
    );
    assert_eq!(detail["runs"].as_array().unwrap().len(), 1, "{detail:#}");
    let tasks = world.server.get("/api/tasks").await.unwrap();
    let titles: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Guarded"], "a forged task was created");

    // The same session acts through Atelier's own page.
    b.goto(&format!("/tasks/{id}")).await;
    b.click("form#approve [type=submit]").await;
    wait_task_state_left(&b, "plan_gate").await;
    let detail = world.detail(id).await;
    assert_ne!(detail["task"]["state"]["state"], "plan_gate", "{detail:#}");
    b.assert_no_console_errors("approving on the page").await;
}

/// Fails unless the current page is a "not found" page showing none of the hidden project's
/// content.
async fn assert_not_found_page(b: &Browser, path: &str, secrets: &[&str]) {
    b.wait_for("body").await;
    let text = b.text("body").await;
    for secret in secrets {
        assert!(!text.contains(secret), "{path} shows {secret:?}: {text}");
    }
    for css in [
        "section.column",
        "article.card",
        "#task-state",
        "#doc",
        "#transcript",
    ] {
        assert!(!b.exists(css).await, "{path} shows `{css}`");
    }
    let lower = text.to_lowercase();
    assert!(
        lower.contains("not found") || lower.contains("404"),
        "{path} says it is not found: {text}"
    );
    // The only console error allowed is the browser's note of the 404 answer itself.
    let errors: Vec<_> = b
        .take_console()
        .await
        .into_iter()
        .filter(|e| e.level == "SEVERE" && !e.message.contains("status of 404"))
        .collect();
    assert!(errors.is_empty(), "{path}: console errors {errors:#?}");
}

/// A user who is not a member of a project sees a 404 page for the project, its settings and its
/// tasks (the same answer as for something that does not exist), and none of its tasks in their
/// inbox or on their board; a member of it sees them.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn a_non_member_sees_nothing_of_a_project() {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    let other = world.add_repo("other");
    world.add_project(&other, "other", json!({})).await;
    let secret = world.new_task_in("app", "Secret app work", true, 0).await;
    let own = world.new_task_in("other", "Work of bob's", true, 0).await;
    world.wait_state(secret, "plan_gate").await;
    world.wait_state(own, "plan_gate").await;
    create_user(&world, "bob", true).await;
    add_member(&world, "other", "bob", "member").await;
    create_user(&world, "ann", true).await;
    add_member(&world, "app", "ann", "member").await;

    // The server answers 404 to bob's session for each of them, as for what does not exist.
    let (cookie, _) = sign_in(&world, "bob").await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let hidden = [
        "/projects/app".to_string(),
        "/projects/app/settings".to_string(),
        format!("/tasks/{secret}"),
    ];
    for path in hidden
        .iter()
        .map(String::as_str)
        .chain(["/projects/nope", "/tasks/999999"])
    {
        let status = http
            .get(format!("{}{path}", world.server.url()))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "GET {path} as a non-member");
    }

    let b = Browser::start("a_non_member_sees_nothing_of_a_project", world.server.url()).await;
    log_in(&b, "bob").await;
    for (n, path) in hidden.iter().enumerate() {
        b.goto(path).await;
        assert_not_found_page(&b, path, &["Secret app work"]).await;
        b.snap(&format!("0{}-not-found", n + 1)).await;
    }
    b.goto("/").await;
    b.wait_for(&format!("li.inbox-item[data-task=\"{own}\"]"))
        .await;
    assert!(!b.exists(&format!("[data-task=\"{secret}\"]")).await);
    assert!(!b.text("body").await.contains("Secret app work"));
    b.snap("04-inbox").await;
    b.goto("/projects").await;
    b.wait_for("ul#projects").await;
    let names = b
        .js(
            "return [...document.querySelectorAll('ul#projects li a')].map(a => a.textContent.trim())",
            vec![],
        )
        .await;
    assert_eq!(names, json!(["other"]), "bob's projects");
    // Made a member of `app` while the page is open, bob sees it appear without a reload, and
    // disappear when he is removed (the stream's `projects` message).
    mark_document(&b).await;
    let names_are = |want: Value| {
        let b = &b;
        async move {
            b.wait_js(
                &format!("bob's projects to be {want}"),
                "const names = [...document.querySelectorAll('ul#projects li a')].map(a => a.textContent.trim()); \
                 return JSON.stringify(names) === arguments[0] ? true : null",
                vec![json!(want.to_string())],
            )
            .await;
        }
    };
    add_member(&world, "app", "bob", "member").await;
    names_are(json!(["app", "other"])).await;
    remove_member(&world, "app", "bob").await;
    names_are(json!(["other"])).await;
    assert_same_document(&b, "the projects page").await;
    b.goto("/projects/other").await;
    b.wait_for(&format!("article.card[data-task=\"{own}\"]"))
        .await;
    assert!(!b.exists(&format!("[data-task=\"{secret}\"]")).await);
    b.snap("05-board-other").await;

    // A member of the project sees it all.
    log_out(&b).await;
    log_in(&b, "ann").await;
    b.wait_for(&format!("li.inbox-item[data-task=\"{secret}\"]"))
        .await;
    b.goto(&format!("/tasks/{secret}")).await;
    b.wait_for("#task-state[data-state=\"plan_gate\"]").await;
    b.wait_text("body", "Secret app work").await;
    b.snap("06-member-task").await;
}

/// The UI's routes that name a project or a task (`{project}`, `{id}`), as templates: each is
/// checked for a non-member. Kept in step with the router by
/// [`a_non_member_gets_404_from_every_ui_route_of_a_project`].
const SCOPED_UI_ROUTES: [&str; 7] = [
    "/projects/{project}",
    "/projects/{project}/settings",
    "/tasks/{id}",
    "/tasks/{id}/transcript",
    "/tasks/{id}/events",
    "/tasks/{id}/diff",
    "/tasks/{id}/changes",
];

/// Every UI route that takes a project or a task — pages and the fragments the pages' script
/// fetches (`/tasks/{id}/transcript?before=…`, `?from=…`, `/tasks/{id}/diff`) — answers a
/// non-member's session 404, exactly as for a project or task that does not exist, and shows
/// nothing of it; a member gets 200 from each (the 404 is not a broken route). The list is the
/// router's: a UI route with `{project}` or `{id}` missing from it fails this test.
#[tokio::test]
async fn a_non_member_gets_404_from_every_ui_route_of_a_project() {
    // Every `.route(` call's path, however rustfmt breaks the call over lines; the whole list is
    // checked first, so a route the parse missed fails here rather than going unchecked.
    let router = include_str!("../../server/src/ui/mod.rs");
    let all: Vec<&str> = router
        .split(".route(")
        .skip(1)
        .map(|rest| {
            let rest = rest.trim_start().strip_prefix('"').expect("a route's path");
            rest.split('"').next().unwrap()
        })
        .collect();
    assert_eq!(
        all.len(),
        router.matches(".route(").count(),
        "every route's path is read"
    );
    let unscoped = [
        "/",
        "/login",
        "/setup",
        "/projects",
        "/preview",
        "/admin",
        "/me",
        "/assets/{name}",
        "/favicon.ico",
    ];
    for path in &all {
        assert!(
            unscoped.contains(path) || SCOPED_UI_ROUTES.contains(path),
            "the UI route {path} is neither checked for non-members nor known to take no project \
             or task: add it to SCOPED_UI_ROUTES (or to this test's unscoped list)"
        );
    }
    let routed: Vec<&str> = all
        .iter()
        .copied()
        .filter(|path| path.contains('{') && !path.starts_with("/assets"))
        .collect();
    let mut listed = SCOPED_UI_ROUTES.to_vec();
    listed.sort_unstable();
    let mut routed_sorted = routed.clone();
    routed_sorted.sort_unstable();
    assert_eq!(
        routed_sorted, listed,
        "the UI routes that take a project or a task"
    );

    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    let secret = world.new_task_in("app", "Secret app work", true, 0).await;
    world.wait_state(secret, "plan_gate").await;
    let run = world.detail(secret).await["runs"][0]["id"]
        .as_i64()
        .unwrap();
    create_user(&world, "bob", true).await;
    create_user(&world, "ann", true).await;
    add_member(&world, "app", "ann", "member").await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: String, cookie: String| {
        let http = &http;
        let url = format!("{}{path}", world.server.url());
        async move {
            let response = http.get(url).header("cookie", cookie).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    // Each route with the task or project filled in, and with its queries.
    let uses = |project: &str, task: i64| -> Vec<String> {
        SCOPED_UI_ROUTES
            .iter()
            .flat_map(|template| {
                let path = template
                    .replace("{project}", project)
                    .replace("{id}", &task.to_string());
                let mut paths = vec![path.clone()];
                if template.ends_with("/transcript") {
                    paths.push(format!("{path}?before={run}-2"));
                    paths.push(format!("{path}?from={run}-1"));
                }
                if template.ends_with("/events") {
                    paths.push(format!("{path}?before={run}-2"));
                }
                paths
            })
            .collect()
    };
    let (bob, _) = sign_in(&world, "bob").await;
    let (ann, _) = sign_in(&world, "ann").await;
    let mut checked = 0;
    for (hidden, missing) in uses("app", secret).into_iter().zip(uses("nope", 999_999)) {
        let (status, body) = get(hidden.clone(), bob.clone()).await;
        assert_eq!(status, 404, "GET {hidden} as a non-member: {body}");
        assert!(!body.contains("Secret app work"), "{hidden}: {body}");
        let (missing_status, _) = get(missing.clone(), bob.clone()).await;
        assert_eq!(missing_status, 404, "GET {missing} (nothing there)");
        let (member, body) = get(hidden.clone(), ann.clone()).await;
        assert_eq!(member, 200, "GET {hidden} as a member: {body}");
        checked += 1;
    }
    assert_eq!(checked, SCOPED_UI_ROUTES.len() + 3, "every route and query");
}

/// Whether the page's `body` background is dark (`true`) or light, from its computed colour:
/// fails on a colour that is neither.
async fn body_is_dark(b: &Browser) -> bool {
    let colour = b
        .js(
            "return getComputedStyle(document.body).backgroundColor",
            vec![],
        )
        .await;
    let colour = colour.as_str().unwrap().to_string();
    let channels: Vec<f64> = colour
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .map(|c| c.trim().parse().unwrap())
        .collect();
    assert_eq!(channels.len(), 3, "{colour}");
    let lightness = channels.iter().sum::<f64>() / 3.0;
    assert!(
        !(80.0..=180.0).contains(&lightness),
        "the body's background {colour} is neither dark nor light"
    );
    lightness < 80.0
}

/// Every screen through axe-core (no serious or critical violation), in the light scheme and
/// with a dark system scheme emulated (`prefers-color-scheme: dark`): the inbox with items in it
/// (a blocked task, a pull request to merge), the projects list with a project, the board, a
/// blocked task's page, a task with its pull request and diff, the pages that work without
/// script (the changes and the earlier events), the project settings, the user's page, the
/// admin page and the "not found" page (sign-in and setup are audited in the light scheme by the
/// flow test). Each is photographed in both schemes, and the body's computed
/// background is light in one and dark in the other, so a broken dark mode fails.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn every_screen_passes_axe_in_light_and_dark_mode() {
    let crash = json!({"runs": [[
        {"do": "message", "text": "about to crash"},
        {"do": "crash", "code": 3, "stderr": "segfault in the agent"}
    ]]});
    let world = World::start(
        &[
            ("plan", crash),
            ("implement", publishing_implement_scenario()),
        ],
        &[],
    )
    .await;
    create_user(&world, "ada", true).await;
    add_member(&world, "app", "ada", "owner").await;
    // An administrator, so the admin page is audited too.
    support::people::update_user(&world, "ada", json!({"admin": true})).await;
    let blocked = world.new_task("Crashes while planning", true).await;
    let merge = published_task(&world, "Add a greeting", "Add a greeting.").await;
    world.wait_state(blocked, "blocked").await;

    let b = signed_in(
        "every_screen_passes_axe_in_light_and_dark_mode",
        &world,
        "ada",
        &[],
    )
    .await;
    let screens: [(&str, String, String); 11] = [
        (
            "inbox",
            "/".into(),
            format!("li.inbox-item[data-task=\"{blocked}\"]"),
        ),
        ("projects", "/projects".into(), "ul#projects li a".into()),
        (
            "board",
            "/projects/app".into(),
            format!("article.card[data-task=\"{merge}\"]"),
        ),
        (
            "task-blocked",
            format!("/tasks/{blocked}"),
            "section#blocked".into(),
        ),
        ("task-pr", format!("/tasks/{merge}"), "#pr .pr-link".into()),
        (
            "settings",
            "/projects/app/settings".into(),
            "form#settings".into(),
        ),
        (
            "changes",
            format!("/tasks/{merge}/changes"),
            "main table".into(),
        ),
        (
            "events",
            format!("/tasks/{blocked}/events"),
            "main ol".into(),
        ),
        ("me", "/me".into(), "main".into()),
        ("admin", "/admin".into(), "main table".into()),
        ("not-found", "/tasks/999999".into(), "p.error".into()),
    ];
    for scheme in ["light", "dark"] {
        b.emulate_color_scheme(scheme).await;
        for (name, path, ready) in &screens {
            b.goto(path).await;
            b.wait_for(ready).await;
            if *name == "inbox" {
                b.wait_for(&format!("li.inbox-item[data-task=\"{merge}\"]"))
                    .await;
            }
            if *name == "task-pr" {
                // The diff opened, so its colours are audited too.
                b.js(
                    "document.querySelector('#diff-details').open = true",
                    vec![],
                )
                .await;
                b.wait_text("#diff", "greeting.txt").await;
            }
            assert_eq!(
                body_is_dark(&b).await,
                scheme == "dark",
                "{name}: the body's background in the {scheme} scheme"
            );
            let step = format!("{scheme}-{name}");
            if *name == "not-found" {
                // The browser notes the 404 answer itself in the console: that one is expected.
                b.snap_without_checks(&step).await;
                let errors: Vec<_> = b
                    .take_console()
                    .await
                    .into_iter()
                    .filter(|e| e.level == "SEVERE" && !e.message.contains("status of 404"))
                    .collect();
                assert!(errors.is_empty(), "{step}: {errors:#?}");
                b.axe(&step).await;
            } else {
                b.screen(&step).await;
            }
        }
    }
}

/// With JavaScript off (Chromium started with `--blink-settings=scriptEnabled=false`), a task's
/// page reads whole: its doc, its transcript (with a link to the earlier events, which open as a
/// page of their own), its pull request and its diff (the panel's link opens it as a page), and
/// the board shows the task. The page's script never ran (the diff panel did not load in place).
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn a_task_page_and_the_board_read_with_javascript_off() {
    // More events than the page shows at first (300), so the earlier ones are a link away.
    let implement = json!({"runs": [[
        {"do": "message", "text": "First of all: the greeting."},
        {"do": "burst", "count": 320},
        {"do": "doc_section", "heading": "Notes", "body": "Greeting written in **greeting.txt**."},
        {"do": "write", "path": "greeting.txt", "content": "hello\n"},
        {"do": "run", "command": "git add -A && git commit -qm 'Add greeting'"},
        {"do": "signal", "args": ["pr-done"]}
    ]]});
    let world = World::start(&[("plan", plan_scenario()), ("implement", implement)], &[]).await;
    create_user(&world, "ada", true).await;
    add_member(&world, "app", "ada", "owner").await;
    let id = published_task(&world, "Add a greeting", "Please add a greeting.").await;

    let b = signed_in(
        "a_task_page_and_the_board_read_with_javascript_off",
        &world,
        "ada",
        &["--blink-settings=scriptEnabled=false"],
    )
    .await;
    // (axe is not run here: its audit needs the page's script engine; the screens are audited
    // with script on in `every_screen_passes_axe_in_light_and_dark_mode`.)
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_for("#task-state[data-state=\"awaiting_merge\"]")
        .await;
    b.wait_text("#doc", "Greeting written in").await;
    b.wait_text("#doc", "Please add a greeting.").await;
    b.wait_for("#transcript li.ev[data-key]").await;
    b.wait_text("#pr", "Pull request").await;
    b.wait_for("#pr .pr-link").await;
    b.snap("01-task").await;

    // The diff: the panel opens without script and links to the diff's page.
    b.click("#diff-details summary").await;
    b.wait_for("#diff-details[open]").await;
    let link = b.attr("#diff a", "href").await.unwrap();
    assert_eq!(link, format!("/tasks/{id}/changes"));
    assert!(
        b.attr("html", "data-script").await.is_none(),
        "the page's script did not run (it marks the page as soon as it starts)"
    );
    b.click("#diff a").await;
    b.wait_path(&format!("/tasks/{id}/changes")).await;
    b.wait_text("#diff", "greeting.txt").await;
    b.wait_text("#diff pre.diff", "+hello").await;
    b.snap("02-diff-page").await;

    // The earlier events: a link to a page of them, which links on to the task.
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_text("#transcript", "pr-done").await;
    assert!(
        !b.text("#transcript").await.contains("First of all"),
        "the first events are not on the task page"
    );
    b.click("a#transcript-earlier").await;
    b.wait_path(&format!("/tasks/{id}/events")).await;
    b.wait_text("#transcript-page", "First of all: the greeting.")
        .await;
    b.snap("03-earlier-events").await;
    b.click(&format!("main a[href=\"/tasks/{id}\"]")).await;
    b.wait_path(&format!("/tasks/{id}")).await;

    b.goto("/projects/app").await;
    let card =
        format!("section.column[data-column=\"awaiting-merge\"] article.card[data-task=\"{id}\"]");
    b.wait_text(&card, "Add a greeting").await;
    b.snap("04-board").await;
    drop(b);

    // With script, the same link loads the earlier events in place (the enhancement is kept).
    let b = signed_in(
        "a_task_page_and_the_board_read_with_javascript_off-script-on",
        &world,
        "ada",
        &[],
    )
    .await;
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_text("#transcript", "pr-done").await;
    b.wait_for("html[data-script=\"on\"]").await;
    mark_document(&b).await;
    b.click("a#transcript-earlier").await;
    b.wait_text("#transcript", "First of all: the greeting.")
        .await;
    b.wait_gone("a#transcript-earlier").await;
    assert_same_document(&b, "the earlier events").await;
    assert_eq!(b.path().await, format!("/tasks/{id}"));
    b.snap("05-earlier-in-place").await;
}

/// The task doc's edit form is offered exactly to those the API lets edit it (the engine's one
/// rule: the task's owner, the project's owners, administrators; no agent at work): while the
/// planner works the owner sees none (the API answers 409) and it appears live when it is done;
/// a member who does not own the task sees none (the API answers 403); the owner edits the doc
/// on the page and the page shows the change.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn the_doc_is_editable_by_its_owner_and_by_no_other_member() {
    let go = release_file("doc-edit-go");
    let plan = json!({"runs": [[
        {"do": "message", "text": "Planning."},
        wait_for_file(&go),
        {"do": "doc_section", "heading": "Overview", "body": "Add greeting and farewell files."},
        {"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n"},
        {"do": "signal", "args": ["plan-ready"]}
    ]]});
    let world = World::start(&[("plan", plan)], &[]).await;
    create_user(&world, "ada", true).await;
    create_user(&world, "bob", true).await;
    add_member(&world, "app", "ada", "member").await;
    add_member(&world, "app", "bob", "member").await;
    // ada's task, created with ada's own session.
    let ada = sign_in(&world, "ada").await;
    let (status, created) = with_session(
        &world,
        &ada,
        Method::POST,
        "/api/tasks",
        &json!({"project": "app", "title": "Ada's task", "body": "Please add a greeting.", "technical": true}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let doc_path = format!("/api/tasks/{id}/doc");
    let edit = json!({"doc": "# edited"});

    // While the planner works (it writes the doc), not even the owner is offered the form, and
    // the API refuses the edit the same; the form appears, live, once the agent is done.
    let b = signed_in(
        "the_doc_is_editable_by_its_owner_and_by_no_other_member",
        &world,
        "ada",
        &[],
    )
    .await;
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_text("#transcript", "Planning.").await;
    assert!(
        !b.exists("#doc-edit").await,
        "no edit form while an agent works"
    );
    let (status, _) = with_session(&world, &ada, Method::PUT, &doc_path, &edit).await;
    assert_eq!(status, 409, "the API refuses an edit while an agent works");
    mark_document(&b).await;
    std::fs::write(&go, "go").unwrap();
    wait_task_state(&b, "plan_gate").await;
    b.wait_for("#doc-edit form#edit-doc").await;
    assert_same_document(&b, "the edit form appearing").await;
    log_out(&b).await;

    log_in(&b, "bob").await;
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_text("#doc", "Add greeting.txt").await;
    assert!(
        !b.exists("#doc-edit, form#edit-doc").await,
        "a member who does not own the task is offered no edit form"
    );
    b.snap("01-other-member").await;
    let bob = sign_in(&world, "bob").await;
    let (status, _) = with_session(&world, &bob, Method::PUT, &doc_path, &edit).await;
    assert_eq!(status, 403, "the API refuses the same member");
    log_out(&b).await;

    log_in(&b, "ada").await;
    b.goto(&format!("/tasks/{id}")).await;
    b.wait_text("#doc", "Add greeting.txt").await;
    b.click("#doc-edit summary").await;
    let doc = world.detail(id).await["doc"].as_str().unwrap().to_string();
    let edited = format!("{doc}\n## Owner's note\n\nKeep it **short**.\n");
    b.fill("form#edit-doc textarea[name=doc]", &edited).await;
    b.click("form#edit-doc button[type=submit]").await;
    // The page shows the saved doc, rendered, without a reload by hand.
    b.wait_js(
        "the owner's note in the doc",
        "return [...document.querySelectorAll('#doc h2')].some(h => h.textContent === \"Owner's note\") &&
                [...document.querySelectorAll('#doc strong')].some(s => s.textContent === 'short')",
        vec![],
    )
    .await;
    assert_eq!(world.detail(id).await["doc"], json!(edited));
    b.screen("02-owner-edited").await;
}

/// The width and height of a PNG file, from its header.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// The browser helpers themselves, on a small page of their own: screenshots at both sizes,
/// console errors (a JavaScript error and a failed load) and accessibility violations are seen,
/// and a page without them passes.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn the_browser_helpers_see_errors_and_accessibility_violations() {
    let site = foreign_site(
        r#"<!doctype html><html><head><title>bad</title></head><body>
<img src="http://127.0.0.1:1/missing.png"><button></button>
<script>document.body.dataset.ran = "yes"; undefinedFunction();</script>
</body></html>"#
            .to_string(),
    )
    .await;
    let b = Browser::start(
        "the_browser_helpers_see_errors_and_accessibility_violations",
        &site,
    )
    .await;
    b.goto("/").await;
    b.wait_for("body[data-ran=yes]").await;
    b.snap_without_checks("bad").await;
    for (width, height) in browser::SIZES {
        let shot = b.artifacts().join(format!("bad-{width}x{height}.png"));
        assert_eq!(png_size(&shot), (width, height), "{}", shot.display());
    }
    let console = b.take_console().await;
    let severe: Vec<&str> = console
        .iter()
        .filter(|e| e.level == "SEVERE")
        .map(|e| e.message.as_str())
        .collect();
    assert!(
        severe
            .iter()
            .any(|m| m.contains("undefinedFunction is not defined")),
        "{console:#?}"
    );
    assert!(
        severe.iter().any(|m| m.contains("missing.png")),
        "{console:#?}"
    );
    let violations = b.axe_violations("bad").await;
    let ids: Vec<&str> = violations
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    for rule in ["button-name", "html-has-lang", "image-alt"] {
        assert!(ids.contains(&rule), "axe reports {rule}: {ids:?}");
    }
    assert_eq!(task_id_of("/tasks/12"), Some(12));
    assert_eq!(task_id_of("/tasks/12?x=1"), Some(12));
    assert_eq!(task_id_of("/projects/12"), None);
    drop(b);

    // A clean page passes every check.
    let site = foreign_site(
        r#"<!doctype html><html lang="en"><head><title>good</title></head><body>
<main><h1>Fine</h1><button type="button">Go</button></main></body></html>"#
            .to_string(),
    )
    .await;
    let b = Browser::start(
        "the_browser_helpers_see_errors_and_accessibility_violations-good",
        &site,
    )
    .await;
    b.goto("/").await;
    b.wait_text("h1", "Fine").await;
    b.screen("good").await;
}

/// The CSS of the card of task `id` in the board's `column`.
fn card_in(column: &str, id: i64) -> String {
    format!("section.column[data-column=\"{column}\"] article.card[data-task=\"{id}\"]")
}

/// The CSS of the inbox's item of task `id` for `kind` (plan, question, blocked, merge).
fn inbox_item(kind: &str, id: i64) -> String {
    format!("section#needs-you li.inbox-item[data-task=\"{id}\"][data-kind=\"{kind}\"]")
}

/// A world playing `scenarios` (server flags `args`) whose user `ada`, an owner of `app`, is
/// signed in to a browser photographing into the artifacts of `test`.
async fn ada_signed_in(test: &str, scenarios: Scenarios<'_>, args: &[&str]) -> (World, Browser) {
    let world = World::start(scenarios, args).await;
    create_user(&world, "ada", true).await;
    add_member(&world, "app", "ada", "owner").await;
    let b = Browser::start(test, world.server.url()).await;
    log_in(&b, "ada").await;
    (world, b)
}

/// Waits until the task page shows a state other than `state`.
async fn wait_task_state_left(b: &Browser, state: &str) {
    b.wait_js(
        &format!("the page to leave {state}"),
        "const s = document.querySelector('#task-state');
         return s !== null && s.dataset.state !== arguments[0]",
        vec![json!(state)],
    )
    .await;
}

/// Waits until the elapsed time shown by `css` (`N s` or `N min N s`) has ticked: read once
/// as a time, then shown as another; returns the later one.
async fn wait_ticking(b: &Browser, css: &str) -> String {
    let mut seen = String::new();
    for _ in 0..2 {
        seen = b
            .wait_js(
                &format!("`{css}` to show an elapsed time other than {seen:?}"),
                "const e = document.querySelector(arguments[0]);
                 const t = e === null ? '' : e.textContent;
                 return /^(\\d+ min )?\\d+ s$/.test(t) && t !== arguments[1] ? t : null",
                vec![json!(css), json!(seen)],
            )
            .await
            .as_str()
            .unwrap()
            .to_string();
    }
    seen
}

/// The board and the inbox, open and never reloaded, follow a task as it moves: its card appears
/// in Planning, moves to Plan review, then Building, then on to Done; the inbox's plan item
/// leaves when changes are requested elsewhere (the API), comes back when the revised plan waits,
/// and leaves again when it is approved elsewhere. While the planner works, the inbox's dashboard
/// shows it (task, stage, harness, elapsed time that ticks, last activity), today's usage and the
/// recent activity, as the engine computes them.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn the_board_and_inbox_follow_a_task_live_without_a_reload() {
    let go_plan = release_file("live-plan");
    let go_revise = release_file("live-revise");
    let go_think = release_file("live-think");
    let go_build = release_file("live-build");
    let todo =
        json!({"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n"});
    let plan = json!({"runs": [
        [{"do": "thinking", "text": "Reading the request."}, wait_for_file(&go_plan), todo, {"do": "signal", "args": ["plan-ready"]}],
        {"turns": [
            [{"do": "fail", "error": "the revision continues the session"}],
            [{"do": "echo_input"}, wait_for_file(&go_think), {"do": "thinking", "text": "Greeting first, then."},
             wait_for_file(&go_revise), todo, {"do": "signal", "args": ["plan-ready"]}]
        ]}
    ]});
    let implement = json!({"runs": [[
        wait_for_file(&go_build),
        {"do": "write", "path": "greeting.txt", "content": "hello\n"},
        {"do": "check", "item": "Add greeting.txt"},
        {"do": "run", "command": "git add -A && git commit -qm 'Add greeting'"}
    ]]});
    let review = json!({"runs": [[{"do": "signal", "args": ["verdict", "ready"]}]]});
    let scenarios = [
        ("plan", plan),
        ("implement", implement),
        ("review", review),
        ("pr", pr_scenario()),
    ];
    let (world, b) = ada_signed_in(
        "the_board_and_inbox_follow_a_task_live_without_a_reload",
        &scenarios,
        &["--merge-poll-ms", "200"],
    )
    .await;

    // The board is open before the task exists.
    b.goto("/projects/app").await;
    b.wait_for("section.column[data-column=\"planning\"]").await;
    mark_document(&b).await;
    let id = world.new_task("Live greeting", true).await;
    b.wait_for(&format!("{} span.live", card_in("planning", id)))
        .await;
    b.screen("01-board-planning").await;
    std::fs::write(&go_plan, "go").unwrap();
    b.wait_for(&card_in("plan-review", id)).await;
    assert!(!b.exists(&card_in("planning", id)).await);
    assert_same_document(&b, "the board: planning to plan review").await;
    b.snap("02-board-plan-review").await;

    // The inbox: the plan waits; changes requested elsewhere take it away while the planner
    // works again.
    b.goto("/").await;
    b.wait_for(&inbox_item("plan", id)).await;
    mark_document(&b).await;
    let (status, body) = world
        .action(
            id,
            "request-changes",
            json!({"feedback": "Greeting first."}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    b.wait_gone(&inbox_item("plan", id)).await;

    // The dashboard, with the planner at work.
    let row = format!("section#running tr[data-task=\"{id}\"]");
    b.wait_for(&format!("{row} span.elapsed")).await;
    let detail = world.detail(id).await;
    let runs = detail["runs"].as_array().unwrap();
    let live = runs.last().unwrap();
    assert_eq!(live["stage"], "plan", "{detail:#}");
    let cell = |n: usize| format!("{row} td:nth-child({n})");
    assert!(b.text(&cell(1)).await.contains("Live greeting"));
    assert!(b.text(&cell(1)).await.contains("app"));
    assert_eq!(b.text(&cell(2)).await, "plan");
    let agent = b.text(&cell(3)).await;
    let harness = live["harness"].as_str().unwrap();
    assert!(
        agent.contains(harness),
        "the agent cell {agent:?} names {harness}"
    );
    if let Some(model) = live["model"].as_str() {
        assert!(
            agent.contains(model),
            "the agent cell {agent:?} names {model}"
        );
    }
    let elapsed = format!("{} span.elapsed", cell(4));
    wait_ticking(&b, &elapsed).await;
    // The last activity follows the agent's transcript: its echo of the feedback, then (with
    // no other change to the task) a later thought.
    let last_activity = format!("{} time[data-ms]", cell(5));
    b.wait_for(&last_activity).await;
    // Read in the page (the region may be swapped by a refresh between finding and reading).
    let shown_ms = || async {
        b.js(
            "const t = document.querySelector(arguments[0]); return t ? Number(t.dataset.ms) : null",
            vec![json!(last_activity)],
        )
        .await
        .as_u64()
    };
    let echoed = shown_ms().await.expect("the last activity has a time");
    // A keyboard user on the row's task link keeps their place while the panel follows the
    // agent (the region's content is swapped, the focus moves to the same link in it).
    let link = format!("{} a[href=\"/tasks/{id}\"]", cell(1));
    b.js(
        "document.querySelector(arguments[0]).focus()",
        vec![json!(link)],
    )
    .await;
    std::fs::write(&go_think, "go").unwrap();
    let later = testkit::wait_until(
        "the last activity to move to the agent's thought",
        browser::UI_DEADLINE,
        || async { shown_ms().await.filter(|ms| *ms > echoed) },
    )
    .await;
    assert!(later.is_ok(), "{later:?}");
    let focus = b
        .js(
            "const a = document.activeElement;
             return [a === document.querySelector(arguments[0]), a.getAttribute('href')]",
            vec![json!(link)],
        )
        .await;
    assert_eq!(
        focus,
        json!([true, format!("/tasks/{id}")]),
        "the focus after the swap"
    );
    // Usage today, as the engine's runs say (every run of the test is today's): the page and the
    // API are read again until they agree (a run's usage may be recorded between the two reads).
    let agreed = testkit::wait_until(
        "the usage shown to match the runs' usage",
        browser::UI_DEADLINE,
        || {
            let (b, world) = (&b, &world);
            async move {
                let detail = world.detail(id).await;
                let runs = detail["runs"].as_array()?;
                let sum = |field: &str| -> u64 {
                    runs.iter().map(|r| r[field].as_u64().unwrap_or(0)).sum()
                };
                let want = json!([
                    runs.len().to_string(),
                    sum("input_tokens").to_string(),
                    sum("output_tokens").to_string()
                ]);
                let shown = b
                    .js(
                        "return [...document.querySelectorAll('section#usage dd')]
                           .slice(0, 3).map(d => d.textContent.trim())",
                        vec![],
                    )
                    .await;
                (shown == want).then_some(shown)
            }
        },
    )
    .await;
    assert!(agreed.is_ok(), "{agreed:?}");
    b.wait_text("section#activity", "Live greeting").await;
    // On a phone the dashboard fits the screen (its table scrolls inside its panel).
    b.set_size(390, 844).await;
    let overflowing = b
        .js(
            "return [...document.querySelectorAll('main section.panel')]
               .filter(p => p.getBoundingClientRect().right > window.innerWidth)
               .map(p => p.id)",
            vec![],
        )
        .await;
    assert_eq!(overflowing, json!([]), "panels wider than a phone's screen");
    b.screen("03-inbox-agent-at-work").await;

    // The revised plan waits again: the item comes back, the agent leaves the dashboard.
    std::fs::write(&go_revise, "go").unwrap();
    b.wait_for(&inbox_item("plan", id)).await;
    b.wait_gone(&row).await;
    assert_same_document(&b, "the inbox: the revised plan").await;
    b.snap("04-inbox-plan-again").await;
    let (status, body) = world.action(id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    b.wait_gone(&inbox_item("plan", id)).await;
    assert_same_document(&b, "the inbox: the plan approved elsewhere").await;
    b.snap("05-inbox-approved").await;

    // The board again: building, then the pull request, the merge and Done.
    b.goto("/projects/app").await;
    b.wait_for(&format!("{} span.live", card_in("building", id)))
        .await;
    mark_document(&b).await;
    b.snap("06-board-building").await;
    std::fs::write(&go_build, "go").unwrap();
    b.wait_for(&format!("{} .card-meta", card_in("awaiting-merge", id)))
        .await;
    assert!(!b.exists(&card_in("building", id)).await);
    b.wait_text(&card_in("awaiting-merge", id), "runs").await;
    assert!(
        b.exists(&format!(
            "{} .card-pr, {} .card-meta span.muted",
            card_in("awaiting-merge", id),
            card_in("awaiting-merge", id)
        ))
        .await,
        "the card names its pull request"
    );
    let (status, body) = world.action(id, "merge", json!({})).await;
    assert_eq!(status, 200, "{body}");
    b.wait_for(&format!("{}[data-state=\"done\"]", card_in("done", id)))
        .await;
    assert_eq!(
        b.count(&format!("article.card[data-task=\"{id}\"]")).await,
        1,
        "one card, in one column"
    );
    assert_same_document(&b, "the board: building to done").await;
    b.screen("07-board-done").await;
}

/// A task blocked by a crashing planner is in the inbox with its reason and one action suited
/// to it (run the plan again: what the state machine allows); its page says why too. Clicking
/// the inbox's action unblocks it: the blocked item leaves and the plan it then writes arrives.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn a_blocked_task_shows_why_and_the_one_action_that_unblocks_it() {
    let crash = json!({"runs": [[
        {"do": "message", "text": "Starting."},
        {"do": "crash", "code": 3, "stderr": "the agent fell over"}
    ]]});
    let (world, b) = ada_signed_in(
        "a_blocked_task_shows_why_and_the_one_action_that_unblocks_it",
        &[("plan", crash)],
        &[],
    )
    .await;
    let id = world.new_task("Falls over", true).await;
    let detail = world.wait_state(id, "blocked").await;
    assert_eq!(detail["task"]["state"]["reason"]["code"], "run_failed");
    assert!(
        detail["actions"]
            .as_array()
            .unwrap()
            .contains(&json!({"action": "resume"})),
        "{detail:#}"
    );

    let item = inbox_item("blocked", id);
    b.goto("/").await;
    b.wait_for(&item).await;
    let reason = b.text(&format!("{item} .reason")).await;
    assert!(
        reason.starts_with("run_failed: the agent crashed"),
        "{reason}"
    );
    assert_eq!(b.count(&format!("{item} .unblock")).await, 1, "one action");
    assert_eq!(
        b.text(&format!("{item} button.unblock")).await,
        "Run plan again"
    );
    b.screen("01-inbox-blocked").await;

    b.goto(&format!("/tasks/{id}")).await;
    wait_task_state(&b, "blocked").await;
    b.wait_text("#blocked h2", "run_failed").await;
    b.wait_text("#blocked", "the agent crashed").await;
    b.wait_text("#blocked", "the agent fell over").await;
    b.wait_for("button#resume").await;
    b.screen("02-task-blocked").await;

    // Whatever made it fail is fixed (the planner plays a good plan now); the inbox's action.
    let steps = plan_scenario()["runs"][0].clone();
    write_scenarios(
        &world.scenarios,
        &[("plan", json!({"runs": [{"turns": [steps.clone(), steps]}]}))],
    );
    b.goto("/").await;
    b.wait_for(&item).await;
    mark_document(&b).await;
    b.click(&format!("{item} button.unblock")).await;
    b.wait_gone(&item).await;
    b.wait_for(&inbox_item("plan", id)).await;
    assert_same_document(&b, "the inbox after unblocking").await;
    world.wait_state(id, "plan_gate").await;
    b.snap("03-inbox-unblocked").await;
}

/// The task page's finer points in the browser: the new-task dialog's preview renders markdown
/// (a task list, bold) and drops a script; a running tool shows its own elapsed time, ticking;
/// thinking and tool output are folded and unfold; "Request changes" at the gate sends the
/// planner back and the revised plan returns to the gate; "Re-run stage" is offered only when
/// the state machine allows it (not while an agent runs; only the stages it accepts) and runs
/// the stage again.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn the_task_page_folds_ticks_revises_and_reruns() {
    let go = release_file("details-go");
    let todo =
        json!({"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n"});
    let again = json!([
        {"do": "message", "text": "Planning again from the start."},
        todo,
        {"do": "signal", "args": ["plan-ready"]}
    ]);
    let plan = json!({"runs": [
        [
            {"do": "thinking", "text": "Weighing the request carefully."},
            {"do": "run", "command": "echo tool-output-line"},
            wait_for_file(&go),
            todo,
            {"do": "signal", "args": ["plan-ready"]}
        ],
        // The revision continues the session (its second turn); a re-run may continue it too.
        {"turns": [
            [{"do": "fail", "error": "the revision continues the session"}],
            [
                {"do": "echo_input"},
                {"do": "doc_section", "heading": "Overview", "body": "Revised: greeting first."},
                {"do": "signal", "args": ["plan-ready"]}
            ],
            again
        ]},
        {"turns": [again, again, again]}
    ]});
    let (world, b) = ada_signed_in(
        "the_task_page_folds_ticks_revises_and_reruns",
        &[("plan", plan)],
        &[],
    )
    .await;

    // The new-task dialog's preview: rendered and sanitized.
    b.goto("/projects/app").await;
    b.click("button#new-task").await;
    b.wait_for("dialog#new-task-dialog[open]").await;
    b.fill("form#new-task input[name=title]", "Previewed").await;
    b.fill(
        "form#new-task textarea[name=body]",
        "Please:\n\n- [ ] greet\n- [x] wave\n\n**bold move** \
         <script>window.__pwned='preview'</script> \
         <a href=\"javascript:window.__pwned='preview'\">raw link</a>",
    )
    .await;
    b.click("dialog#new-task-dialog details summary").await;
    let preview = "#task-body-preview";
    b.wait_text(&format!("{preview} strong"), "bold move").await;
    // Task-list items read as ☐/☑ text (markdown.rs), not as unlabelled checkboxes.
    let items = b
        .js(
            "return [...document.querySelectorAll(arguments[0] + ' li')].map(li => li.textContent.trim())",
            vec![json!(preview)],
        )
        .await;
    assert_eq!(items, json!(["☐ greet", "☑ wave"]), "the task list");
    assert_eq!(b.count(&format!("{preview} script")).await, 0);
    assert_eq!(
        b.count(&format!("{preview} a[href^=\"javascript:\" i]"))
            .await,
        0
    );
    assert_eq!(
        b.js("return window.__pwned === undefined", vec![]).await,
        json!(true)
    );
    b.screen("01-new-task-preview").await;
    let id = create_from_dialog(&b).await;

    // A running tool: its own elapsed time ticks. Nothing may be re-run while an agent works.
    let running = "#transcript li.ev.tool.running span.elapsed";
    b.wait_for(running).await;
    mark_document(&b).await;
    wait_ticking(&b, running).await;
    wait_task_state(&b, "running").await;
    assert!(
        !b.exists("form#rerun").await,
        "no re-run while the planner runs"
    );
    let detail = world.detail(id).await;
    assert!(
        !detail["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "run"),
        "{detail:#}"
    );

    // Thinking and a finished tool's output are folded, and unfold.
    let thinking = "#transcript li.ev.thinking details";
    let tool = "#transcript li.ev.tool.ok:has(pre.out) details";
    for css in [thinking, tool] {
        b.wait_for(css).await;
        assert_eq!(
            b.js(
                "const d = document.querySelector(arguments[0]);
                 return [d.open, d.querySelector('pre.out').checkVisibility()]",
                vec![json!(css)]
            )
            .await,
            json!([false, false]),
            "{css} is folded"
        );
    }
    b.screen("02-task-tool-running").await;
    b.click(&format!("{thinking} summary")).await;
    b.click(&format!("{tool} summary")).await;
    for css in [thinking, tool] {
        b.wait_js(
            &format!("{css} to unfold"),
            "const d = document.querySelector(arguments[0]);
             return d.open && d.querySelector('pre.out').checkVisibility()",
            vec![json!(css)],
        )
        .await;
    }
    b.wait_text(
        &format!("{thinking} pre.out"),
        "Weighing the request carefully.",
    )
    .await;
    b.wait_text(&format!("{tool} pre.out"), "tool-output-line")
        .await;
    b.snap("03-task-unfolded").await;

    // Request changes at the gate: the planner revises, the plan returns to the gate.
    std::fs::write(&go, "go").unwrap();
    wait_task_state(&b, "plan_gate").await;
    b.fill(
        "form#request-changes textarea[name=feedback]",
        "Greeting first, please.",
    )
    .await;
    b.screen("04-task-request-changes").await;
    b.click("form#request-changes [type=submit]").await;
    b.wait_text("#doc", "Revised: greeting first.").await;
    wait_task_state(&b, "plan_gate").await;
    b.wait_text("#transcript", "Greeting first, please.").await;
    assert_eq!(
        b.count("ol#timeline > li.run[data-stage=\"plan\"]").await,
        2
    );
    assert_same_document(&b, "the plan revised").await;
    b.screen("05-task-revised").await;

    // Re-run stage: exactly the stages the state machine accepts now.
    let detail = world.detail(id).await;
    let allowed: Vec<Value> = detail["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "run")
        .map(|a| a["stage"].clone())
        .collect();
    let offered = b
        .js(
            "return [...document.querySelectorAll('form#rerun select[name=stage] option')].map(o => o.value)",
            vec![],
        )
        .await;
    assert_eq!(offered, json!(allowed), "the re-run choices");
    for refused in ["review", "pr"] {
        assert!(!allowed.contains(&json!(refused)), "{detail:#}");
    }
    b.js(
        "const s = document.querySelector('form#rerun select[name=stage]'); s.value = 'plan';",
        vec![],
    )
    .await;
    b.click("form#rerun button[type=submit]").await;
    b.wait_text("#transcript", "Planning again from the start.")
        .await;
    b.wait_js(
        "a third plan run on the timeline",
        "return document.querySelectorAll('ol#timeline > li.run[data-stage=\"plan\"]').length === 3",
        vec![],
    )
    .await;
    wait_task_state(&b, "plan_gate").await;
    assert_eq!(world.detail(id).await["runs"].as_array().unwrap().len(), 3);
    b.screen("06-task-rerun").await;
}

/// The keyboard: `g p` and `g i` go to the projects and the inbox, `n` opens the new-task dialog
/// on a board, `/` puts the cursor in the page's first text field (the feedback box at the plan
/// gate), and Tab reaches the Approve button, which Enter presses.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn the_keyboard_navigates_opens_the_dialog_and_approves() {
    use fantoccini::key::Key;
    let (world, b) = ada_signed_in(
        "the_keyboard_navigates_opens_the_dialog_and_approves",
        &[("plan", plan_scenario())],
        &[],
    )
    .await;
    let id = world.new_task("Keyboard", true).await;
    world.wait_state(id, "plan_gate").await;
    let focused = |css: &'static str| {
        let b = &b;
        async move {
            b.wait_js(
                &format!("the focus on `{css}`"),
                "return document.activeElement !== null && document.activeElement.matches(arguments[0])",
                vec![json!(css)],
            )
            .await;
        }
    };

    b.press(&['g', 'p']).await;
    b.wait_path("/projects").await;
    b.wait_for("ul#projects").await;
    b.screen("01-projects").await;
    b.goto("/projects/app").await;
    b.wait_for("section.column").await;
    b.press(&['n']).await;
    b.wait_for("dialog#new-task-dialog[open]").await;
    b.screen("02-board-new-task").await;
    b.press(&[Key::Escape.into()]).await;
    b.wait_gone("dialog#new-task-dialog[open]").await;
    b.press(&['g', 'i']).await;
    b.wait_path("/").await;
    b.wait_for(&inbox_item("plan", id)).await;
    b.snap("03-inbox").await;

    b.goto(&format!("/tasks/{id}")).await;
    wait_task_state(&b, "plan_gate").await;
    b.press(&['/']).await;
    focused("form#request-changes textarea[name=feedback]").await;
    // Typed into the field, `g i` is text, not a shortcut.
    b.press(&['g', 'i']).await;
    assert_eq!(
        b.js("return document.activeElement.value", vec![]).await,
        json!("gi")
    );
    assert_eq!(b.path().await, format!("/tasks/{id}"));
    b.js(
        "document.activeElement.value = ''; document.activeElement.blur()",
        vec![],
    )
    .await;
    b.screen("04-task-plan-gate").await;
    // From the top of the page, Tab until the Approve button has the focus.
    b.js("document.body.focus(); window.scrollTo(0, 0)", vec![])
        .await;
    let approve = "form#approve button[type=submit]";
    let mut tabs = 0;
    while b
        .js(
            "return document.activeElement !== null && document.activeElement.matches(arguments[0])",
            vec![json!(approve)],
        )
        .await
        != json!(true)
    {
        tabs += 1;
        assert!(tabs <= 40, "Tab never reached the Approve button");
        b.press(&[Key::Tab.into()]).await;
    }
    b.press(&[Key::Enter.into()]).await;
    wait_task_state_left(&b, "plan_gate").await;
    assert_ne!(
        world.detail(id).await["task"]["state"]["state"],
        "plan_gate"
    );
    b.snap("05-task-approved").await;
}

/// `atelier demo --ui` serves the UI on a free loopback port and prints where and how to sign
/// in: signed in with what it printed, the browser shows the demo task's page; Ctrl-C (SIGINT)
/// ends it and it leaves nothing behind.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn the_demo_ui_serves_the_demo_task_and_prints_how_to_sign_in() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut demo = tokio::process::Command::new(BIN)
        .env("TMPDIR", &tmp)
        .env("ATELIER_DATA_DIR", dir.path().join("unused"))
        .args(["demo", "--ui", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    // `▶ open http://127.0.0.1:PORT/tasks/N and sign in as `demo` with the password P`
    let (task_url, login, password) = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("▶ open ") {
                let (url, rest) = rest.split_once(" and sign in as `").unwrap();
                let (login, rest) = rest.split_once('`').unwrap();
                let password = rest.rsplit(' ').next().unwrap();
                return (url.to_string(), login.to_string(), password.to_string());
            }
        }
        panic!("the demo ended without printing where to open");
    })
    .await
    .expect("the demo printed its address within the deadline");
    // Keep reading its output so it never blocks on a full pipe.
    let reader = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    });
    let url = reqwest::Url::parse(&task_url).unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.1"), "{task_url}");
    let base = format!("http://127.0.0.1:{}", url.port().unwrap());
    let id = task_id_of(url.path()).unwrap_or_else(|| panic!("a task page: {task_url}"));

    let b = Browser::start(
        "the_demo_ui_serves_the_demo_task_and_prints_how_to_sign_in",
        &base,
    )
    .await;
    log_in_with(&b, &login, &password).await;
    b.goto(url.path()).await;
    b.wait_for("#task-state").await;
    b.wait_text("h1", "Add a --name option to greet.sh").await;
    b.wait_text("p.crumbs", "greeter").await;
    assert_eq!(task_id_of(&b.path().await), Some(id));
    b.screen("01-demo-task").await;
    drop(b);

    let pid = demo.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(DEADLINE, demo.wait())
        .await
        .expect("the demo ended within the deadline after Ctrl-C")
        .unwrap();
    let rest = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the demo's output ended within the deadline after its exit")
        .unwrap();
    assert!(
        exit.success(),
        "{exit}; its output after the address: {rest:#?}"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the demo left files behind"
    );
}

/// A project's own prompt on its settings page, as its owner sees it: an unknown variable is
/// refused beside its field, naming the prompt, its line and the variable; a good text is saved
/// into the project's settings and shown as the project's own.
#[tokio::test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver and axe-core: run scripts/test (it installs them and \
              sets ATELIER_CHROMEDRIVER and ATELIER_AXE_JS)"
)]
async fn a_project_prompt_with_an_unknown_variable_is_refused_beside_its_field() {
    let world = World::start(&[("plan", plan_scenario())], &[]).await;
    create_user(&world, "olive", true).await;
    add_member(&world, "app", "olive", "owner").await;
    let b = Browser::start(
        "a_project_prompt_with_an_unknown_variable_is_refused_beside_its_field",
        world.server.url(),
    )
    .await;
    log_in(&b, "olive").await;
    b.goto("/projects/app/settings").await;
    b.wait_for("form#project-prompt-review").await;
    b.js(
        "document.querySelector('#project-prompt-review').closest('details').open = true;",
        vec![],
    )
    .await;
    b.screen("01-project-prompts").await;
    b.fill(
        "#project-prompt-text-review",
        "Review with care.\nThen {{titel}}.",
    )
    .await;
    b.click("form#project-prompt-review button[type=submit]")
        .await;
    b.wait_text("form#project-prompt-review .form-error", "unknown variable")
        .await;
    let error = b.text("form#project-prompt-review .form-error").await;
    assert!(
        error.contains("prompts.review, line 2") && error.contains("{{titel}}"),
        "{error}"
    );
    b.expect_failed_load("/api/projects/app/settings", "400")
        .await;
    b.snap("02-refused-inline").await;
    b.fill("#project-prompt-text-review", "Review {{title}} with care.")
        .await;
    b.click("form#project-prompt-review button[type=submit]")
        .await;
    b.wait_text("#prompts", "this project's").await;
    let settings = world.server.get("/api/projects").await.unwrap()[0]["settings"].clone();
    assert_eq!(
        settings["prompts"],
        json!({"review": "Review {{title}} with care."})
    );
    b.screen("03-saved").await;
}
