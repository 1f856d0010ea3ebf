//! The stamp of what Codex reads when a thread starts, so that a warm process can start its
//! thread at boot and still never hand a run a thread built from files that changed since.
//!
//! What Codex 0.169.0 reads at `thread/start` (seen with `strace -f -e trace=file` on
//! `codex app-server`, and in its `agents_md.rs`), and so what the stamp covers:
//! - in each folder from the repository root (the nearest folder holding `.git`, the working
//!   directory itself if none) down to the working directory: `AGENTS.override.md`,
//!   `AGENTS.md`, the project configuration folder `.codex/` (its `config.toml`, rules, hooks,
//!   agents, skills) and `.agents/skills/`;
//! - in Codex's home (`$CODEX_HOME`, else `$HOME/.codex`): `config.toml`, `AGENTS.override.md`,
//!   `AGENTS.md`, `hooks.json`, `rules/`, `agents/` and `skills/` (but `skills/.system`, the
//!   skills Codex installs from its own binary);
//! - in `$HOME`: `.agents/skills/`, and the shell start-up files the thread's shell snapshot
//!   runs (`bash -lc`): `.bash_profile`, `.bash_login`, `.profile`, `.bashrc`.
//!
//! Left out: `/etc/codex/` (the system's, read-only to agents), the repository's git metadata
//! (Codex records HEAD and branch with the thread, but sends the model none of it; the engine
//! puts a git status taken at the hand-off into the prompt), and the environment (a process's
//! is fixed when it starts).
//!
//! A stamp holds each file's bytes (not a hash: equal stamps mean equal content, no collision
//! can hide a change) and each folder's entries. It is cheap and bounded — a few `lstat`s and
//! small reads, at most [`FILE_CAP`] bytes a file, [`TOTAL_CAP`] in all, [`MOST_ENTRIES`]
//! entries, [`DEPTH`] folder levels — and it follows no link it finds (a folder swapped for a
//! link between its check and its read is still followed: the reads stay capped, and a stamp is
//! only compared, never acted on): the worktree and the home
//! are the agent's to write, so a symbolic link, a special file (a FIFO would block a read), a
//! file or folder over a cap, an unreadable entry, or a configuration file with a key that
//! names other files (`project_doc_fallback_filenames`, `model_instructions_file`, …) makes the
//! stamp [`Unusable`]: the bridge then starts a fresh thread at the first turn, as a cold
//! process does.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The most bytes read of one file.
pub const FILE_CAP: u64 = 64 * 1024;
/// The most bytes read for one stamp.
pub const TOTAL_CAP: u64 = 256 * 1024;
/// The most entries (files, folders, absences) in one stamp.
pub const MOST_ENTRIES: usize = 512;
/// The deepest folder level looked into below a stamped folder.
pub const DEPTH: usize = 4;

/// The instruction files Codex looks for in each folder, in its order.
const INSTRUCTIONS: [&str; 2] = ["AGENTS.override.md", "AGENTS.md"];
/// The shell start-up files of a login `bash` (the thread's shell snapshot).
const SHELL_FILES: [&str; 4] = [".bash_profile", ".bash_login", ".profile", ".bashrc"];
/// Words of configuration keys that name other files or change where Codex looks.
const FILE_KEYS: [&str; 6] = ["file", "path", "dir", "marker", "root", "instructions"];

/// What Codex would read at a thread's start, as found at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    entries: Vec<(PathBuf, Entry)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Absent,
    Folder,
    File(Vec<u8>),
}

/// Why no stamp could be taken (a fresh thread is started at the first turn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where Codex looks: the working directory, `$HOME` and Codex's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    pub cwd: PathBuf,
    pub home: Option<PathBuf>,
    pub codex_home: Option<PathBuf>,
}

