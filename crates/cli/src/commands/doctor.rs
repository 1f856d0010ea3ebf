//! `atelier doctor`: how the running server runs agents — its version and whether its agent
//! sandbox works — so an operator sees at a glance that agents are (or are not) confined.

use crate::GlobalArgs;
use crate::client::Client;
use crate::{config, output};
use anyhow::{Result, bail};
use clap::Args;
use engine::api::ServerStatus;

const AFTER_HELP: &str = "\
Exits with status 1 when agents cannot start (bubblewrap missing or unusable), and says how to \
fix it. A server started with --sandbox=none is reported as unconfined.

Example:
  atelier doctor";

/// Check how the server runs agents (sandbox status)
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
    format!("server:  atelier {}\nsandbox: {sandbox}\n", status.version)
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
        }
    }

    #[test]
    fn each_sandbox_state_reads_clearly() {
        assert_eq!(
            describe(&status("bubblewrap", None)),
            "server:  atelier 0.1.0\nsandbox: bubblewrap: every agent runs in its own sandbox\n"
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
