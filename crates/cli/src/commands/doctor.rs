//! `atelier doctor`: what the running server needs for agents to run, checked just now — each
//! agent CLI and its version (or why it cannot start, with the pinned install command and the
//! `atelier serve` flag), the agent sandbox, the data directory's permissions, git and each
//! project's remote — so an operator sees at a glance what is missing and how to fix it.

use crate::GlobalArgs;
use crate::client::Client;
use crate::{config, output};
use anyhow::{Result, bail};
use clap::Args;
use engine::api::{CheckStatus, ServerStatus};

const AFTER_HELP: &str = "\
Checks, on the server: every agent CLI (its version, or why it cannot start, the pinned npm \
install command and the `atelier serve` flag that names it), the agent sandbox, the data \
directory's permissions, git, and whether each project's remote answers. Exits with status 1 \
when a check fails (a CLI a role needs is missing, bubblewrap missing or unusable…) and says how \
to fix it; a warning (WARN: the default role's Claude Code is missing) does not fail. A server \
started with --sandbox=none is reported as unconfined.

Example:
  atelier doctor";

/// Check what agents need on the server: CLIs, sandbox, data directory, git, remotes
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct DoctorArgs {}

pub async fn run(_args: DoctorArgs, global: &GlobalArgs) -> Result<()> {
    let client = Client::new(config::resolve_target(global)?)?;
    let status: ServerStatus = client.get("/api/status").await?;
    if global.json {
        output::print_json(&status)?;
    } else {
        print!("{}", describe(&status));
    }
    if !status.sandbox.ready {
        bail!("agents cannot start on this server");
    }
    let failed: Vec<&str> = status
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .map(|c| c.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("failed checks: {}", failed.join(", "));
    }
    Ok(())
}

/// The status as lines of text.
fn describe(status: &ServerStatus) -> String {
    let sandbox = match (status.sandbox.mode.as_str(), &status.sandbox.problem) {
        (_, Some(problem)) => format!("NOT READY: {problem}"),
        ("none", None) => {
            "OFF (--sandbox=none): agents run unconfined as the server's user and can read its \
             data directory"
                .to_string()
        }
        (mode, None) => format!("{mode}: every agent runs in its own sandbox"),
    };
    let warm = &status.warm;
    let warm = if warm.limit == 0 {
        "off (--warm-limit 0)".to_string()
    } else {
        format!(
            "up to {} idle for {} s; {} idle now; since start {} started, {} used, {} shut down unused",
            warm.limit, warm.idle_secs, warm.idle, warm.started, warm.used, warm.wasted
        )
    };
    let mut text = format!(
        "server:  atelier {}\nsandbox: {sandbox}\nwarm:    {warm}\n",
        status.version
    );
    for check in &status.checks {
        let mark = match check.status {
            CheckStatus::Ok => "ok  ",
            CheckStatus::Warning => "WARN",
            CheckStatus::Failed => "FAIL",
        };
        text.push_str(&format!("{mark} {}: {}\n", check.name, check.detail));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::api::SandboxStatus;

    fn status(mode: &str, problem: Option<&str>) -> ServerStatus {
        ServerStatus {
            version: "0.1.0".into(),
            sandbox: SandboxStatus {
                mode: mode.into(),
                ready: problem.is_none(),
                problem: problem.map(str::to_string),
            },
            checks: Vec::new(),
            warm: Default::default(),
        }
    }

    #[test]
    fn checks_read_one_a_line_failures_marked() {
        let mut with_checks = status("bubblewrap", None);
        with_checks.checks = vec![
            engine::api::Check::ok("git".into(), "git version 2.47.3".into()),
            engine::api::Check::failed("codex CLI".into(), "cannot start".into()),
            engine::api::Check::warning("claude-code CLI".into(), "missing".into()),
        ];
        assert_eq!(
            describe(&with_checks),
            "server:  atelier 0.1.0\nsandbox: bubblewrap: every agent runs in its own sandbox\n\
             warm:    off (--warm-limit 0)\nok   git: git version 2.47.3\nFAIL codex CLI: cannot start\nWARN claude-code CLI: missing\n"
        );
    }

    #[test]
    fn each_sandbox_state_reads_clearly() {
        assert_eq!(
            describe(&status("bubblewrap", None)),
            "server:  atelier 0.1.0\nsandbox: bubblewrap: every agent runs in its own sandbox\n\
             warm:    off (--warm-limit 0)\n"
        );
        let mut warm = status("bubblewrap", None);
        warm.warm = engine::api::WarmStatus {
            limit: 2,
            idle_secs: 300,
            idle: 1,
            started: 5,
            used: 3,
            wasted: 1,
        };
        assert!(
            describe(&warm).contains(
                "warm:    up to 2 idle for 300 s; 1 idle now; since start 5 started, 3 used, 1 shut down unused"
            ),
            "{}",
            describe(&warm)
        );
        assert!(describe(&status("none", None)).contains("OFF (--sandbox=none)"));
        assert!(
            describe(&status(
                "bubblewrap",
                Some("bubblewrap (`bwrap`) was not found")
            ))
            .contains("NOT READY: bubblewrap (`bwrap`) was not found")
        );
    }
}