impl Places {
    /// The bridge's own: its working directory (Codex's, and the thread's `cwd`), `$HOME` and
    /// `$CODEX_HOME` (else `$HOME/.codex`).
    pub fn here() -> Places {
        let cwd = std::env::current_dir().unwrap_or_default();
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let codex_home = std::env::var_os("CODEX_HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".codex")));
        Places {
            cwd,
            home,
            codex_home,
        }
    }
}

/// Takes the stamp of what Codex reads at a thread's start in `places`.
pub fn take(places: &Places) -> Result<Stamp, Unusable> {
    let mut taker = Taker {
        stamp: Stamp {
            entries: Vec::new(),
        },
        read: 0,
    };
    for dir in search_dirs(&places.cwd) {
        for name in INSTRUCTIONS {
            taker.file(&dir.join(name))?;
        }
        taker.tree(&dir.join(".codex"), &[])?;
        if taker.folder(&dir.join(".agents"))? {
            taker.tree(&dir.join(".agents").join("skills"), &[])?;
        }
    }
    if let Some(codex_home) = &places.codex_home
        && taker.folder(codex_home)?
    {
        for name in [
            "config.toml",
            INSTRUCTIONS[0],
            INSTRUCTIONS[1],
            "hooks.json",
        ] {
            taker.file(&codex_home.join(name))?;
        }
        taker.tree(&codex_home.join("rules"), &[])?;
        taker.tree(&codex_home.join("agents"), &[])?;
        taker.tree(&codex_home.join("skills"), &[".system"])?;
    }
    if let Some(home) = &places.home {
        if taker.folder(&home.join(".agents"))? {
            taker.tree(&home.join(".agents").join("skills"), &[])?;
        }
        for name in SHELL_FILES {
            taker.file(&home.join(name))?;
        }
    }
    Ok(taker.stamp)
}

/// The folders Codex reads instructions from: the repository root down to `cwd`, or `cwd` alone
/// outside a repository.
pub fn search_dirs(cwd: &Path) -> Vec<PathBuf> {
    let root = cwd
        .ancestors()
        .find(|dir| std::fs::symlink_metadata(dir.join(".git")).is_ok());
    match root {
        Some(root) => {
            let mut dirs: Vec<PathBuf> = cwd
                .ancestors()
                .take_while(|dir| *dir != root)
                .map(Path::to_path_buf)
                .collect();
            dirs.push(root.to_path_buf());
            dirs.reverse();
            dirs
        }
        None => vec![cwd.to_path_buf()],
    }
}

struct Taker {
    stamp: Stamp,
    read: u64,
}

impl Taker {
    fn push(&mut self, path: &Path, entry: Entry) -> Result<(), Unusable> {
        if self.stamp.entries.len() >= MOST_ENTRIES {
            return Err(unusable(path, "one entry too many to compare"));
        }
        self.stamp.entries.push((path.to_path_buf(), entry));
        Ok(())
    }

