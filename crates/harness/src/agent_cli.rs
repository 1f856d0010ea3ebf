//! The agent CLIs Atelier drives, as an operator installs them: the npm package and version each
//! is tested against (the pins, in `agent-clis.txt` beside this crate's manifest, which
//! `scripts/test` installs from too), the `atelier serve` flag and variable that name its
//! executable, and the words of the error when it cannot start. Whether it starts is asked with
//! `<cli> --version` ([`crate::process::version_of`]).

use std::path::Path;

/// One agent CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentCli {
    /// The harness that runs it (`claude-code`, `codex`, `opencode`).
    pub harness: &'static str,
    /// What people call it.
    pub name: &'static str,
    /// The executable looked up on the agents' `PATH` when no path is given.
    pub default_bin: &'static str,
    /// The `atelier serve` flag that names its executable.
    pub flag: &'static str,
    /// The variable that does the same.
    pub env: &'static str,
}

/// Every agent CLI, in the order they are shown.
pub const AGENT_CLIS: [AgentCli; 3] = [
    AgentCli {
        harness: "claude-code",
        name: "Claude Code",
        default_bin: "claude",
        flag: "--claude-bin",
        env: "ATELIER_CLAUDE_BIN",
    },
    AgentCli {
        harness: "codex",
        name: "Codex",
        default_bin: "codex",
        flag: "--codex-bin",
        env: "ATELIER_CODEX_BIN",
    },
    AgentCli {
        harness: "opencode",
        name: "OpenCode",
        default_bin: "opencode",
        flag: "--opencode-bin",
        env: "ATELIER_OPENCODE_BIN",
    },
];

/// The pins: `<harness> <package>@<version>` lines.
const PINS: &str = include_str!("../agent-clis.txt");

impl AgentCli {
    /// The CLI a harness runs; `None` for one that runs no outside CLI (`scripted`).
    pub fn of(harness: &str) -> Option<&'static AgentCli> {
        AGENT_CLIS.iter().find(|c| c.harness == harness)
    }

    /// The pinned npm package, e.g. `@anthropic-ai/claude-code@2.1.330`.
    pub fn package(&self) -> &'static str {
        PINS.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .find(|(harness, _)| *harness == self.harness)
            .map_or("", |(_, package)| package.trim())
    }

    /// The command that installs the pinned version.
    pub fn install_command(&self) -> String {
        format!("npm install -g {}", self.package())
    }

    /// The error of a CLI that cannot start: which CLI, why, how to install it and how to tell
    /// Atelier where it is.
    pub fn cannot_start(&self, bin: &Path, why: &str) -> String {
        format!(
            "the {} CLI (`{}`, harness `{}`) cannot start: {why}. Install it with `{}` and give \
             its path to the server with `atelier serve {} PATH` (or {}=PATH)",
            self.name,
            bin.display(),
            self.harness,
            self.install_command(),
            self.flag,
            self.env,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cli_has_its_pin() {
        let packages: Vec<&str> = AGENT_CLIS.iter().map(AgentCli::package).collect();
        assert_eq!(
            packages,
            [
                "@anthropic-ai/claude-code@2.1.330",
                "@openai/codex@0.169.0",
                "opencode-ai@1.18.33"
            ]
        );
        assert_eq!(AgentCli::of("scripted"), None);
    }

    #[test]
    fn the_error_names_the_cli_the_install_command_and_the_flag() {
        let cli = AgentCli::of("claude-code").unwrap();
        assert_eq!(
            cli.cannot_start(
                Path::new("/opt/claude"),
                "No such file or directory (os error 2)"
            ),
            "the Claude Code CLI (`/opt/claude`, harness `claude-code`) cannot start: No such \
             file or directory (os error 2). Install it with `npm install -g \
             @anthropic-ai/claude-code@2.1.330` and give its path to the server with `atelier \
             serve --claude-bin PATH` (or ATELIER_CLAUDE_BIN=PATH)"
        );
    }
}
