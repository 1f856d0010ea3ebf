//! What OpenCode needs in the agent's home so that it never reaches the npm registry.
//!
//! At every start OpenCode (1.18.33, `ConfigPaths.directories` then `Npm.install`) walks its
//! config folders — the global one (`$XDG_CONFIG_HOME/opencode`, else `~/.config/opencode`),
//! the `.opencode` folders from the working directory up to the worktree's root, `~/.opencode`
//! and `OPENCODE_CONFIG_DIR` — and, in the background, installs `@opencode-ai/plugin` into each
//! one with npm's own installer (Arborist, from `registry.npmjs.org`) unless the folder already
//! has a `node_modules` folder and a `package-lock.json` whose root lists every dependency its
//! `package.json` names plus `@opencode-ai/plugin`. No variable or setting turns it off
//! (`OPENCODE_DISABLE_DEFAULT_PLUGINS`, `OPENCODE_PURE` and `OPENCODE_FAST_BOOT` do not), and a
//! fresh agent home has neither file, so every run of an empty home went to the registry (and
//! filled `~/.npm/_cacache`).
//!
//! [`prepare_config_dir`] gives the global folder what that check looks for: an empty
//! `node_modules` and a lock naming the plugin. Nothing is downloaded or installed; the plugin
//! package is only needed by plugins written in the config folder, which an agent home does not
//! have. The agent's home still starts empty: the harness adds these two entries before each
//! turn (idempotent).
//!
//! The home is writable by the agent, so nothing here follows a link the agent could have
//! planted: the folders below the base must be real folders, and the lock is replaced by a
//! rename (which replaces a link instead of writing through it).

use std::io;
use std::path::{Path, PathBuf};

/// The package OpenCode installs into each of its config folders.
pub const PLUGIN_PACKAGE: &str = "@opencode-ai/plugin";

/// Where OpenCode's global config folder is for the agent's environment: the base folder
/// (`XDG_CONFIG_HOME` when set, else `HOME`) and the folders below it. `None` without an
/// absolute base.
pub fn global_config_dir(env: &[(String, String)]) -> Option<(PathBuf, &'static [&'static str])> {
    let get = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| PathBuf::from(v))
    };
    match get("XDG_CONFIG_HOME") {
        Some(base) => base.is_absolute().then_some((base, &["opencode"][..])),
        None => get("HOME")
            .filter(|home| home.is_absolute())
            .map(|home| (home, &[".config", "opencode"][..])),
    }
}

/// Makes `<base>/<below…>` (creating what is missing) hold an empty `node_modules` folder and a
/// `package-lock.json` whose root depends on [`PLUGIN_PACKAGE`], so OpenCode sees its
/// dependencies as installed. A lock that already names the plugin is left alone; another lock
/// keeps its content with the plugin added; an unreadable one is replaced. Returns the folder.
pub fn prepare_config_dir(base: &Path, below: &[&str]) -> io::Result<PathBuf> {
    std::fs::create_dir_all(base)?;
    let mut dir = base.to_path_buf();
    for name in below {
        dir.push(name);
        real_dir(&dir)?;
    }
    real_dir(&dir.join("node_modules"))?;
    let lock = dir.join("package-lock.json");
    let Some(content) = lock_content(&lock) else {
        return Ok(dir);
    };
    let temp = dir.join(format!(".package-lock.json.atelier-{}", std::process::id()));
    match std::fs::remove_file(&temp) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| io::Write::write_all(&mut file, content.as_bytes()))
        .and_then(|()| std::fs::rename(&temp, &lock));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map(|()| dir)
}

/// Creates `path` as a folder, or checks that it is one (not a link to one).
fn real_dir(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::other(format!(
            "{} is not a folder (a link or a file is in its place); remove it",
            path.display()
        ))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => std::fs::create_dir(path),
        Err(err) => Err(err),
    }
}

/// The lock to write, or `None` when the one at `path` already names the plugin.
fn lock_content(path: &Path) -> Option<String> {
    let existing = std::fs::symlink_metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .and_then(|_| std::fs::read_to_string(path).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .filter(serde_json::Value::is_object);
    let mut lock = match existing {
        Some(lock) if !lock["packages"][""]["dependencies"][PLUGIN_PACKAGE].is_null() => {
            return None;
        }
        Some(lock) => lock,
        None => serde_json::json!({
            "name": "opencode-config",
            "lockfileVersion": 3,
            "requires": true,
            "packages": {},
        }),
    };
    let packages = object_at(&mut lock, "packages");
    let root = object_at(packages, "");
    let dependencies = object_at(root, "dependencies");
    dependencies[PLUGIN_PACKAGE] = "*".into();
    Some(format!("{lock:#}\n"))
}

/// `value[key]` (`value` being an object), made an object when it is anything else.
fn object_at<'v>(value: &'v mut serde_json::Value, key: &str) -> &'v mut serde_json::Value {
    let entry = &mut value[key];
    if !entry.is_object() {
        *entry = serde_json::json!({});
    }
    entry
}