    /// Notes whether `path` is a folder (absent: `false`); anything else is unusable.
    fn folder(&mut self, path: &Path) -> Result<bool, Unusable> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                self.push(path, Entry::Folder)?;
                Ok(true)
            }
            Ok(_) => Err(unusable(path, "not a plain folder")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.push(path, Entry::Absent)?;
                Ok(false)
            }
            Err(err) => Err(unusable(path, &err.to_string())),
        }
    }

    /// Notes the regular file at `path`, or its absence.
    fn file(&mut self, path: &Path) -> Result<(), Unusable> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => {
                let bytes = self.read(path)?;
                check_config(path, &bytes)?;
                self.push(path, Entry::File(bytes))
            }
            Ok(_) => Err(unusable(path, "not a plain file")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.push(path, Entry::Absent)
            }
            Err(err) => Err(unusable(path, &err.to_string())),
        }
    }

    /// Notes the folder at `path` and everything in it (but the names in `skip` at its top), or
    /// its absence.
    fn tree(&mut self, path: &Path, skip: &[&str]) -> Result<(), Unusable> {
        // A stack of (path, depth), the next to look at last.
        let mut stack = vec![(path.to_path_buf(), 0)];
        while let Some((path, depth)) = stack.pop() {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound && depth == 0 => {
                    self.push(&path, Entry::Absent)?;
                    continue;
                }
                Err(err) => return Err(unusable(&path, &err.to_string())),
            };
            if meta.is_file() {
                self.file(&path)?;
                continue;
            }
            if !meta.is_dir() {
                return Err(unusable(&path, "neither a plain file nor a folder"));
            }
            if depth >= DEPTH {
                return Err(unusable(&path, "too deep to compare"));
            }
            let mut names = Vec::new();
            let entries = std::fs::read_dir(&path).map_err(|e| unusable(&path, &e.to_string()))?;
            for entry in entries {
                let entry = entry.map_err(|e| unusable(&path, &e.to_string()))?;
                let name = entry.file_name();
                if depth == 0 && skip.iter().any(|s| name == *s) {
                    continue;
                }
                if names.len() >= MOST_ENTRIES {
                    return Err(unusable(&path, "too many entries to compare"));
                }
                names.push(name);
            }
            // An empty folder at the top (but for what is skipped) is as good as none: Codex
            // creates `skills/.system` itself.
            let entry = if depth == 0 && names.is_empty() {
                Entry::Absent
            } else {
                Entry::Folder
            };
            self.push(&path, entry)?;
            names.sort();
            stack.extend(names.into_iter().rev().map(|n| (path.join(n), depth + 1)));
        }
        Ok(())
    }

    /// The bytes of the regular file at `path`: opened without following a final symbolic link
    /// (and without blocking on a FIFO put there meanwhile), at most [`FILE_CAP`] of them.
    fn read(&mut self, path: &Path) -> Result<Vec<u8>, Unusable> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| unusable(path, &e.to_string()))?;
        let meta = file
            .metadata()
            .map_err(|e| unusable(path, &e.to_string()))?;
        if !meta.is_file() {
            return Err(unusable(path, "not a plain file"));
        }
        let cap = FILE_CAP.min(TOTAL_CAP.saturating_sub(self.read));
        let mut bytes = Vec::new();
        file.take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unusable(path, &e.to_string()))?;
        if bytes.len() as u64 > cap {
            return Err(unusable(path, "too large to compare"));
        }
        self.read += bytes.len() as u64;
        Ok(bytes)
    }
}

/// A configuration file (`*.toml`) whose keys could name other files Codex would read (or move
/// where it looks) cannot be stamped by its own bytes alone.
fn check_config(path: &Path, bytes: &[u8]) -> Result<(), Unusable> {
    if path.extension().is_none_or(|e| e != "toml") {
        return Ok(());
    }
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        // An inline table (`profiles = { p = { model_instructions_file = … } }`) holds keys in
        // its value: the whole line is checked then.
        let key = if value.contains('{') {
            line.to_ascii_lowercase()
        } else {
            key.to_ascii_lowercase()
        };
        if FILE_KEYS.iter().any(|word| key.contains(word)) {
            return Err(unusable(
                path,
                &format!("its key `{}` may name other files", key.trim()),
            ));
        }
    }
    Ok(())
}

