//! The live stream (Server-Sent Events) end to end through the real `atelier serve`: clients that
//! disconnect at random points (seeded) and resume with `Last-Event-ID` while scripted agents
//! keep writing receive every event exactly once, in order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::time::Duration;
use support::people::{add_member, create_user, remove_member, sign_in, token_of, update_user};
use support::sse::SseText;
use support::*;
use testkit::ServerProcess;

/// One Server-Sent Event as received.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    id: String,
    event: String,
    data: Value,
}

/// Parses the complete messages at the start of `buffer`, leaving a partial one in it.
fn take_messages(buffer: &mut String) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let (mut id, mut event, mut data) = (None, None, None);
        for line in block.lines() {
            if line.starts_with(':') || line.is_empty() {
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((line, ""));
            match field {
                "id" => id = Some(value.to_string()),
                "event" => event = Some(value.to_string()),
                "data" => data = Some(serde_json::from_str(value).unwrap()),
                other => panic!("unexpected field {other:?} in {block:?}"),
            }
        }
        if let (Some(id), Some(event), Some(data)) = (id, event, data) {
            out.push(Message { id, event, data });
        }
    }
    out
}

/// Reads `path` (an SSE stream) until a message with id `until` arrived, cutting the connection
/// after a random number of bytes each time and resuming with `Last-Event-ID`.
async fn follow_with_cuts(
    server: &ServerProcess,
    path: &str,
    seed: u64,
    mut until: tokio::sync::watch::Receiver<Option<String>>,
) -> (Vec<Message>, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = reqwest::Client::new();
    let mut received: Vec<Message> = Vec::new();
    let mut last_id: Option<String> = None;
    let mut connections = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never caught up"
        );
        let mut request = client
            .get(format!("{}{path}", server.url()))
            .bearer_auth(server.token());
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        connections += 1;
        // Cut this connection after this many bytes (anywhere, mid-message included).
        let mut budget: usize = rng.random_range(1..40_000);
        let mut buffer = String::new();
        loop {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk.unwrap(),
                // The target may be set while the stream is quiet, already received.
                _ = until.changed() => {
                    if target_seen(&until, &received) {
                        return (received, connections);
                    }
                    continue;
                }
            };
            let Some(chunk) = chunk else { break };
            let keep = chunk.len().min(budget);
            budget -= keep;
            buffer.push_str(std::str::from_utf8(&chunk[..keep]).unwrap());
            for message in take_messages(&mut buffer) {
                last_id = Some(message.id.clone());
                let done = until.borrow().as_deref() == Some(message.id.as_str());
                received.push(message);
                if done {
                    return (received, connections);
                }
            }
            if target_seen(&until, &received) {
                return (received, connections);
            }
            if budget == 0 {
                break; // drop the response: a disconnect
            }
        }
    }
}

fn target_seen(until: &tokio::sync::watch::Receiver<Option<String>>, received: &[Message]) -> bool {
    until
        .borrow()
        .as_ref()
        .is_some_and(|t| received.iter().any(|m| &m.id == t))
}

