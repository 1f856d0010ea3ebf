//! Where things live on disk and how a client finds its server: the data directory, the
//! `server.json` a running server writes (URL, API token, pid), the persistent API token, and the
//! resolution of `--url`/`--token` (flags, then environment, then `server.json`, then the login
//! `atelier login` saved in the XDG config folder).

use crate::GlobalArgs;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a running server publishes in `<data-dir>/server.json` (mode 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFile {
    pub url: String,
    pub token: String,
    pub pid: u32,
}

/// The server a client talks to and the bearer token it presents.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub token: String,
}

const NO_SERVER: &str =
    "no Atelier server found: start one with `atelier serve` or set ATELIER_URL and ATELIER_TOKEN";

/// `--data-dir`/`ATELIER_DATA_DIR`, else `$XDG_DATA_HOME/atelier`, else
/// `~/.local/share/atelier`; always absolute.
pub fn data_dir(global: &GlobalArgs) -> Result<PathBuf> {
    let dir = match &global.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    std::path::absolute(&dir)
        .with_context(|| format!("cannot make the data directory {} absolute", dir.display()))
}

fn default_data_dir() -> Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from) {
        // The XDG spec says relative values are to be ignored.
        if xdg.is_absolute() {
            return Ok(xdg.join("atelier"));
        }
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".local/share/atelier")),
        _ => bail!("cannot find a data directory: HOME is not set; pass --data-dir DIR"),
    }
}

/// Creates the data directory (mode 0700 for every directory it creates).
pub fn create_data_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// The API token in `<data-dir>/api-token`, created (32 random bytes, hex, mode 0600) on first
/// use so it stays the same across restarts.
pub fn load_or_create_api_token(dir: &Path) -> Result<String> {
    let path = dir.join("api-token");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < 32 {
                bail!(
                    "the API token in {} is too short (at least 32 characters): delete the file \
                     and restart to generate a new one",
                    path.display()
                );
            }
            Ok(token)
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            let token = hex::encode(rand::random::<[u8; 32]>());
            write_private(&path, format!("{token}\n").as_bytes(), true)?;
            Ok(token)
        }
        Err(err) => {
            Err(err).with_context(|| format!("cannot read the API token {}", path.display()))
        }
    }
}

/// Writes `server.json` atomically (temp file + rename), readable by the owner only.
pub fn write_server_file(dir: &Path, file: &ServerFile) -> Result<()> {
    let path = dir.join("server.json");
    let tmp = dir.join(format!("server.json.{}.tmp", std::process::id()));
    let json = serde_json::to_vec_pretty(file).context("cannot encode server.json")?;
    write_private(&tmp, &json, false)?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Removes `server.json` if it still describes the server with `pid` (a newer server may have
/// replaced it).
pub fn remove_server_file(dir: &Path, pid: u32) {
    let path = dir.join("server.json");
    if let Ok(Some(file)) = read_server_file(dir)
        && file.pid == pid
        && let Err(err) = fs::remove_file(&path)
    {
        tracing::warn!(path = %path.display(), %err, "cannot remove server.json");
    }
}

/// `<data-dir>/server.json`, or `None` when no server ever wrote one.
pub fn read_server_file(dir: &Path) -> Result<Option<ServerFile>> {
    let path = dir.join("server.json");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).with_context(|| {
        format!(
            "{} is not a valid server file: delete it and restart `atelier serve`",
            path.display()
        )
    })
}

/// The server and token for an admin command. The token in `server.json` is only ever sent to
/// the URL of that same file, never to a URL given by flag or environment.
pub fn resolve_target(global: &GlobalArgs) -> Result<Target> {
    if let (Some(url), Some(token)) = (&global.url, &global.token) {
        return Ok(Target {
            url: normalize_url(url)?,
            token: token.clone(),
        });
    }
    let file = read_server_file(&data_dir(global)?)?;
    let login = read_login()?;
    let url = match (&global.url, &file, &login) {
        (Some(url), _, _) => normalize_url(url)?,
        (None, Some(file), _) => normalize_url(&file.url)?,
        (None, None, Some(login)) => normalize_url(&login.url)?,
        (None, None, None) => bail!(NO_SERVER),
    };
    let same = |other: &str| normalize_url(other).ok().as_deref() == Some(url.as_str());
    let token = match (&global.token, &file, &login) {
        (Some(token), _, _) => token.clone(),
        (None, Some(file), _) if same(&file.url) => file.token.clone(),
        (None, _, Some(login)) if same(&login.url) => login.token.clone(),
        _ => bail!(
            "no API token for the server at {url}: set ATELIER_TOKEN or pass --token (the \
             server keeps it in <its data-dir>/api-token)"
        ),
    };
    Ok(Target { url, token })
}

/// What `atelier login` keeps: the server and the API token made for this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFile {
    pub url: String,
    pub token: String,
}

/// `$XDG_CONFIG_HOME/atelier/login.json`, else `~/.config/atelier/login.json`.
pub fn login_file() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .context("cannot find the config folder: set HOME or XDG_CONFIG_HOME")?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("atelier").join("login.json"))
}

/// The saved login, if any.
pub fn read_login() -> Result<Option<LoginFile>> {
    let path = login_file()?;
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a saved login: remove it and log in again",
                path.display()
            )
        })?)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Saves the login (folder 0700, file 0600).
pub fn write_login(login: &LoginFile) -> Result<PathBuf> {
    let path = login_file()?;
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(&path, &serde_json::to_vec_pretty(login)?, false)?;
    Ok(path)
}

/// Checks the URL is plain `http://` (this build has no TLS) and drops a trailing slash.
pub fn normalize_url(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("https://") {
        bail!("cannot use {url}: this build of atelier speaks plain http only (use http://…)");
    }
    if !url.starts_with("http://") || url.len() <= "http://".len() {
        bail!("invalid server URL `{url}`: expected something like http://127.0.0.1:7878");
    }
    Ok(url.to_string())
}

/// Writes a file with mode 0600; `create_new` refuses to replace an existing one.
fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn global(dir: &Path) -> GlobalArgs {
        GlobalArgs {
            url: None,
            token: None,
            data_dir: Some(dir.to_path_buf()),
            json: false,
        }
    }

    #[test]
    fn api_token_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_api_token(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_api_token(dir.path()).unwrap(), first);
        let mode = fs::metadata(dir.path().join("api-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn target_comes_from_server_file_unless_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_target(&global(dir.path())).unwrap_err().to_string();
        assert!(err.contains("no Atelier server found"), "{err}");

        let file = ServerFile {
            url: "http://127.0.0.1:9/".into(),
            token: "t".into(),
            pid: 1,
        };
        write_server_file(dir.path(), &file).unwrap();
        let mode = fs::metadata(dir.path().join("server.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let target = resolve_target(&global(dir.path())).unwrap();
        assert_eq!(
            (target.url.as_str(), target.token.as_str()),
            ("http://127.0.0.1:9", "t")
        );

        // The local token is never sent to another server.
        let mut other = global(dir.path());
        other.url = Some("http://10.0.0.1:7878".into());
        assert!(resolve_target(&other).is_err());

        remove_server_file(dir.path(), 1);
        assert_eq!(read_server_file(dir.path()).unwrap(), None);
    }

    #[test]
    fn urls_must_be_plain_http() {
        assert_eq!(normalize_url("http://a:1/").unwrap(), "http://a:1");
        assert!(normalize_url("https://a").is_err());
        assert!(normalize_url("a:1").is_err());
    }
}
