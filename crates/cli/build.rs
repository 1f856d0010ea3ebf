//! Tells the end-to-end tests whether the real agent CLIs are configured: without
//! `ATELIER_CLAUDE_BIN`, `ATELIER_CODEX_BIN` and `ATELIER_OPENCODE_BIN` (what `scripts/test` sets),
//! and outside CI, the tests that drive them are compiled as ignored — shown as skipped in the
//! summary, never run and passed. Under `CI=true` they always run, and fail when a CLI is missing.

fn main() {
    const VARS: [&str; 3] = [
        "ATELIER_CLAUDE_BIN",
        "ATELIER_CODEX_BIN",
        "ATELIER_OPENCODE_BIN",
    ];
    println!("cargo::rustc-check-cfg=cfg(agent_clis_missing)");
    println!("cargo::rerun-if-env-changed=CI");
    for var in VARS {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let missing = VARS.iter().any(|var| std::env::var_os(var).is_none());
    if missing && !ci {
        println!("cargo::rustc-cfg=agent_clis_missing");
    }
}