fn unusable(path: &Path, why: &str) -> Unusable {
    Unusable(format!("{}: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct World {
        _dir: tempfile::TempDir,
        places: Places,
        root: PathBuf,
    }

    /// A repository `repo` with the working directory `repo/sub`, and a home.
    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let cwd = root.join("sub");
        let home = dir.path().join("home");
        for d in [&root.join(".git"), &cwd, &home.join(".codex")] {
            fs::create_dir_all(d).unwrap();
        }
        let places = Places {
            cwd,
            codex_home: Some(home.join(".codex")),
            home: Some(home),
        };
        World {
            _dir: dir,
            places,
            root,
        }
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, text).unwrap();
    }

    fn stamp(w: &World) -> Stamp {
        take(&w.places).unwrap()
    }

    #[test]
    fn instructions_are_looked_for_from_the_repository_root_down() {
        let w = world();
        assert_eq!(
            search_dirs(&w.places.cwd),
            vec![w.root.clone(), w.places.cwd.clone()]
        );
        let outside = w.root.parent().map(Path::to_path_buf).unwrap_or_default();
        assert_eq!(search_dirs(&outside), vec![outside.clone()]);
    }

    #[test]
    fn the_stamp_is_the_same_until_something_codex_reads_changes() {
        let w = world();
        let home = w.places.home.clone().unwrap_or_default();
        let codex_home = w.places.codex_home.clone().unwrap_or_default();
        write(&w.root.join("AGENTS.md"), "Be brief.\n");
        let before = stamp(&w);
        // What Codex does not read at a thread's start changes nothing.
        write(&w.places.cwd.join("hello.txt"), "hi\n");
        write(&w.root.join("README.md"), "# x\n");
        write(&codex_home.join("sessions/rollout.jsonl"), "{}\n");
        write(&codex_home.join("skills/.system/marker"), "1\n");
        assert_eq!(stamp(&w), before);
        // Each thing it reads does, even rewritten to the same length.
        let changes: Vec<(PathBuf, &str)> = vec![
            (w.root.join("AGENTS.md"), "Be brave.\n"),
            (w.places.cwd.join("AGENTS.md"), "x"),
            (w.places.cwd.join("AGENTS.override.md"), "x"),
            (w.root.join(".codex/config.toml"), "model = \"m\"\n"),
            (w.root.join(".codex/rules/default.rules"), "x"),
            (w.places.cwd.join(".agents/skills/s/SKILL.md"), "x"),
            (codex_home.join("AGENTS.md"), "x"),
            (codex_home.join("config.toml"), "model = \"m\"\n"),
            (codex_home.join("hooks.json"), "{}"),
            (codex_home.join("skills/mine/SKILL.md"), "x"),
            (home.join(".agents/skills/s/SKILL.md"), "x"),
            (home.join(".profile"), "export A=1\n"),
            (home.join(".bashrc"), "alias x=y\n"),
        ];
        let mut last = stamp(&w);
        for (path, text) in changes {
            write(&path, text);
            let now = stamp(&w);
            assert_ne!(now, last, "{}", path.display());
            last = now;
        }
    }

    #[test]
    fn links_special_files_and_big_files_are_not_stamped() {
        let w = world();
        // A link to a file outside: never followed.
        let outside = w
            .root
            .parent()
            .map(|p| p.join("secret"))
            .unwrap_or_default();
        write(&outside, "x");
        let link = w.root.join("AGENTS.md");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(take(&w.places).is_err());
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(w.root.parent().unwrap_or(&w.root), w.root.join(".codex"))
            .unwrap();
        assert!(take(&w.places).is_err());
        fs::remove_file(w.root.join(".codex")).unwrap();
        assert!(take(&w.places).is_ok());
        // A FIFO: not opened (a read would block).
        let made = std::process::Command::new("mkfifo")
            .arg(w.places.cwd.join("AGENTS.md"))
            .status()
            .unwrap();
        assert!(made.success());
        let err = take(&w.places).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("not a plain file"), "{err}");
        fs::remove_file(w.places.cwd.join("AGENTS.md")).unwrap();
        // Over the caps.
        write(
            &w.root.join("AGENTS.md"),
            &"x".repeat(FILE_CAP as usize + 1),
        );
        assert!(take(&w.places).is_err());
        write(&w.root.join("AGENTS.md"), &"x".repeat(FILE_CAP as usize));
        assert!(take(&w.places).is_ok());
        for i in 0..MOST_ENTRIES {
            write(&w.root.join(format!(".codex/skills/{i}")), "");
        }
        assert!(take(&w.places).is_err());
        fs::remove_dir_all(w.root.join(".codex")).unwrap();
        write(&w.root.join(".codex/a/b/c/d/e"), "");
        let err = take(&w.places).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("too deep"), "{err}");
    }

    #[test]
    fn a_configuration_naming_other_files_is_not_stamped() {
        let w = world();
        let codex_home = w.places.codex_home.clone().unwrap_or_default();
        write(
            &codex_home.join("config.toml"),
            "# a comment about files\nmodel = \"gpt-5.5\"\n[projects.\"/x/dir\"]\ntrust_level = \"trusted\"\n",
        );
        assert!(take(&w.places).is_ok());
        for line in [
            "project_doc_fallback_filenames = [\"NOTES.md\"]",
            "model_instructions_file = \"/x\"",
            "project_root_markers = []",
            "profiles = { p = { model_instructions_file = \"notes.md\" } }",
        ] {
            write(&w.root.join(".codex/config.toml"), line);
            let err = take(&w.places).err().map(|e| e.0).unwrap_or_default();
            assert!(err.contains("may name other files"), "{line}: {err}");
        }
    }
}
