//! `atelier codex-bridge <config>` (hidden): the bridge of a long-lived Codex session, started
//! by the codex harness as the agent's process. Only wiring: the bridge is
//! `harness::codex::bridge`.

use clap::Args;

#[derive(Args, Debug)]
pub struct CodexBridgeArgs {
    /// The bridge's configuration as JSON (written by the codex harness)
    pub config: String,
}

/// Runs the bridge to its end; returns the process's exit code.
pub fn run(args: &CodexBridgeArgs) -> i32 {
    harness::codex::bridge::main(&args.config)
}
