//! `atelier serve`: the long-running server. Sets up the data directory and the API token, binds
//! the listener, starts the engine, publishes `server.json` and serves until SIGINT/SIGTERM.

use crate::GlobalArgs;
use crate::config::{self, ServerFile};
use anyhow::{Context, Result};
use clap::Args;
use engine::{Engine, EngineConfig, SandboxMode};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

const AFTER_HELP: &str = "\
Writes <data-dir>/server.json (URL, API token, pid; mode 0600) so the other commands on this \
machine find the server, and keeps the API token in <data-dir>/api-token across restarts. \
Logs go to stderr (RUST_LOG=debug for more).

Examples:
  atelier serve
  atelier serve --listen 127.0.0.1:9000 --slots 2
  ATELIER_DATA_DIR=/srv/atelier atelier serve --stall-secs 300

Agents run inside a bubblewrap sandbox that shows them their task's worktree, home and doc and \
nothing of the data directory (see docs/security.md). Without bwrap no agent starts; \
--sandbox=none runs them unconfined and says so at every start.";

/// Start the Atelier server (HTTP API and agent orchestrator)
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// Address to listen on; anything but a loopback address exposes the server to the network
    #[arg(
        long,
        env = "ATELIER_LISTEN",
        default_value = "127.0.0.1:7878",
        value_name = "ADDR"
    )]
    listen: String,
    /// Agents that may run at once, all projects together [default: 8]
    #[arg(long, env = "ATELIER_SLOTS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    slots: Option<u64>,
    /// Successor agent processes kept warm (started idle ahead of their run) at once, outside
    /// `--slots`; 0 turns warm standby off [default: 2]
    #[arg(long, env = "ATELIER_WARM_LIMIT", value_name = "N")]
    warm_limit: Option<u64>,
    /// Shut down a warm process whose run has not come after this many seconds [default: 300]
    #[arg(long, env = "ATELIER_WARM_IDLE_SECS", value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..))]
    warm_idle_secs: Option<u64>,
    /// Interrupt a run that emits nothing for this many seconds [default: 600]
    #[arg(long, env = "ATELIER_STALL_SECS", value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..))]
    stall_secs: Option<u64>,
    /// Wall-clock limit of one run in seconds, unless its role sets one [default: 3600]
    #[arg(long, env = "ATELIER_STAGE_TIMEOUT_SECS", value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..))]
    stage_timeout_secs: Option<u64>,
    /// Time between asking an agent to stop and killing it, in milliseconds [default: 5000]
    #[arg(long, env = "ATELIER_STOP_GRACE_MS", value_name = "MS")]
    stop_grace_ms: Option<u64>,
    /// How often pull requests are followed (merged? checks? comments?), in milliseconds; a
    /// GitHub project is polled at most every `forge.poll_secs` of its settings [default: 30000]
    #[arg(long, env = "ATELIER_MERGE_POLL_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    merge_poll_ms: Option<u64>,
    /// Longest one git command that talks to a project's remote (fetch, push, ls-remote) may
    /// take, in seconds; then it is killed and the fetch, pull request or merge fails saying the
    /// remote may be unreachable [default: 60]
    #[arg(long, env = "ATELIER_FORGE_TIMEOUT_SECS", value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..))]
    forge_timeout_secs: Option<u64>,
    /// First wait before retrying a run that failed on infrastructure (rate limit, 5xx,
    /// unreachable model endpoint); doubles per consecutive failure [default: 10000]
    #[arg(long, env = "ATELIER_RETRY_BASE_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    retry_base_ms: Option<u64>,
    /// Longest wait between infrastructure retries [default: 300000]
    #[arg(long, env = "ATELIER_RETRY_CAP_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    retry_cap_ms: Option<u64>,
    /// Largest request body the API accepts, in bytes; larger ones get 413 [default: 2000000]
    #[arg(long, env = "ATELIER_MAX_BODY_BYTES", value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_body_bytes: Option<u64>,
    /// The Claude Code executable agents run [default: `claude` on the agents' PATH]
    #[arg(long, env = "ATELIER_CLAUDE_BIN", value_name = "PATH")]
    claude_bin: Option<std::path::PathBuf>,
    /// The Codex executable (the native binary) [default: `codex` on the agents' PATH]
    #[arg(long, env = "ATELIER_CODEX_BIN", value_name = "PATH")]
    codex_bin: Option<std::path::PathBuf>,
    /// The OpenCode executable [default: `opencode` on the agents' PATH]
    #[arg(long, env = "ATELIER_OPENCODE_BIN", value_name = "PATH")]
    opencode_bin: Option<std::path::PathBuf>,
    /// How agents are confined: `bubblewrap` (each run in its own sandbox; agents do not start
    /// when bwrap is missing) or `none` (agents run unconfined as this server's user and can
    /// read its data directory: only for machines where every agent is trusted)
    #[arg(long, env = "ATELIER_SANDBOX", value_name = "MODE", default_value = "bubblewrap",
          value_parser = ["bubblewrap", "none"])]
    sandbox: String,
    /// The bubblewrap executable
    #[arg(
        long,
        env = "ATELIER_BWRAP",
        value_name = "PATH",
        default_value = "bwrap"
    )]
    bwrap: std::path::PathBuf,
    /// Where agents' home folders live, one per task (mode 0700); never inside the data
    /// directory [default: $XDG_STATE_HOME/atelier/homes/<id of the data directory>]
    #[arg(long, env = "ATELIER_HOMES_DIR", value_name = "DIR")]
    homes_dir: Option<std::path::PathBuf>,
}

