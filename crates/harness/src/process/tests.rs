//! Tests of the process primitives against real processes (`sh`, `sleep`, `setsid`).

use super::*;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn sh(script: &str, env: &[(&str, &str)]) -> ProcessSpec {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("PATH".into(), PATH.into()));
    ProcessSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: "/".into(),
        env,
        stdin: None,
        stdin_open: false,
    }
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn read_stdout(p: &mut AgentProcess) -> String {
    let mut out = String::new();
    p.take_stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    out
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn unique_mark() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn kill_tree_reaches_detached_and_nested_descendants() {
    let script = "setsid sleep 300 & sh -c 'sleep 300; true' & sleep 300; true";
    let mut p = AgentProcess::spawn(&sh(script, &[])).unwrap();
    let root = p.pid();
    assert_eq!(read_stat(root).unwrap().pgrp, root as i32, "own group");

    let sleeps = |pids: &[u32]| pids.iter().filter(|&&d| comm(d) == "sleep").count();
    assert!(
        eventually(Duration::from_secs(10), || sleeps(&descendants(root)) == 3).await,
        "three sleeps: {:?}",
        descendants(root)
    );
    let before = descendants(root);
    assert!(before.iter().any(|&d| comm(d) == "sh"), "nested shell");
    let detached = before
        .iter()
        .filter_map(|&d| read_stat(d))
        .find(|s| s.session == s.pid as i32)
        .expect("the setsid sleep leads its own session");
    assert_ne!(detached.pgrp, root as i32);

    assert_eq!(kill_tree(root), before.len() + 1);
    let status = p.wait().await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(
        eventually(Duration::from_secs(10), || !before
            .iter()
            .any(|&d| is_alive(d)))
        .await,
        "survivors: {:?}",
        before.iter().filter(|&&d| is_alive(d)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn signal_tree_reaches_every_descendant() {
    let mut p = AgentProcess::spawn(&sh("sleep 300 & sleep 300; true", &[])).unwrap();
    let root = p.pid();
    assert!(eventually(Duration::from_secs(10), || descendants(root).len() == 2).await);
    let kids = descendants(root);
    assert_eq!(signal_tree(root, libc::SIGTERM), 3);
    assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGTERM));
    assert!(
        eventually(Duration::from_secs(10), || !kids
            .iter()
            .any(|&d| is_alive(d)))
        .await
    );
}

/// The first `n` lines the agent prints, as pids.
async fn pids_printed(p: &mut AgentProcess, n: usize) -> Vec<u32> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(p.take_stdout().unwrap()).lines();
    let mut pids = Vec::new();
    while pids.len() < n {
        let line = lines.next_line().await.unwrap().expect("a pid line");
        pids.push(line.trim().parse().unwrap());
    }
    pids
}

#[tokio::test]
async fn an_unconfined_agent_adopts_its_escapees_and_kill_all_ends_them() {
    // Double-forked (the subshell exits at once), in sessions of their own, one with an empty
    // environment: none is a descendant through its parents any more, nor in the agent's group.
    let script = "(env -i setsid sh -c 'echo $$; exec sleep 300' </dev/null &); \
                  (setsid sh -c 'echo $$; exec sleep 300' </dev/null &); \
                  exec sleep 300";
    let mut p = AgentProcess::spawn(&sh(script, &[])).unwrap();
    let root = p.pid();
    let escapees = pids_printed(&mut p, 2).await;
    for &pid in &escapees {
        assert_eq!(
            read_stat(pid).unwrap().session,
            pid as i32,
            "{pid} leads a session"
        );
        assert!(
            eventually(Duration::from_secs(10), || read_stat(pid)
                .is_some_and(|s| s.ppid == root))
            .await,
            "the agent, a subreaper, adopted {pid} when its parent ended"
        );
    }
    assert_eq!(descendants(root).len(), 2, "{:?}", descendants(root));

    assert_eq!(p.kill_all().await, 3);
    assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    assert!(
        eventually(Duration::from_secs(10), || !escapees
            .iter()
            .any(|&d| is_alive(d)))
        .await,
        "survivors: {:?}",
        escapees
            .iter()
            .filter(|&&d| is_alive(d))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn kill_leftovers_ends_what_an_ended_agent_left_in_its_group() {
    let script = "sleep 300 >/dev/null 2>&1 </dev/null & echo $!";
    let mut p = AgentProcess::spawn(&sh(script, &[])).unwrap();
    let root = p.pid();
    let leftover = pids_printed(&mut p, 1).await[0];
    assert!(p.wait().await.unwrap().success());
    assert_eq!(read_stat(leftover).unwrap().pgrp, root as i32);

    assert_eq!(p.kill_leftovers().await, 1, "the group still had a member");
    assert!(eventually(Duration::from_secs(10), || !is_alive(leftover)).await);
}

#[tokio::test]
async fn an_agent_that_ends_on_the_interrupt_leaves_nothing_it_was_noted_with() {
    // The agent ends its turn on SIGINT; its tool, in a session of its own, does not get the
    // signal and is re-parented to the host's init when the agent ends.
    let script = "trap 'exit 0' INT; \
                  (setsid sh -c 'echo $$; exec sleep 300' </dev/null &); \
                  while :; do sleep 0.05; done";
    let mut p = AgentProcess::spawn(&sh(script, &[])).unwrap();
    let root = p.pid();
    let tool = pids_printed(&mut p, 1).await[0];
    assert!(
        eventually(Duration::from_secs(10), || read_stat(tool)
            .is_some_and(|s| s.ppid == root))
        .await,
        "adopted by the agent"
    );
    p.note_descendants().await;
    p.interrupt(&Interrupt::Signal(libc::SIGINT)).unwrap();
    assert!(p.wait().await.unwrap().success(), "ended its turn");
    assert!(is_alive(tool), "the tool outlived the agent");

    assert!(p.kill_leftovers().await >= 1);
    assert!(eventually(Duration::from_secs(10), || !is_alive(tool)).await);
}

#[tokio::test]
async fn marked_processes_finds_orphans_and_kill_marked_kills_them() {
    let mark = unique_mark();
    let script = "sleep 300 >/dev/null 2>&1 </dev/null & echo $!";
    let mut p = AgentProcess::spawn(&sh(script, &[("ATELIER_RUN_MARK", &mark)])).unwrap();
    let root = p.pid();
    let orphan: u32 = read_stdout(&mut p).await.trim().parse().unwrap();
    assert!(p.wait().await.unwrap().success());
    assert!(
        eventually(Duration::from_secs(10), || read_stat(orphan)
            .is_some_and(|s| s.ppid != root))
        .await,
        "the orphan was re-parented"
    );

    assert_eq!(marked_processes("ATELIER_RUN_MARK", &mark), vec![orphan]);
    assert_eq!(
        marked_processes("ATELIER_RUN_MARK", "other"),
        Vec::<u32>::new()
    );
    let prefix = &mark[..mark.len() - 1];
    assert_eq!(
        marked_processes("ATELIER_RUN_MARK", prefix),
        Vec::<u32>::new()
    );

    assert_eq!(kill_marked("ATELIER_RUN_MARK", &mark), 1);
    assert!(eventually(Duration::from_secs(10), || !is_alive(orphan)).await);
    assert_eq!(
        marked_processes("ATELIER_RUN_MARK", &mark),
        Vec::<u32>::new()
    );
    assert_eq!(kill_marked("ATELIER_RUN_MARK", &mark), 0);
}

#[tokio::test]
async fn environment_is_exactly_the_given_one() {
    let spec = ProcessSpec {
        program: "/usr/bin/env".into(),
        args: vec![],
        cwd: "/".into(),
        env: vec![
            ("FOO".into(), "bar baz".into()),
            ("ATELIER_X".into(), "1".into()),
        ],
        stdin: None,
        stdin_open: false,
    };
    let mut p = AgentProcess::spawn(&spec).unwrap();
    let out = read_stdout(&mut p).await;
    assert!(p.wait().await.unwrap().success());
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, vec!["ATELIER_X=1", "FOO=bar baz"]);
}

#[tokio::test]
async fn runs_in_cwd_and_feeds_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("pwd; cat", &[]);
    spec.cwd = dir.path().to_path_buf();
    spec.stdin = Some(b"the prompt\n".to_vec());
    let mut p = AgentProcess::spawn(&spec).unwrap();
    let out = read_stdout(&mut p).await;
    assert!(p.wait().await.unwrap().success());
    let cwd = dir.path().canonicalize().unwrap();
    assert_eq!(out, format!("{}\nthe prompt\n", cwd.display()));
}

#[tokio::test]
async fn stdin_is_null_without_input() {
    let mut p = AgentProcess::spawn(&sh("cat; echo done", &[])).unwrap();
    assert_eq!(read_stdout(&mut p).await, "done\n");
    assert!(p.wait().await.unwrap().success());
}

#[tokio::test]
async fn stderr_tail_keeps_the_last_8_kib() {
    let script = "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done";
    let mut p = AgentProcess::spawn(&sh(script, &[])).unwrap();
    assert!(p.wait().await.unwrap().success());
    let all: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(p.stderr_tail(), all[all.len() - STDERR_TAIL_BYTES..]);
}

#[tokio::test]
async fn spawn_failure_names_the_program() {
    let mut spec = sh("true", &[]);
    spec.program = "/nonexistent/agent".into();
    let err = AgentProcess::spawn(&spec).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent/agent"), "{err}");
}

#[tokio::test]
async fn interrupt_with_sigint_ends_sleep() {
    let mut p = AgentProcess::spawn(&sh("exec sleep 300", &[])).unwrap();
    p.interrupt(&Interrupt::Signal(libc::SIGINT)).unwrap();
    assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGINT));
    let err = p.interrupt(&Interrupt::Stdin(b"x".to_vec())).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
}

