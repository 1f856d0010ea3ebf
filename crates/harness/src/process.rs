//! Agent child processes: spawned from an explicit environment in their own process group,
//! and stopped by killing every descendant (the agent CLIs start tools in groups of their own).

use std::ffi::OsString;
use std::path::PathBuf;

/// Everything needed to start an agent process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// The complete environment (the child starts from an empty one).
    pub env: Vec<(String, String)>,
    /// Written to stdin, which is then closed; `None` gives `/dev/null`.
    pub stdin: Option<Vec<u8>>,
}
