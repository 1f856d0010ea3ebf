//! Tests of sandboxed agent processes against the real bubblewrap (`scripts/test` installs it
//! when missing).

use super::*;
use crate::sandbox::{Mounts, Sandbox};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

fn sandbox() -> Sandbox {
    Sandbox::probe(Path::new("bwrap"))
        .unwrap_or_else(|e| panic!("these tests need a working bubblewrap: {e}"))
}

fn sh(script: &str, cwd: &Path) -> ProcessSpec {
    ProcessSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: cwd.to_path_buf(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        stdin: None,
        stdin_open: false,
    }
}

async fn output(p: &mut AgentProcess) -> String {
    let mut out = String::new();
    p.take_stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    out
}

/// Mounts with `dir` (the agent's working directory) writable.
fn own(dir: &Path) -> Mounts {
    Mounts {
        read_only: Vec::new(),
        writable: vec![dir.to_path_buf()],
    }
}

async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test]
async fn a_sandboxed_agent_sees_its_mounts_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let (work, shared, secret) = (root.join("work"), root.join("shared"), root.join("secret"));
    for d in [&work, &shared, &secret] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(shared.join("readme"), "shared\n").unwrap();
    std::fs::write(secret.join("token"), "hunter2\n").unwrap();
    let mounts = Mounts {
        read_only: vec![shared.clone()],
        writable: vec![work.clone()],
    };
    let private = format!("private-{}-{}", std::process::id(), line!());
    let script = format!(
        "echo made > {work}/out && echo wrote-work; \
         cat {shared}/readme; \
         echo x > {shared}/new 2>/dev/null || echo shared-is-read-only; \
         cat {secret}/token 2>/dev/null || echo no-secret; \
         echo t > /tmp/{private} && echo tmp-writable; \
         grep CapEff /proc/self/status; \
         ls /proc | grep -c '^[0-9]'",
        work = work.display(),
        shared = shared.display(),
        secret = secret.display(),
        private = private,
    );
    let mut p = AgentProcess::spawn_sandboxed(&sh(&script, &work), &sandbox(), &mounts).unwrap();
    assert!(p.is_sandboxed());
    let out = output(&mut p).await;
    assert!(p.wait().await.unwrap().success(), "{}", p.stderr_tail());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "wrote-work",
            "shared",
            "shared-is-read-only",
            "no-secret",
            "tmp-writable",
            "CapEff:\t0000000000000000"
        ],
        "{out}"
    );
    // Its own PID namespace: only the sandbox's few processes are visible.
    let visible: usize = lines[6].parse().unwrap();
    assert!(visible <= 6, "{visible} processes visible: {out}");
    assert_eq!(std::fs::read_to_string(work.join("out")).unwrap(), "made\n");
    assert!(!shared.join("new").exists());
    assert!(
        !Path::new("/tmp").join(&private).exists(),
        "/tmp is not private"
    );
}

/// The pid (outside the sandbox) of the process whose command line contains `needle`.
fn find_by_cmdline(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            }) && is_alive(*pid)
        })
}

#[tokio::test]
async fn a_detached_escapee_ends_with_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("escapee-{}-{}", std::process::id(), line!());
    // `exec -a` names the sleeper so it can be found in /proc from outside.
    let script = format!(
        "(env -i setsid sh -c 'exec -a {marker} sleep 300' &) ; \
         while ! pgrep -f {marker} >/dev/null; do :; done; echo detached"
    );
    let mut p =
        AgentProcess::spawn_sandboxed(&sh(&script, dir.path()), &sandbox(), &own(dir.path()))
            .unwrap();
    assert_eq!(output(&mut p).await, "detached\n");
    assert!(p.wait().await.unwrap().success(), "{}", p.stderr_tail());
    assert!(
        eventually(Duration::from_secs(5), || find_by_cmdline(&marker)
            .is_none())
        .await,
        "the detached process outlived its run"
    );
}

#[tokio::test]
async fn kill_all_ends_the_agent_and_its_escapees() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("escapee-{}-{}", std::process::id(), line!());
    let script =
        format!("(setsid sh -c 'exec -a {marker} sleep 300' &) ; echo ready; exec sleep 300");
    let mut p =
        AgentProcess::spawn_sandboxed(&sh(&script, dir.path()), &sandbox(), &own(dir.path()))
            .unwrap();
    let mut stdout = p.take_stdout().unwrap();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || find_by_cmdline(&marker)
            .is_some())
        .await
    );
    assert!(p.kill_all().await >= 2);
    p.wait().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || find_by_cmdline(&marker)
            .is_none())
        .await,
        "an escapee outlived the kill"
    );
}

#[tokio::test]
async fn an_interrupt_reaches_the_agent_and_lets_it_finish_its_turn() {
    let dir = tempfile::tempdir().unwrap();
    let script = "trap 'echo interrupted; exit 0' INT; echo ready; while :; do sleep 0.05; done";
    let mut p =
        AgentProcess::spawn_sandboxed(&sh(script, dir.path()), &sandbox(), &own(dir.path()))
            .unwrap();
    let mut stdout = p.take_stdout().unwrap();
    let mut ready = [0u8; 6];
    stdout.read_exact(&mut ready).await.unwrap();
    p.interrupt(&crate::Interrupt::Signal(libc::SIGINT))
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "interrupted\n");
    assert!(p.wait().await.unwrap().success(), "{}", p.stderr_tail());
}
