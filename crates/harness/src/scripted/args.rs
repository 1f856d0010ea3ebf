//! The command line of the hidden `atelier scripted-agent` subcommand, written by
//! [`ScriptedHarness::command`](super::ScriptedHarness) and read back by the CLI, kept in one
//! place so both sides agree.

use std::ffi::OsString;
use std::path::PathBuf;

/// What the scripted agent plays: turn `turn` of run `iteration` of the `scenario` file,
/// resuming `session` when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentArgs {
    pub scenario: PathBuf,
    pub iteration: u32,
    pub turn: u32,
    pub session: Option<String>,
}

impl AgentArgs {
    /// The arguments after the `scripted-agent` subcommand:
    /// `--scenario PATH --iteration N --turn M [--session ID]`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--scenario".into(),
            self.scenario.clone().into_os_string(),
            "--iteration".into(),
            self.iteration.to_string().into(),
            "--turn".into(),
            self.turn.to_string().into(),
        ];
        if let Some(session) = &self.session {
            args.push("--session".into());
            args.push(session.into());
        }
        args
    }

    /// Parses what [`to_args`](Self::to_args) writes (flags in any order, `--flag value` or
    /// `--flag=value`). For a CLI that does not declare the flags itself.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<AgentArgs, String> {
        let mut scenario = None;
        let mut iteration = None;
        let mut turn = None;
        let mut session = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let arg = arg
                .into_string()
                .map_err(|a| format!("unexpected argument {}", a.to_string_lossy()))?;
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(OsString::from(value))),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            let number = |v: OsString| {
                v.to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| format!("{flag} needs a number, not {}", v.to_string_lossy()))
            };
            match flag.as_str() {
                "--scenario" => scenario = Some(PathBuf::from(value()?)),
                "--iteration" => iteration = Some(number(value()?)?),
                "--turn" => turn = Some(number(value()?)?),
                "--session" => {
                    let v = value()?;
                    let s = v
                        .into_string()
                        .map_err(|_| "--session needs a UTF-8 id".to_string())?;
                    session = Some(s);
                }
                other => return Err(format!("unexpected argument {other}")),
            }
        }
        Ok(AgentArgs {
            scenario: scenario.ok_or("--scenario is required")?,
            iteration: iteration.unwrap_or(0),
            turn: turn.unwrap_or(0),
            session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn round_trips() {
        for session in [None, Some("scripted-1".to_string())] {
            let args = AgentArgs {
                scenario: "/s/plan.json".into(),
                iteration: 3,
                turn: 1,
                session,
            };
            assert_eq!(AgentArgs::parse(args.to_args()), Ok(args));
        }
    }

    #[test]
    fn parses_equals_form_and_defaults() {
        assert_eq!(
            AgentArgs::parse(os(&["--turn=2", "--scenario=/a b.json"])),
            Ok(AgentArgs {
                scenario: "/a b.json".into(),
                iteration: 0,
                turn: 2,
                session: None,
            })
        );
    }

    #[test]
    fn explains_bad_arguments() {
        let err = |a: &[&str]| AgentArgs::parse(os(a)).unwrap_err();
        assert_eq!(err(&[]), "--scenario is required");
        assert_eq!(err(&["--scenario"]), "--scenario needs a value");
        assert_eq!(
            err(&["--scenario", "x", "--turn", "two"]),
            "--turn needs a number, not two"
        );
        assert_eq!(
            err(&["--scenario", "x", "--verbose"]),
            "unexpected argument --verbose"
        );
    }
}
