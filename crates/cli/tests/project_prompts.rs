//! A project's own prompts, end to end against the real `atelier serve` with scripted agents
//! that echo what they were told: the settings page shows each prompt's field (with the server's
//! text beside it) and the place its error goes; a text with an unknown variable is refused with
//! a 400 naming it; a project's text reaches its runs over the server's while another project
//! keeps the server's; and a task keeps the texts it was created with when the settings change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::people::{Session, add_member, create_user};
use support::*;

/// A scenario whose first run starts by echoing its prompt into the transcript.
fn echoing(mut scenario: Value) -> Value {
    scenario["runs"][0]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"do": "echo_input"}));
    scenario
}

/// Saves `app`'s settings with `prompts` laid over them, as a prompt's form does.
async fn save_prompts(owner: &Session, settings: &Value, prompts: Value) -> (u16, Value) {
    let mut body = settings.clone();
    body["prompts"] = prompts;
    owner
        .send(
            Method::PUT,
            "/api/projects/app/settings",
            Some(body),
            true,
            None,
        )
        .await
}

/// Saves `app`'s plan prompt and `implement` as its implement prompt.
async fn save_implement(owner: &Session, settings: &Value, implement: &str) {
    let prompts = json!({"plan": "PROJECT-PLAN for {{title}}.", "implement": implement});
    let (status, body) = save_prompts(owner, settings, prompts).await;
    assert_eq!(status, 200, "{body}");
}

/// The transcript of a task as one text (the agents' echoes of their prompts are in it).
async fn transcript(world: &World, id: i64) -> String {
    world
        .logs(id)
        .await
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_projects_prompt_reaches_its_runs_while_another_project_keeps_the_servers() {
    let scenarios = [
        ("plan", echoing(plan_scenario())),
        ("implement", echoing(committing_implement_scenario())),
        ("review", review_scenario()),
        ("pr", pr_scenario()),
    ];
    let world = World::start(&scenarios, &[]).await;
    world.add_project_from_scratch("other", json!({})).await;
    let admin = world.server.client();
    let (status, body) = admin
        .request(
            Method::PUT,
            "/api/prompts/plan.md",
            Some(&json!({"text": "SERVER-PLAN for {{title}}."})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    create_user(&world, "olive", true).await;
    add_member(&world, "app", "olive", "owner").await;
    let owner = Session::of(&world, "olive").await;

    // The settings page: a field per prompt, the server's text beside it, a place for its error.
    let page = owner.page("/projects/app/settings").await;
    let form = page
        .split(r#"<form id="project-prompt-plan""#)
        .nth(1)
        .and_then(|rest| rest.split("</form>").next())
        .unwrap_or_else(|| panic!("the plan prompt's form: {page}"));
    assert!(
        form.contains(r#"name="prompts.plan""#)
            && form.contains(r#"data-api="/api/projects/app/settings""#)
            && form.contains(r#"<p class="form-error" role="alert"></p>"#),
        "{form}"
    );
    assert!(
        page.contains(r#"<pre tabindex="0">SERVER-PLAN for {{title}}.</pre>"#),
        "the server's text in force is shown: {page}"
    );
    for key in ["implement", "review", "qa", "refine", "pr", "plan-template"] {
        assert!(page.contains(&format!(r#"name="prompts.{key}""#)), "{key}");
    }

    // A text with an unknown variable is refused, naming the prompt, its line and the variable.
    let settings = admin.get("/api/projects").await.unwrap()[0]["settings"].clone();
    let (status, body) = save_prompts(
        &owner,
        &settings,
        json!({"review": "Review with care.\nThen {{titel}}."}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "project settings: prompt template prompts.review, line 2: unknown variable \
             `{{titel}}` (known variables: task_id, title,"
        ),
        "{error}"
    );
    save_implement(&owner, &settings, "IMPLEMENT-FIRST for {{title}}.").await;
    let page = owner.page("/projects/app/settings").await;
    assert!(
        page.contains(">PROJECT-PLAN for {{title}}.</textarea>"),
        "the project's text is in its field: {page}"
    );

    let alpha = world.new_task("Alpha", true).await;
    let beta = world.new_task_in("other", "Beta", true, 0).await;
    world.wait_state(alpha, "plan_gate").await;
    world.wait_state(beta, "plan_gate").await;
    let told = transcript(&world, alpha).await;
    assert!(told.contains("PROJECT-PLAN for Alpha."), "{told}");
    assert!(!told.contains("SERVER-PLAN"), "{told}");
    let told = transcript(&world, beta).await;
    assert!(
        told.contains("SERVER-PLAN for Beta."),
        "another project keeps the server's: {told}"
    );
    assert!(!told.contains("PROJECT-PLAN"), "{told}");

    // The settings change while Alpha waits at the gate: Alpha keeps the texts it began with.
    save_implement(&owner, &settings, "IMPLEMENT-CHANGED for {{title}}.").await;
    let (status, body) = world.action(alpha, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_run(alpha, "implement", "completed").await;
    let told = transcript(&world, alpha).await;
    assert!(told.contains("IMPLEMENT-FIRST for Alpha."), "{told}");
    assert!(!told.contains("IMPLEMENT-CHANGED"), "{told}");
    // A task created now gets the new text.
    let gamma = world.new_task("Gamma", false).await;
    world.wait_run(gamma, "implement", "completed").await;
    let told = transcript(&world, gamma).await;
    assert!(told.contains("IMPLEMENT-CHANGED for Gamma."), "{told}");
}
