//! `atelier opencode-bridge` (hidden): the agent process of a long-lived OpenCode session. The
//! OpenCode harness starts it; it runs `opencode serve` and relays turns and events
//! (`harness::opencode::bridge`). People do not run it.

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BridgeArgs {
    /// The `opencode` executable.
    #[arg(long)]
    opencode: PathBuf,
    /// `provider/model`.
    #[arg(long)]
    model: String,
    /// The model variant (the role's effort).
    #[arg(long)]
    variant: Option<String>,
    /// A session to continue.
    #[arg(long)]
    session: Option<String>,
}

/// Runs the bridge (its own single-threaded runtime); returns its exit code.
pub fn run(args: BridgeArgs) -> i32 {
    harness::opencode::run_bridge(harness::opencode::BridgeArgs {
        opencode: args.opencode,
        model: args.model,
        variant: args.variant,
        session: args.session,
    })
}