#[tokio::test]
async fn wait_is_cancel_safe() {
    let mut p = AgentProcess::spawn(&sh("exec sleep 300", &[])).unwrap();
    tokio::select! {
        _ = p.wait() => panic!("sleep 300 ended early"),
        _ = std::future::ready(()) => {}
    }
    p.interrupt(&Interrupt::Signal(libc::SIGTERM)).unwrap();
    assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGTERM));
}

#[test]
fn new_session_detaches() {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "exec cat /proc/self/stat"]);
    let out = new_session(&mut cmd).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let pid: &str = text.split_whitespace().next().unwrap();
    assert_eq!(fields[3], pid, "session id is its own pid");
}

#[test]
fn refuses_dangerous_roots() {
    assert_eq!(kill_tree(0), 0);
    assert_eq!(kill_tree(1), 0);
    assert_eq!(kill_tree(std::process::id()), 0);
    assert_eq!(signal_tree(0, 0), 0);
    assert_eq!(descendants(0), Vec::<u32>::new());
}

#[tokio::test]
async fn processes_in_finds_who_works_in_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let inner = dir.join("sub");
    std::fs::create_dir(&inner).unwrap();
    assert_eq!(processes_in(&dir), Vec::<u32>::new());
    let mut spec = sh("exec sleep 300", &[]);
    spec.cwd = inner.clone();
    let mut p = AgentProcess::spawn(&spec).unwrap();
    let pid = p.pid();
    assert!(
        eventually(Duration::from_secs(10), || comm(pid) == "sleep").await,
        "sleep started"
    );
    assert_eq!(
        processes_in(&dir),
        vec![pid],
        "a process in a sub-folder counts"
    );
    assert_eq!(processes_in(&inner), vec![pid]);
    let sibling = tmp.path().join("su");
    std::fs::create_dir(&sibling).unwrap();
    assert_eq!(
        processes_in(&sibling),
        Vec::<u32>::new(),
        "a name prefix is not inside"
    );
    kill_tree(pid);
    p.wait().await.unwrap();
    assert_eq!(processes_in(&dir), Vec::<u32>::new());
}
