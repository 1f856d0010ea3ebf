//! Tests of the start/stop protocol against a fake server: a shell script that speaks the same
//! protocol (prints `Atelier listening on <url>`, writes `server.json`), backed by a tiny HTTP
//! responder on 127.0.0.1:0 that echoes what it received.
//!
//! The fake runs as `/bin/sh serve …` with the script saved as `<data_dir>/serve`: `start` runs
//! `<bin> serve …` in the data dir, so `/bin/sh` reads the script from there. Reading a script
//! instead of executing a freshly written file avoids `ETXTBSY` races with other test threads
//! that fork while the file is open for writing.

use super::*;
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SH: &str = "/bin/sh";
/// The signal numbers are the same on every platform these tests run on (Linux).
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// Prints its arguments and an env var, writes server.json *after* the listening line (so start
/// must wait for it), then becomes `sleep` with the same pid.
const FAKE_SERVER: &str = r#"
echo "fake args: $*" >&2
echo "fake extra: ${FAKE_EXTRA:-unset} data: $ATELIER_DATA_DIR" >&2
echo "starting up"
echo "Atelier listening on $FAKE_URL"
printf '{"url":"%s","token":"secret-token","pid":%s}\n' "$FAKE_URL" "$$" > "$ATELIER_DATA_DIR/server.json"
exec sleep 600
"#;

fn write_script(data_dir: &Path, script: &str) {
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(data_dir.join("serve"), script).unwrap();
}

/// Answers every request with `{"method","path","auth","body"}`; a request to `/conflict` gets
/// a 409.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client closed early");
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = sock.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    break (
                        head,
                        String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string(),
                    );
                };
                let mut request_line = head.lines().next().unwrap().split(' ');
                let method = request_line.next().unwrap().to_string();
                let path = request_line.next().unwrap().to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_string();
                let status = if path == "/conflict" {
                    "409 Conflict"
                } else {
                    "200 OK"
                };
                let answer = json!({ "method": method, "path": path, "auth": auth, "body": body })
                    .to_string();
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                sock.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    url
}

#[tokio::test]
async fn starts_reads_server_json_and_talks_json_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_script(&data, FAKE_SERVER);
    // A stale file from an earlier server of the same data dir must not be taken for this one.
    std::fs::write(
        data.join("server.json"),
        r#"{"url":"http://old","token":"old","pid":1}"#,
    )
    .unwrap();
    let url = echo_server().await;

    let server = ServerProcess::start(
        Path::new(SH),
        &data,
        &["--demo"],
        &[("FAKE_URL", &url), ("FAKE_EXTRA", "passed")],
    )
    .await
    .unwrap();

    assert_eq!(server.url(), url);
    assert_eq!(server.token(), "secret-token");
    assert_eq!(
        server.info(),
        &ServerInfo {
            url: url.clone(),
            token: "secret-token".into(),
            pid: server.pid()
        }
    );
    assert_eq!(server.data_dir(), data);

    let logs = server.logs();
    assert!(logs.contains("[stdout] starting up\n"), "{logs}");
    assert!(logs.contains("[stdout] Atelier listening on "), "{logs}");

    let got = server.get("/api/tasks").await.unwrap();
    assert_eq!(
        got,
        json!({"method": "GET", "path": "/api/tasks", "auth": "Bearer secret-token", "body": ""})
    );
    let (status, got) = server
        .post("/api/tasks/1/approve", &json!({"a": 1}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        got,
        json!({
            "method": "POST",
            "path": "/api/tasks/1/approve",
            "auth": "Bearer secret-token",
            "body": "{\"a\":1}"
        })
    );
    let (status, _) = server.post("/conflict", &json!({})).await.unwrap();
    assert_eq!(status, 409, "refusals come back as a status, not an error");
    let err = server
        .client()
        .with_token("run-token")
        .get("/conflict")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("GET /conflict answered 409"),
        "{err}"
    );
}

#[tokio::test]
async fn passes_args_env_and_the_data_dir_and_stops_with_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_script(&data, FAKE_SERVER);
    let url = echo_server().await;
    let env = [("FAKE_URL", url.as_str()), ("FAKE_EXTRA", "passed")];
    let mut server = ServerProcess::start(Path::new(SH), &data, &["--demo", "-v"], &env)
        .await
        .unwrap();
    let status = server.stop().await.unwrap();
    let logs = server.logs();
    assert!(
        logs.contains("[stderr] fake args: --listen 127.0.0.1:0 --demo -v\n"),
        "{logs}"
    );
    let env_line = format!("[stderr] fake extra: passed data: {}\n", data.display());
    assert!(logs.contains(&env_line), "{logs}");
    assert_eq!(status.signal(), Some(SIGTERM), "{status}");
}

#[tokio::test]
async fn kill9_crashes_the_process_and_a_second_call_reports_the_same_exit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_script(&data, FAKE_SERVER);
    let url = echo_server().await;
    let mut server = ServerProcess::start(Path::new(SH), &data, &[], &[("FAKE_URL", &url)])
        .await
        .unwrap();
    let status = server.kill9().await.unwrap();
    assert_eq!(status.signal(), Some(SIGKILL), "{status}");
    let again = server.stop().await.unwrap();
    assert_eq!(again, status, "no signal is sent to a process that is gone");
}

#[tokio::test]
async fn a_server_that_exits_early_fails_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_script(&data, "echo 'error: address already in use' >&2\nexit 3\n");
    let err = ServerProcess::start(Path::new(SH), &data, &[], &[])
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("without printing `Atelier listening on <url>`"),
        "{msg}"
    );
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(
        msg.contains("[stderr] error: address already in use"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_missing_binary_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = ServerProcess::start(&dir.path().join("no-such-atelier"), dir.path(), &[], &[])
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("cargo build --workspace"), "{msg}");
}
