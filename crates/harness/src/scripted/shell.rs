//! Small shell helpers shared by the scripted agent and the model simulator: quoting one
//! argument as a shell word, and running a command with its output captured.

use std::io::{self, Read};
use std::process::{Command, Stdio};

/// Runs `cmd` with stdin from `/dev/null` and stdout and stderr into one pipe; returns the
/// combined output (lossy UTF-8) and the exit code (`None` when killed by a signal).
pub(crate) fn run_captured(mut cmd: Command) -> io::Result<(String, Option<i32>)> {
    let (mut reader, writer) = io::pipe()?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = cmd.spawn()?;
    // The command holds our copies of the write end; drop it so EOF arrives when the child ends.
    drop(cmd);
    let mut output = Vec::new();
    let read = reader.read_to_end(&mut output);
    let status = child.wait()?;
    read?;
    Ok((String::from_utf8_lossy(&output).into_owned(), status.code()))
}

/// Quotes `arg` as one POSIX shell word (unchanged when it needs no quoting).
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