impl ServeArgs {
    fn http_options(&self) -> Result<server::HttpOptions> {
        let mut options = server::HttpOptions::default();
        if let Some(bytes) = self.max_body_bytes {
            options.max_body_bytes =
                usize::try_from(bytes).context("--max-body-bytes is too large")?;
        }
        Ok(options)
    }

    fn apply(&self, config: &mut EngineConfig) -> Result<()> {
        if let Some(slots) = self.slots {
            config.global_slots = usize::try_from(slots).context("--slots is too large")?;
        }
        if let Some(n) = self.warm_limit {
            config.warm_limit = usize::try_from(n).context("--warm-limit is too large")?;
        }
        if let Some(secs) = self.warm_idle_secs {
            config.warm_idle = Duration::from_secs(secs);
        }
        if let Some(secs) = self.stall_secs {
            config.stall_window = Duration::from_secs(secs);
        }
        if let Some(secs) = self.stage_timeout_secs {
            config.stage_timeout = Duration::from_secs(secs);
        }
        if let Some(ms) = self.stop_grace_ms {
            config.stop_grace = Duration::from_millis(ms);
        }
        if let Some(ms) = self.merge_poll_ms {
            config.merge_poll = Duration::from_millis(ms);
        }
        if let Some(secs) = self.forge_timeout_secs {
            config.forge_timeout = Duration::from_secs(secs);
        }
        if let Some(ms) = self.retry_base_ms {
            config.retry_base = Duration::from_millis(ms);
        }
        if let Some(ms) = self.retry_cap_ms {
            config.retry_cap = Duration::from_millis(ms);
        }
        config.sandbox = match self.sandbox.as_str() {
            "none" => SandboxMode::None,
            _ => SandboxMode::Bubblewrap {
                bwrap: self.bwrap.clone(),
            },
        };
        if let Some(dir) = &self.homes_dir {
            let dir = std::path::absolute(dir)
                .with_context(|| format!("--homes-dir {}", dir.display()))?;
            if harness::sandbox::is_within(&dir, &config.data_dir) {
                anyhow::bail!(
                    "--homes-dir {} is inside the data directory {}: agents would reach it; choose a folder outside",
                    dir.display(),
                    config.data_dir.display()
                );
            }
            config.homes_dir = dir;
        }
        for (given, slot) in [
            (&self.claude_bin, &mut config.claude_bin),
            (&self.codex_bin, &mut config.codex_bin),
            (&self.opencode_bin, &mut config.opencode_bin),
        ] {
            if let Some(path) = given {
                *slot = std::path::absolute(path)
                    .with_context(|| format!("agent CLI path {}", path.display()))?;
            }
        }
        Ok(())
    }
}

pub async fn run(args: ServeArgs, global: &GlobalArgs) -> Result<()> {
    // Every file the server writes (the API token first) is private to its user.
    harness::process::set_private_umask();
    init_tracing("info");
    let data_dir = config::data_dir(global)?;
    config::create_data_dir(&data_dir)?;
    let token = config::load_or_create_api_token(&data_dir)?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another server running there? choose another address \
             with --listen",
                args.listen
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    if !bound.ip().is_loopback() {
        eprintln!(
            "warning: listening on {bound} exposes the server beyond this machine; anyone who \
             can reach it and holds the API token controls your agents"
        );
    }
    let url = local_url(bound);

    let exe = std::env::current_exe().context("cannot find the path of the atelier binary")?;
    let mut engine_config = EngineConfig::new(data_dir.clone(), exe, url.clone());
    args.apply(&mut engine_config)?;
    // With no users yet, the api-token becomes the first administrator's token.
    engine_config.legacy_api_token = Some(token.clone());
    let http_options = args.http_options()?;
    let engine = Engine::start(engine_config).await.with_context(|| {
        format!(
            "cannot start the engine with data directory {}",
            data_dir.display()
        )
    })?;

    let pid = std::process::id();
    config::write_server_file(
        &data_dir,
        &ServerFile {
            url: url.clone(),
            token: token.clone(),
            pid,
        },
    )?;
    announce(&url)?;
    tracing::info!(%url, data_dir = %data_dir.display(), "serving");

    // Agents are stopped while the API still listens: an agent finishing its turn in that
    // moment can still signal instead of losing its signal to a closed port.
    let stopping = engine.clone();
    let served = server::serve(
        listener,
        server::app(engine.clone(), http_options),
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: stopping live runs");
            stopping.shutdown().await;
        },
    )
    .await;
    engine.shutdown().await;
    config::remove_server_file(&data_dir, pid);
    served.context("the HTTP server failed")
}

/// The URL clients and agents use: the bound address, or loopback when bound to all interfaces.
pub fn local_url(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", bound.port())
    } else {
        format!("http://{bound}")
    }
}

/// The one line on stdout that scripts and tests wait for.
fn announce(url: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "Atelier listening on {url}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(err) => {
            tracing::warn!(%err, "cannot watch SIGTERM; stop the server with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG (default `default_level`).
pub fn init_tracing(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A second initialization (not expected) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_use_loopback_for_wildcard_binds() {
        assert_eq!(
            local_url("0.0.0.0:7878".parse().unwrap()),
            "http://127.0.0.1:7878"
        );
        assert_eq!(local_url("[::]:80".parse().unwrap()), "http://127.0.0.1:80");
        assert_eq!(
            local_url("127.0.0.1:9".parse().unwrap()),
            "http://127.0.0.1:9"
        );
        assert_eq!(local_url("[::1]:9".parse().unwrap()), "http://[::1]:9");
    }
}
