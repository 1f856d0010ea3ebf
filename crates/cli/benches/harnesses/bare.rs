//! The same-run references of the `harnesses` bench: a CLI started bare (the command line
//! Atelier builds for it, without server or sandbox) against the bench's model simulator, with
//! the `boot` script: two shell calls (`true`, `git status --short`), then a message.

use super::{BIN, ms, scripted};
use crate::common::now_us;
use harness::{Harness, TurnRequest};
use serde_json::{Value, json};
use simulator::{RecordedRequest, Simulator};
use std::path::Path;
use std::time::Duration;

/// The bare CLI's start-up against the simulator, without server or sandbox.
pub struct Boot {
    /// Start → first model request (ms).
    pub first_request: f64,
    /// Last answer ended → process exit (ms).
    pub exit: f64,
    /// Each answer's end → the next model request (ms): the CLI's own steps (its shell tool).
    pub steps: Vec<f64>,
}

/// Each answer's end → the next request, over `requests` in order (ms).
fn steps(requests: &[RecordedRequest]) -> Vec<f64> {
    requests
        .windows(2)
        .map(|p| ms(p[1].received_at_us as i64 - p[0].finished_at_us.unwrap_or_default() as i64))
        .collect()
}

/// The turn request Atelier would build, for a bare start in `dir` (`dir/app`, `dir/home`).
fn bare_request(role: &Value, dir: &Path) -> TurnRequest {
    let atelier = Path::new(BIN).parent().unwrap();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    TurnRequest {
        stage: domain::Stage::Review,
        iteration: 0,
        turn: 0,
        prompt: "Atelier-Stage: boot #0\n\nSay hello.".into(),
        workdir: dir.join("app"),
        env: vec![
            (
                "PATH".into(),
                format!("{}:/usr/local/bin:/usr/bin:/bin", atelier.display()),
            ),
            ("HOME".into(), dir.join("home").display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
        ],
        model: role["model"].as_str().map(str::to_string),
        effort: None,
        resume_session: None,
        settings: role.clone(),
    }
}

fn bare_command(spec: &harness::process::ProcessSpec) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The boot script's requests received since `since`.
fn boot_requests(sim: &Simulator, since: i64) -> Vec<RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.received_at_us as i64 >= since && scripted(r, "boot"))
        .collect()
}

/// A one-shot start: spawn → first model request, last answer → exit.
pub async fn bare_boot(cli: &dyn Harness, role: &Value, sim: &Simulator, dir: &Path) -> Boot {
    let request = bare_request(role, dir);
    let spec = cli.command(&request).unwrap();
    cli.prepare(&request).unwrap();
    let started = now_us();
    let mut child = bare_command(&spec).spawn().unwrap();
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin
            .write_all(spec.stdin.as_deref().unwrap_or_default())
            .await
            .unwrap();
    }
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the bare CLI did not end within 120 s")
        .unwrap();
    let exited = now_us();
    let requests = boot_requests(sim, started);
    assert!(
        status.success() && !requests.is_empty(),
        "the bare CLI ({}) exited {status} after {} scripted requests",
        spec.program.display(),
        requests.len()
    );
    let last_end = requests
        .iter()
        .filter_map(|r| r.finished_at_us)
        .max()
        .unwrap() as i64;
    Boot {
        first_request: ms(requests[0].received_at_us as i64 - started),
        exit: ms(exited - last_end),
        steps: steps(&requests),
    }
}

/// CPU time (clock ticks) a process used so far.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The CPU time of `pid` and all its descendants: a bridge (Codex's, OpenCode's) idles while
/// the CLI it started boots, so the bridge alone would look idle too early.
fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let mut total = cpu_ticks(pid)?;
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                total += cpu_ticks(child).unwrap_or(0);
                queue.push(child);
            }
        }
    }
    Some(total)
}

/// A long-lived start, as a warm standby is: the process started with nothing on stdin and
/// left to boot until idle (the CPU time of its process tree unchanged for 0.5 s), then the prompt written: prompt
/// → first model request; last answer → exit (stdin closed once its turn ended, as the
/// supervisor does). `None` for a harness without a long-lived mode.
pub async fn bare_warm(
    cli: &dyn Harness,
    role: &Value,
    sim: &Simulator,
    dir: &Path,
) -> Option<Boot> {
    if !cli.long_lived() {
        return None;
    }
    let mut role = role.clone();
    role["session"] = json!("long-lived");
    let request = bare_request(&role, dir);
    let mut spec = cli.command(&request).unwrap();
    for (name, value) in cli.warm_env() {
        spec.env.retain(|(k, _)| *k != name);
        spec.env.push((name, value));
    }
    cli.prepare(&request).unwrap();
    let mut command = bare_command(&spec);
    command.stdout(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let pid = child.id().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut last, mut still) = (None, 0);
    while still < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bare long-lived CLI never went idle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = tree_cpu_ticks(pid);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    let written = now_us();
    {
        use tokio::io::AsyncWriteExt;
        let input = cli.next_turn(&request.prompt).unwrap();
        stdin.write_all(&input).await.unwrap();
        stdin.flush().await.unwrap();
    }
    let mut decoder = cli.decoder();
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if decoder
                .line(&line)
                .iter()
                .any(|e| matches!(e, domain::TranscriptEvent::TurnEnd { .. }))
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(ended, "the bare long-lived CLI did not end its turn");
    drop(stdin);
    let drain = async { while let Ok(Some(_)) = lines.next_line().await {} };
    let (_, status) = tokio::join!(drain, child.wait());
    let exited = now_us();
    let requests = boot_requests(sim, written);
    assert!(
        status.is_ok() && !requests.is_empty(),
        "the bare long-lived CLI: {status:?} after {} scripted requests",
        requests.len()
    );
    let last_end = requests
        .iter()
        .filter_map(|r| r.finished_at_us)
        .max()
        .unwrap() as i64;
    Some(Boot {
        first_request: ms(requests[0].received_at_us as i64 - written),
        exit: ms(exited - last_end),
        steps: steps(&requests),
    })
}
