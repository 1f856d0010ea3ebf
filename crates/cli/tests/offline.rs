//! Truly offline CLIs: one whole pipeline per real agent CLI (Claude Code, Codex, OpenCode) with
//! everything — the model simulator, the server, the sandboxed agents and their tools — inside a
//! network namespace that has only loopback, where any attempt to reach another address fails the
//! test.
//!
//! Codex runs it twice: in its one-shot mode (`codex exec`) and in its long-lived one (`codex
//! app-server` behind `atelier codex-bridge`, with the next stage's process warmed ahead).
//!
//! Each test re-runs itself (the same test binary and test name, with [`INNER`] set) as
//! `unshare --net -- sh -c 'ip link set lo up && exec strace -f --seccomp-bpf -e trace=… -o FILE
//! -- <test binary> <test> --exact'`. Inside, the test starts the simulator in-process, the real
//! `atelier serve` and a task through plan, implement, review and pr to merged. `strace` follows
//! every process of that tree (the server, bubblewrap, the CLIs, git, the shell tools) and logs
//! each `connect`, `sendto`, `sendmsg` and `sendmmsg` with its address; outside, the test fails on
//! any address that is not loopback (`127.0.0.0/8`, `::1`), a local socket or the kernel's
//! netlink — a DNS lookup included — and checks that the agents' connections to the simulator
//! were seen, so a trace that saw nothing cannot pass. In the namespace an outside address is
//! unreachable anyway: a CLI that tried one would only lose time, which is why it has to be caught
//! here rather than noticed.
//!
//! Needs root (for `unshare --net`), `unshare`, `ip` and `strace` (`scripts/test` installs the
//! last two with apt) and the real CLIs. Without them, outside CI, the tests are compiled as
//! ignored (shown as skipped, `build.rs`); under `CI=true` they run and fail, naming what is
//! missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod support;

use serde_json::{Value, json};
use simulator::Simulator;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

/// Set (to a folder) in the re-run test process, which then does the work inside the
/// namespace and writes what the outer test checks into that folder.
const INNER: &str = "OFFLINE_TEST_INNER_DIR";

/// Longest wait for the whole traced pipeline (four real CLI runs on a busy 2-core machine).
const RUN_DEADLINE: Duration = Duration::from_secs(420);

/// The system calls that name where a process sends to.
const TRACED: &str = "trace=connect,sendto,sendmsg,sendmmsg";

#[tokio::test]
#[cfg_attr(
    any(agent_clis_missing, netns_missing),
    ignore = "needs the real agent CLIs, root, unshare, ip and strace: run scripts/test, which installs them"
)]
async fn claude_code_stays_on_loopback() {
    offline_pipeline("claude_code_stays_on_loopback", "claude-code", "one-shot").await;
}

#[tokio::test]
#[cfg_attr(
    any(agent_clis_missing, netns_missing),
    ignore = "needs the real agent CLIs, root, unshare, ip and strace: run scripts/test, which installs them"
)]
async fn codex_stays_on_loopback() {
    offline_pipeline("codex_stays_on_loopback", "codex", "one-shot").await;
}

#[tokio::test]
#[cfg_attr(
    any(agent_clis_missing, netns_missing),
    ignore = "needs the real agent CLIs, root, unshare, ip and strace: run scripts/test, which installs them"
)]
async fn codex_long_lived_stays_on_loopback() {
    offline_pipeline("codex_long_lived_stays_on_loopback", "codex", "long-lived").await;
}

#[tokio::test]
#[cfg_attr(
    any(agent_clis_missing, netns_missing),
    ignore = "needs the real agent CLIs, root, unshare, ip and strace: run scripts/test, which installs them"
)]
async fn opencode_stays_on_loopback() {
    offline_pipeline("opencode_stays_on_loopback", "opencode", "one-shot").await;
}

/// OpenCode's long-lived mode: the `atelier opencode-bridge` of every run (and of the warm
/// standby processes the pipeline starts ahead), its `opencode serve` and the bridge's warm-up
/// endpoint, all on loopback.
#[tokio::test]
#[cfg_attr(
    any(agent_clis_missing, netns_missing),
    ignore = "needs the real agent CLIs, root, unshare, ip and strace: run scripts/test, which installs them"
)]
async fn opencode_long_lived_stays_on_loopback() {
    offline_pipeline(
        "opencode_long_lived_stays_on_loopback",
        "opencode",
        "long-lived",
    )
    .await;
}

/// The detector itself: a shell in the same traced namespace that tries an outside address is
/// caught (and its loopback attempt is not).
#[tokio::test]
#[cfg_attr(
    netns_missing,
    ignore = "needs root, unshare, ip and strace: run scripts/test, which installs them"
)]
async fn the_trace_catches_an_attempt_to_leave_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let script =
        ": 2>/dev/null <>/dev/tcp/127.0.0.1/9; : 2>/dev/null <>/dev/tcp/192.0.2.1/80; true";
    let output = traced(&trace, Path::new("bash"), &["-c", script], &[]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let text = std::fs::read_to_string(&trace).unwrap();
    let seen = addresses(&text);
    assert!(
        seen.iter()
            .any(|a| a == &Address::Inet("127.0.0.1".into(), 9)),
        "{text}"
    );
    assert_eq!(
        outside(&seen),
        [&Address::Inet("192.0.2.1".into(), 80)],
        "{text}"
    );
}