/// The stream's ids in order as the store holds them (task `Some` or everything after `after`).
fn expected_ids(world: &World, task: Option<i64>, after: i64) -> Vec<String> {
    let db = world.db();
    let mut stmt = db
        .prepare(
            "SELECT id, kind, seq_from, seq_to FROM activity
             WHERE id > ?1 AND (?2 IS NULL OR task_id = ?2) ORDER BY id",
        )
        .unwrap();
    let rows = stmt
        .query_map(rusqlite::params![after, task], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    let mut ids = Vec::new();
    for (id, kind, from, to) in rows {
        match (kind.as_str(), from, to) {
            ("transcript", Some(from), Some(to)) => {
                ids.extend((from..=to).map(|seq| format!("{id}-{seq}")));
            }
            _ => ids.push(id.to_string()),
        }
    }
    ids
}

/// A planner that talks a lot, pausing now and then so the stream is read while it writes.
fn chatty_plan(messages: usize) -> Value {
    let mut steps = Vec::new();
    for i in 0..messages {
        steps.push(json!({"do": "message", "text": format!("message {i} of the plan")}));
        if i % 100 == 99 {
            steps.push(json!({"do": "sleep", "ms": 15}));
        }
    }
    steps.push(json!({"do": "doc_section", "heading": "Overview", "body": "Add greeting and farewell files."}));
    steps.push(json!({"do": "doc_section", "heading": "To-Do List", "body": "- [ ] Add greeting.txt\n- [ ] Add farewell.txt\n"}));
    steps.push(json!({"do": "signal", "args": ["plan-ready"]}));
    json!({"runs": [steps]})
}

#[tokio::test]
async fn clients_cut_at_random_points_resume_with_last_event_id_and_miss_nothing() {
    let mut scenarios = full_pipeline();
    scenarios[0] = ("plan", chatty_plan(3000));
    let world = World::start(&scenarios, &["--merge-poll-ms", "200"]).await;

    // The global stream, from before the task exists: its `ready` message says where it starts.
    let (global_target, global_until) = tokio::sync::watch::channel(None);
    let mut first = reqwest::Client::new()
        .get(format!("{}/api/stream", world.server.url()))
        .bearer_auth(world.server.token())
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let ready = loop {
        let chunk = first.chunk().await.unwrap().unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        if let Some(message) = take_messages(&mut buffer).into_iter().next() {
            break message;
        }
    };
    drop(first);
    assert_eq!(ready.event, "ready");
    let start: i64 = ready.id.parse().unwrap();

    let id = world.new_task("Add greeting & farewell", true).await;
    let (task_target, task_until) = tokio::sync::watch::channel(None);
    let task_path = format!("/api/tasks/{id}/stream");
    let global_path = format!("/api/stream?after={start}");
    let (task_side, global_side, ()) = tokio::join!(
        follow_with_cuts(&world.server, &task_path, 7, task_until),
        follow_with_cuts(&world.server, &global_path, 11, global_until),
        async {
            world.wait_state(id, "plan_gate").await;
            let (status, body) = world.action(id, "approve", json!({})).await;
            assert_eq!(status, 200, "{body}");
            world.wait_state(id, "awaiting_merge").await;
            // Everything up to now, as the store holds it, is what each client must reach.
            let task_ids = expected_ids(&world, Some(id), 0);
            let global_ids = expected_ids(&world, None, start);
            task_target.send_replace(task_ids.last().cloned());
            global_target.send_replace(global_ids.last().cloned());
        }
    );

    for (name, (received, connections), task, after) in [
        ("task", task_side, Some(id), 0),
        ("global", global_side, None, start),
    ] {
        let expected = expected_ids(&world, task, after);
        let got: Vec<String> = received.iter().map(|m| m.id.clone()).collect();
        eprintln!(
            "{name}: {} messages over {connections} connections",
            received.len()
        );
        assert!(connections > 5, "{name}: only {connections} connections");
        assert_eq!(got.len(), expected.len().min(got.len()));
        assert_eq!(
            got,
            expected[..got.len()],
            "{name}: ids differ from the store's"
        );
        assert!(got.len() > 3000, "{name}: {} messages", got.len());
        // Every message of the task's transcript is there once, in order, as the log holds it.
        let transcript: Vec<(i64, i64)> = received
            .iter()
            .filter(|m| m.event == "transcript")
            .map(|m| {
                (
                    m.data["run"].as_i64().unwrap(),
                    m.data["seq"].as_i64().unwrap(),
                )
            })
            .collect();
        let logged: Vec<(i64, i64)> = world
            .logs(id)
            .await
            .iter()
            .filter(|item| item["item"] == "event")
            .map(|item| (item["run"].as_i64().unwrap(), item["seq"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            transcript, logged,
            "{name}: transcript differs from the log"
        );
        let texts: Vec<&str> = received
            .iter()
            .filter(|m| m.event == "transcript" && m.data["event"]["type"] == "message")
            .filter_map(|m| m.data["event"]["text"].as_str())
            .filter(|t| t.ends_with("of the plan"))
            .collect();
        let want: Vec<String> = (0..3000)
            .map(|i| format!("message {i} of the plan"))
            .collect();
        assert_eq!(texts, want, "{name}: the planner's messages");
        // Changes are there too: the task's states, its runs, its pull request.
        let states: Vec<&str> = received
            .iter()
            .filter(|m| m.event == "task")
            .filter_map(|m| m.data["state"]["state"].as_str())
            .collect();
        assert!(
            states.contains(&"plan_gate") && states.last() == Some(&"awaiting_merge"),
            "{name}: {states:?}"
        );
        assert!(
            received
                .iter()
                .any(|m| m.event == "run" && m.data["change"] == "started")
        );
        assert!(
            received
                .iter()
                .any(|m| m.event == "run" && m.data["change"] == "finished")
        );
        assert!(
            received
                .iter()
                .any(|m| m.event == "pull_request" && m.data["task"] == id)
        );
    }
}

#[tokio::test]
async fn a_stream_needs_the_api_token_and_a_well_formed_last_event_id() {
    let world = World::start(&full_pipeline(), &[]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/stream", world.server.url());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let bad = client
        .get(&url)
        .bearer_auth(world.server.token())
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("malformed event id"),
        "{body}"
    );
    let missing = client
        .get(format!("{}/api/tasks/999/stream", world.server.url()))
        .bearer_auth(world.server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// The message a user's stream of everything gets when what they see of projects changed.
const PROJECTS_CHANGED: &str = "event: projects\ndata: {}\n\n";

/// Access is checked again when it changes, not only when a stream opens: a member removed
/// from a project gets a `projects` message and then nothing more of its tasks (not even of a
/// task the stream had already shown), their stream of one of its tasks ends while a deleted
/// task they still see is announced; a promotion shows every project and a demotion hides them
/// again; the streams of a logout, a revoked token and a disabled account end.
#[tokio::test]
async fn a_member_removed_from_a_project_stops_seeing_it_on_open_streams() {
    let world = World::start(&full_pipeline(), &[]).await;
    let other = world.add_repo("other");
    world.add_project(&other, "other", json!({})).await;
    create_user(&world, "bob", true).await;
    add_member(&world, &world.project, "bob", "member").await;
    add_member(&world, "other", "bob", "member").await;
    let token = token_of(&world, "bob", "stream").await;
    let mut all = SseText::open(&world, "/api/stream", &token).await;
    let work = world.new_task("App work", true).await;
    let mut one = SseText::open(&world, &format!("/api/tasks/{work}/stream"), &token).await;
    let of = |task: i64| format!("\"task\":{task},");
    assert!(all.read_until(0, |t| t.contains(&of(work))).await);
    world.wait_state(work, "plan_gate").await;
    // A task of the other project bob follows, to be deleted after the access change below.
    let doomed = world.new_task_in("other", "Doomed", true, 0).await;
    let mut gone = SseText::open(&world, &format!("/api/tasks/{doomed}/stream"), &token).await;
    assert!(gone.read_until(0, |t| t.contains("event: caught-up")).await);
    world.wait_state(doomed, "plan_gate").await;

    remove_member(&world, &world.project, "bob").await;
    assert!(all.read_until(0, |t| t.contains(PROJECTS_CHANGED)).await);
    one.read_to_end().await;
    // The task bob still sees is deleted: his stream of it says so.
    let (status, body) = world
        .server
        .client()
        .request(
            reqwest::Method::DELETE,
            &format!("/api/tasks/{doomed}"),
            None,
        )
        .await
        .unwrap();
    assert!((200..300).contains(&status), "{status}: {body}");
    assert!(
        gone.read_until(0, |t| t.contains("\"change\":\"deleted\""))
            .await,
        "the deletion reaches the stream of the task: {}",
        gone.text
    );
    // Everything after the `projects` message was sent after the removal was heard.
    let from = all.text.find(PROJECTS_CHANGED).unwrap() + PROJECTS_CHANGED.len();
    let (status, body) = world.action(work, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let elsewhere = world.new_task_in("other", "Other work", true, 0).await;
    assert!(
        all.read_until(from, |t| t.contains(&of(elsewhere))).await,
        "bob still sees the project he belongs to"
    );
    assert!(
        !all.text[from..].contains(&of(work)),
        "nothing of the project bob left after he left: {}",
        &all.text[from..]
    );

    // Made an administrator, bob sees every project at once; and no longer when demoted.
    let from = all.text.len();
    update_user(&world, "bob", json!({"admin": true})).await;
    assert!(all.read_until(from, |t| t.contains(PROJECTS_CHANGED)).await);
    let seen = world.new_task("Seen by an administrator", true).await;
    assert!(all.read_until(from, |t| t.contains(&of(seen))).await);
    let mut seen_stream = SseText::open(&world, &format!("/api/tasks/{seen}/stream"), &token).await;
    let from = all.text.len();
    update_user(&world, "bob", json!({"admin": false})).await;
    seen_stream.read_to_end().await;
    assert!(all.read_until(from, |t| t.contains(PROJECTS_CHANGED)).await);

    // A logout ends the streams its session opened (the stream of the web UI).
    let (cookie, csrf) = sign_in(&world, "bob").await;
    let http = reqwest::Client::new();
    let mut session = SseText::open_in_session(&world, "/api/stream", &cookie).await;
    assert!(session.read_until(0, |t| t.contains("event: ready")).await);
    let status = http
        .post(format!("{}/api/logout", world.server.url()))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "logout: {status}");
    session.read_to_end().await;

    // A token revoked ends the streams it opened.
    let second = token_of(&world, "bob", "second").await;
    let mut revoked = SseText::open(&world, "/api/stream", &second).await;
    assert!(revoked.read_until(0, |t| t.contains("event: ready")).await);
    let tokens: Value = http
        .get(format!("{}/api/tokens", world.server.url()))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = tokens
        .as_array()
        .and_then(|all| all.iter().find(|t| t["name"] == "second"))
        .map(|t| t["id"].clone())
        .unwrap_or_else(|| panic!("bob's token `second`: {tokens}"));
    let status = http
        .delete(format!("{}/api/tokens/{id}", world.server.url()))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "revoking: {status}");
    revoked.read_to_end().await;

    // A disabled account's streams end.
    update_user(&world, "bob", json!({"disabled": true})).await;
    all.read_to_end().await;
}

/// The ids of a stream's messages read so far (messages without an id left out).
fn ids_in(text: &str) -> Vec<String> {
    let mut buffer = text.to_string();
    take_messages(&mut buffer)
        .into_iter()
        .map(|m| m.id)
        .collect()
}

/// A stream of everything without transcripts (what a board follows) gets every change of the
/// task and its runs, live and from the backlog, in order, and none of the agent's output; the
/// same stream with transcripts, opened at the same moment, gets that output too.
#[tokio::test]
async fn a_stream_without_transcripts_gets_every_change_and_no_agent_output() {
    let mut scenarios = full_pipeline();
    scenarios[0] = ("plan", chatty_plan(300));
    let world = World::start(&scenarios, &[]).await;
    let token = world.server.token().to_string();
    let mut changes = SseText::open(&world, "/api/stream?transcript=false", &token).await;
    let mut everything = SseText::open(&world, "/api/stream", &token).await;
    for stream in [&mut changes, &mut everything] {
        stream.read_until(0, |t| t.contains("event: ready")).await;
    }
    let ready = |stream: &SseText| -> i64 {
        let mut buffer = stream.text.clone();
        take_messages(&mut buffer)
            .into_iter()
            .find(|m| m.event == "ready")
            .unwrap()
            .id
            .parse()
            .unwrap()
    };
    let after = ready(&changes);
    assert_eq!(after, ready(&everything));

    let id = world.new_task("Greeting", true).await;
    world.wait_state(id, "plan_gate").await;
    let all = expected_ids(&world, None, after);
    let without: Vec<String> = all.iter().filter(|id| !id.contains('-')).cloned().collect();
    assert!(without.len() < all.len(), "the planner wrote a transcript");
    let (last_change, last) = (without.last().unwrap().clone(), all.last().unwrap().clone());
    let has = |id: String| move |t: &str| t.contains(&format!("id: {id}\n"));
    changes.read_until(0, has(last_change)).await;
    everything.read_until(0, has(last)).await;
    assert!(
        !changes.text.contains("event: transcript"),
        "{}",
        changes.text
    );
    let live: Vec<String> = ids_in(&changes.text).into_iter().skip(1).collect();
    assert_eq!(live, without, "the changes, live");
    let full: Vec<String> = ids_in(&everything.text).into_iter().skip(1).collect();
    assert_eq!(full, all, "everything, live");

    // From the backlog, resumed at the same point.
    let path = format!("/api/stream?transcript=false&after={after}");
    let mut resumed = SseText::open(&world, &path, &token).await;
    resumed
        .read_until(0, |t| t.contains("event: caught-up"))
        .await;
    assert!(!resumed.text.contains("event: transcript"));
    assert_eq!(
        ids_in(&resumed.text),
        without,
        "the changes, from the backlog"
    );
}
