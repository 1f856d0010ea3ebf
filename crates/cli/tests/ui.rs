//! The web UI in a real browser (headless Chromium through chromedriver, see
//! `support/browser.rs`) against the real `atelier serve` with scripted agents: a whole task from
//! first-run setup to Done, XSS payloads everywhere user or agent text is shown, a cross-origin
//! forgery attempt, and what a non-member sees.
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
use support::people::{add_member, create_user, password_of, remove_member, sign_in};
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

/// Signs `login` in through the login page; lands on the inbox.
async fn log_in(b: &Browser, login: &str) {
    b.goto("/login").await;
    b.fill("form#login input[name=login]", login).await;
    b.fill("form#login input[name=password]", &password_of(login))
        .await;
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
    b.click("form#new-task button[type=submit]").await;
    let path = b
        .wait_js(
            "the new task's page",
            "return /^\\/tasks\\/\\d+$/.test(location.pathname) ? location.pathname : null",
            vec![],
        )
        .await;
    let id = task_id_of(path.as_str().unwrap()).unwrap();
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
    b.wait_js(
        "the page to leave the plan gate",
        "const s = document.querySelector('#task-state');
         return s !== null && s.dataset.state !== 'plan_gate'",
        vec![],
    )
    .await;
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
