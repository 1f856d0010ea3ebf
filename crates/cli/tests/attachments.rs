//! A task's attachments through the API: stored and read back byte for byte, always served as a
//! download (never rendered), names checked, and what an agent plants in the attachments folder
//! (its doc folder is writable to it) never leads the server outside it: a symlink to the
//! server's `api-token`, or the folder itself replaced by a symlink, is neither listed nor served;
//! nor is the task doc replaced by such a link shown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use reqwest::Method;
use serde_json::json;
use support::*;

#[tokio::test]
async fn attachments_round_trip_as_downloads_and_never_follow_planted_symlinks() {
    let world = World::start(&full_pipeline(), &[]).await;
    let id = world.new_task("Attach things", true).await;
    let client = world.server.client();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    };
    let (status, view) = client
        .request(
            Method::PUT,
            &format!("/api/tasks/{id}/attachments/shot.png"),
            Some(&json!({"content_base64": encoded})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["size"], 3000);

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/api/tasks/{id}/attachments/shot.png", world.server.url());
    let response = http
        .get(&url)
        .bearer_auth(world.server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"shot.png\""
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);

    // Names are plain; a bad one is a 400 naming the rule.
    for bad in ["..%2Fapi-token", ".env", "a%20b"] {
        let (status, body) = client
            .request(
                Method::PUT,
                &format!("/api/tasks/{id}/attachments/{bad}"),
                Some(&json!({"content_base64": "eA=="})),
            )
            .await
            .unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // What an agent could plant in its doc folder: a symlink to the server's token.
    let detail = world.task_detail(id).await;
    let folder = std::path::Path::new(&detail.task.doc_path)
        .parent()
        .unwrap()
        .join("attachments");
    std::os::unix::fs::symlink(world.data.join("api-token"), folder.join("token.txt")).unwrap();
    let (_, list) = client
        .request(Method::GET, &format!("/api/tasks/{id}/attachments"), None)
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shot.png"], "a symlink is not an attachment");
    let (status, _) = client
        .request(
            Method::GET,
            &format!("/api/tasks/{id}/attachments/token.txt"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 404, "a planted symlink is not served");

    // The whole folder replaced by a symlink to the data directory.
    std::fs::rename(&folder, folder.with_extension("old")).unwrap();
    std::os::unix::fs::symlink(&world.data, &folder).unwrap();
    let (status, body) = client
        .request(
            Method::GET,
            &format!("/api/tasks/{id}/attachments/api-token"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(!body.to_string().contains(world.server.token()));
    let (status, _) = client
        .request(Method::GET, &format!("/api/tasks/{id}/attachments"), None)
        .await
        .unwrap();
    assert_eq!(status, 409);

    // The task doc replaced by a link to the server's token: not read, not shown.
    let doc = std::path::Path::new(&detail.task.doc_path);
    std::fs::remove_file(doc).unwrap();
    std::os::unix::fs::symlink(world.data.join("api-token"), doc).unwrap();
    let (status, shown) = client
        .request(Method::GET, &format!("/api/tasks/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(!shown.to_string().contains(world.server.token()), "{shown}");
    assert!(
        shown["doc"].as_str().unwrap().contains("not shown"),
        "{shown}"
    );
}
