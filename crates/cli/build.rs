//! Tells the end-to-end tests whether the outside tools they drive are configured (what
//! `scripts/test` sets); without them, and outside CI, the tests that need them are compiled as
//! ignored — shown as skipped in the summary, never run and passed. Under `CI=true` they always
//! run, and fail when a tool is missing.
//!
//! - `agent_clis_missing`: the real agent CLIs (`ATELIER_CLAUDE_BIN`, `ATELIER_CODEX_BIN`,
//!   `ATELIER_OPENCODE_BIN`).
//! - `browser_missing`: the browser tests' chromedriver (`ATELIER_CHROMEDRIVER`, driving Debian's
//!   `chromium`) and the pinned axe-core script (`ATELIER_AXE_JS`).
//! - `netns_missing`: what the offline tests (`tests/offline.rs`) run agents with: root (for
//!   `unshare --net`) and `unshare`, `ip` and `strace` on `PATH`.

fn main() {
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    missing_cfg(
        "agent_clis_missing",
        &[
            "ATELIER_CLAUDE_BIN",
            "ATELIER_CODEX_BIN",
            "ATELIER_OPENCODE_BIN",
        ],
        ci,
    );
    missing_cfg(
        "browser_missing",
        &["ATELIER_CHROMEDRIVER", "ATELIER_AXE_JS"],
        ci,
    );
    println!("cargo::rustc-check-cfg=cfg(netns_missing)");
    println!("cargo::rerun-if-env-changed=PATH");
    let ready = is_root() && ["unshare", "ip", "strace"].iter().all(|tool| on_path(tool));
    if !ready && !ci {
        println!("cargo::rustc-cfg=netns_missing");
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Whether the build runs as root (the tests run as the same user): the effective uid of
/// `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Declares `cfg(name)` and sets it when one of `vars` is not set and this is not CI.
fn missing_cfg(name: &str, vars: &[&str], ci: bool) {
    println!("cargo::rustc-check-cfg=cfg({name})");
    for var in vars {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let missing = vars.iter().any(|var| std::env::var_os(var).is_none());
    if missing && !ci {
        println!("cargo::rustc-cfg={name}");
    }
}