/// Runs `test` (this binary's test of that name) traced inside a loopback-only namespace, or,
/// when this process is that re-run, the pipeline on `harness` in `session` mode.
async fn offline_pipeline(test: &str, harness: &str, session: &str) {
    if let Some(dir) = std::env::var_os(INNER) {
        pipeline_inside(harness, session, Path::new(&dir)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let exe = std::env::current_exe().unwrap();
    let args = [test, "--exact", "--nocapture", "--test-threads=1"];
    let started = std::time::Instant::now();
    let output = traced(&trace, &exe, &args, &[(INNER, dir.path())]).await;
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(
        output.status.success(),
        "the pipeline inside the namespace failed\n{}",
        describe(&output)
    );
    let seen = addresses(&text);
    let outside = outside(&seen);
    assert!(
        outside.is_empty(),
        "{harness} ({session}): processes tried to reach {outside:?} (only loopback is allowed); the \
         attempts:\n{}",
        text.lines()
            .filter(|l| addresses(l).iter().any(|a| !a.is_loopback()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The trace did see the agents: their connections to the simulator are in it.
    let sim_port: u16 = std::fs::read_to_string(dir.path().join("sim-port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        seen.contains(&Address::Inet("127.0.0.1".into(), sim_port)),
        "no traced connection to the simulator on port {sim_port}: the trace did not follow the \
         agents\n{text}"
    );
    eprintln!(
        "{harness} ({session}): {} traced sends, none off loopback, in {:.1?}",
        seen.len(),
        started.elapsed()
    );
}

/// Runs `program args` as `unshare --net` → `ip link set lo up` → `strace -f … -o trace`, with
/// `env` added, and waits (with a deadline) for it to end.
async fn traced(
    trace: &Path,
    program: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
) -> std::process::Output {
    for tool in ["unshare", "ip", "strace"] {
        assert!(
            on_path(tool),
            "`{tool}` is needed to run agents in a loopback-only network namespace and trace \
             them: install util-linux, iproute2 and strace (Debian: apt-get install util-linux \
             iproute2 strace), or run scripts/test, which does"
        );
    }
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    assert!(
        root,
        "the offline tests must run as root: `unshare --net` makes the loopback-only network \
         namespace the agents run in"
    );
    let script = format!(
        "ip link set lo up && exec strace -f -qq --seccomp-bpf -e {TRACED} -e signal=none -o \"$0\" -- \"$@\""
    );
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args(["--net", "--", "sh", "-c", &script])
        .arg(trace)
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        cmd.env(name, value);
    }
    match tokio::time::timeout(RUN_DEADLINE, cmd.output()).await {
        Ok(output) => output
            .unwrap_or_else(|err| panic!("cannot start `unshare --net` (it needs root): {err}")),
        Err(_) => panic!(
            "the traced run did not end within {RUN_DEADLINE:?} (it was killed); trace so \
             far:\n{}",
            std::fs::read_to_string(trace).unwrap_or_default()
        ),
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn describe(output: &std::process::Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Where a traced call sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Inet(String, u16),
    Inet6(String, u16),
    /// A local socket, netlink, or `AF_UNSPEC` (which disconnects a socket).
    Local(String),
    /// A family this test does not know: counted as outside.
    Other(String),
}

impl Address {
    fn is_loopback(&self) -> bool {
        match self {
            Address::Inet(ip, _) => ip.starts_with("127."),
            Address::Inet6(ip, _) => ip == "::1" || ip.starts_with("::ffff:127."),
            Address::Local(_) => true,
            Address::Other(_) => false,
        }
    }
}

/// Every address in strace's output (`sa_family=…` structures of connect, sendto, sendmsg and
/// sendmmsg; a send on a connected socket names none).
fn addresses(trace: &str) -> Vec<Address> {
    let mut found = vec![];
    for line in trace.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("sa_family=") {
            rest = &rest[at + "sa_family=".len()..];
            let end = rest.find('}').unwrap_or(rest.len());
            found.push(address(&rest[..end]));
        }
    }
    found
}

/// One `AF_…, field=…, …` structure as strace prints it.
fn address(fields: &str) -> Address {
    let family = fields.split(',').next().unwrap_or("").trim().to_string();
    let quoted = |key: &str| {
        let start = fields.find(key)? + key.len();
        let end = fields[start..].find('"')?;
        Some(fields[start..start + end].to_string())
    };
    let port = || {
        let start = fields.find("htons(")? + "htons(".len();
        let end = fields[start..].find(')')?;
        fields[start..start + end].parse().ok()
    };
    match family.as_str() {
        "AF_INET" => match (quoted("inet_addr(\""), port()) {
            (Some(ip), Some(port)) => Address::Inet(ip, port),
            _ => Address::Other(fields.to_string()),
        },
        "AF_INET6" => match (quoted("inet_pton(AF_INET6, \""), port()) {
            (Some(ip), Some(port)) => Address::Inet6(ip, port),
            _ => Address::Other(fields.to_string()),
        },
        "AF_UNIX" | "AF_LOCAL" | "AF_NETLINK" | "AF_UNSPEC" => Address::Local(family),
        _ => Address::Other(fields.to_string()),
    }
}

fn outside(seen: &[Address]) -> Vec<&Address> {
    let mut outside: Vec<&Address> = seen.iter().filter(|a| !a.is_loopback()).collect();
    outside.dedup();
    outside
}

#[test]
fn reads_the_addresses_strace_prints() {
    let trace = r#"14449 connect(24, {sa_family=AF_INET, sin_port=htons(18793), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)
14052 connect(25, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0
16186 sendto(21, "POST /v1/messages?beta=true HTTP"..., 88863, MSG_DONTWAIT|MSG_NOSIGNAL, NULL, 0) = 88863
7 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
8 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2606:4700::6810:1", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>
9 sendmsg(4, {msg_name={sa_family=AF_INET6, sin6_port=htons(8080), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, msg_namelen=28, msg_iov=[{iov_base="x", iov_len=1}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, 0) = 1
10 sendto(6, {{len=20, type=RTM_GETADDR, flags=NLM_F_REQUEST|NLM_F_DUMP, seq=1, pid=0}, {ifa_family=AF_UNSPEC, ...}}, 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20
11 connect(7, {sa_family=AF_PACKET, sll_protocol=htons(ETH_P_ALL)}, 20) = 0
"#;
    let seen = addresses(trace);
    assert_eq!(
        seen,
        [
            Address::Inet("127.0.0.1".into(), 18793),
            Address::Inet("10.255.255.53".into(), 53),
            Address::Local("AF_UNIX".into()),
            Address::Inet6("2606:4700::6810:1".into(), 443),
            Address::Inet6("::1".into(), 8080),
            Address::Local("AF_NETLINK".into()),
            Address::Other("AF_PACKET, sll_protocol=htons(ETH_P_ALL)".into()),
        ]
    );
    assert_eq!(
        outside(&seen),
        [&seen[1], &seen[3], &seen[6]],
        "a DNS server, an outside IPv6 address and an unknown family are outside"
    );
}

/// Inside the namespace: the simulator, the server and one task through the whole pipeline on
/// `harness` in `session` mode, to merged; the simulator's port goes to `<dir>/sim-port` for the
/// outer test.
async fn pipeline_inside(harness: &str, session: &str, dir: &Path) {
    let (flag, bin) = agent_cli(harness);
    let bin = bin.display().to_string();
    let world = World::start_with_env(&[], &["--merge-poll-ms", "200", flag, &bin], &[]).await;
    let scenarios = world.dir.path().join("sim-scenarios");
    write_scenarios(&scenarios, &sim_pipeline());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener, scenarios).await;
    let port = sim.url().rsplit(':').next().unwrap().to_string();
    std::fs::write(dir.join("sim-port"), port).unwrap();

    let mut role = simulated_role(harness, &sim.url());
    role["session"] = json!(session);
    let roles: serde_json::Map<String, Value> = ["plan", "implement", "review", "pr"]
        .iter()
        .map(|stage| (stage.to_string(), role.clone()))
        .collect();
    let path = world.add_repo("offline");
    let (status, body) = world
        .server
        .post(
            "/api/projects",
            &json!({"path": path, "name": "offline", "settings": {"roles": roles}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = world.new_task_in("offline", "Say hello", false, 0).await;
    let detail = world
        .wait_state_for(id, "awaiting_merge", Duration::from_secs(240))
        .await;
    assert_eq!(
        run_summary(&detail),
        pairs(&[
            ("plan", "completed"),
            ("implement", "completed"),
            ("review", "completed"),
            ("pr", "completed")
        ])
    );
    assert_eq!(
        std::fs::read_to_string(world.worktree(&detail).join("hello.txt")).unwrap(),
        "hello from the agent\n"
    );
    let (status, body) = world.action(id, "merge", json!({})).await;
    assert_eq!(status, 200, "{body}");
    world.wait_state(id, "done").await;
    // Nothing was fetched into the agent's home: no npm cache (OpenCode's plugin install wrote
    // one before `Harness::prepare`), no downloaded tools.
    let home = only_home(&world.homes());
    for fetched in [".npm", ".cache/opencode/bin/rg", ".bun/install/cache"] {
        assert!(
            !home.join(fetched).exists(),
            "{harness} left {fetched} in the agent's home {}",
            home.display()
        );
    }
}

/// The one task home under `homes` (the server's own `.cli-check` home, where it asks each CLI
/// its version, is not a task's).
fn only_home(homes: &Path) -> PathBuf {
    let homes: Vec<PathBuf> = std::fs::read_dir(homes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert_eq!(homes.len(), 1, "{homes:?}");
    homes.into_iter().next().unwrap()
}
