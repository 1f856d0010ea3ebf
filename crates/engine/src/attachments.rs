//! A task's attachments: files kept in `<doc folder>/attachments/` — what a person attaches to a
//! request, and the evidence agents store (screenshots, command outputs). The folder is inside
//! the doc folder, which a task's agent may write, so the engine treats everything in it as
//! planted by an adversary: it opens the folder once and works through that open handle
//! (`/proc/self/fd/N/<name>`), accepts regular files only (a symlink, to the data directory or
//! anywhere, is never followed: a file is opened only when its identity matches what `lstat`
//! saw), creates with `O_EXCL` and renames into place. Names are plain: letters, digits, `._-`.

use crate::Engine;
use crate::error::{EngineError, Result};
use domain::TaskId;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The largest attachment read back (the request body limit bounds uploads).
pub const MAX_ATTACHMENT_BYTES: u64 = 50_000_000;

/// One attachment as listed.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct AttachmentView {
    pub name: String,
    pub size: u64,
    /// When it was last written (ms since the epoch).
    pub modified_at: i64,
}

impl Engine {
    /// The task's attachments, by name.
    pub fn attachments(&self, id: TaskId) -> Result<Vec<AttachmentView>> {
        list_in(&self.attachments_dir(id)?)
    }

    /// The content of attachment `name`.
    pub fn attachment(&self, id: TaskId, name: &str) -> Result<Vec<u8>> {
        check_name(name)?;
        let dir = self.attachments_dir(id)?;
        let missing = || EngineError::NotFound(format!("task {id} has no attachment `{name}`"));
        let folder = open_folder(&dir, false)?.ok_or_else(missing)?;
        let mut file = match crate::doc_file::open_regular(&through(&folder, name)) {
            Ok(Some(file)) => file,
            Ok(None) => return Err(missing()),
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => return Err(missing()),
            Err(err) => return Err(io(&dir)(err)),
        };
        let opened = file.metadata().map_err(io(&dir))?;
        if opened.len() > MAX_ATTACHMENT_BYTES {
            return Err(EngineError::InvalidInput(format!(
                "the attachment `{name}` is {} bytes, more than the {MAX_ATTACHMENT_BYTES} served",
                opened.len()
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(io(&dir))?;
        Ok(bytes)
    }

    /// Stores `bytes` as attachment `name` (replacing one of that name). Members of the task's
    /// project may.
    pub fn add_attachment(&self, id: TaskId, name: &str, bytes: &[u8]) -> Result<AttachmentView> {
        check_name(name)?;
        let dir = self.attachments_dir(id)?;
        write_in(&dir, name, bytes)?;
        self.audit("task.attach", &format!("task {id}"), Some(name));
        Ok(AttachmentView {
            name: name.to_string(),
            size: bytes.len() as u64,
            modified_at: store::now_ms(),
        })
    }

    fn attachments_dir(&self, id: TaskId) -> Result<PathBuf> {
        let doc_path = self.inner.store.read(|tx| {
            self.check_task(tx, id)?;
            let task = tx
                .task(id)?
                .ok_or_else(|| crate::transition::not_found(id))?;
            Ok::<_, EngineError>(task.doc_path)
        })?;
        folder_of(&doc_path)
    }
}

/// The attachments folder of the task whose doc is at `doc_path`.
pub(crate) fn folder_of(doc_path: &str) -> Result<PathBuf> {
    let doc_dir = Path::new(doc_path)
        .parent()
        .ok_or_else(|| EngineError::Internal(format!("the doc {doc_path} has no folder")))?;
    Ok(doc_dir.join("attachments"))
}

/// The attachments in the folder `dir`, by name (none when it does not exist): regular files
/// with plain names only.
pub(crate) fn list_in(dir: &Path) -> Result<Vec<AttachmentView>> {
    let Some(folder) = open_folder(dir, false)? else {
        return Ok(Vec::new());
    };
    let mut list = Vec::new();
    for entry in std::fs::read_dir(through(&folder, "")).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if check_name(&name).is_err() {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(through(&folder, &name)) else {
            continue;
        };
        if meta.is_file() {
            list.push(AttachmentView {
                name,
                size: meta.len(),
                modified_at: meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000,
            });
        }
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

/// Stores `bytes` as `name` in the attachments folder `dir` (made when missing), replacing a
/// file of that name: written to a new temporary file (`O_EXCL`) in the open folder, then
/// renamed into place, so neither a planted symlink nor a half-written file is ever read.
pub(crate) fn write_in(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static UPLOADS: AtomicU64 = AtomicU64::new(0);
    check_name(name)?;
    let folder = open_folder(dir, true)?.ok_or_else(|| {
        EngineError::Internal(format!("cannot create the folder {}", dir.display()))
    })?;
    let tmp_name = format!(
        ".upload-{}-{}-{name}",
        std::process::id(),
        UPLOADS.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = through(&folder, &tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io(dir))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(dir)(err));
    }
    std::fs::rename(&tmp, through(&folder, name)).map_err(io(dir))
}

/// A name is 1–128 letters, digits, `.`, `_` or `-`, not starting with `.`.
pub fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        Ok(())
    } else {
        Err(EngineError::InvalidInput(format!(
            "invalid attachment name {name:?}: use 1-128 letters, digits, `.`, `_` or `-`, not starting with `.`"
        )))
    }
}

/// The attachments folder opened (made first when `create`), checked to be a real folder and
/// not a symlink; `None` when it does not exist and `create` is false.
fn open_folder(dir: &Path, create: bool) -> Result<Option<File>> {
    if create
        && let Err(err) = std::fs::create_dir(dir)
        && err.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(io(dir)(err));
    }
    let seen = match std::fs::symlink_metadata(dir) {
        Ok(seen) => seen,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io(dir)(err)),
    };
    if !seen.is_dir() {
        return Err(EngineError::Conflict(format!(
            "{} is not a folder (something replaced it): remove it",
            dir.display()
        )));
    }
    let folder = File::open(dir).map_err(io(dir))?;
    let opened = folder.metadata().map_err(io(dir))?;
    if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Err(EngineError::Conflict(format!(
            "{} changed while it was opened: try again",
            dir.display()
        )));
    }
    Ok(Some(folder))
}

/// `name` inside the open `folder`, whatever its path now points to.
fn through(folder: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", folder.as_raw_fd())).join(name)
}

fn io(dir: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |err| EngineError::Internal(format!("attachments in {}: {err}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        for good in ["shot.png", "qa-1_log.txt", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".env", "../x", "a/b", "a b", "é.png", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_symlinked_folder_or_file_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("api-token"), "hunter2").unwrap();
        // A folder replaced by a symlink is refused.
        let planted = dir.path().join("attachments");
        std::os::unix::fs::symlink(&secret, &planted).unwrap();
        assert!(open_folder(&planted, false).is_err());
        std::fs::remove_file(&planted).unwrap();
        // A file symlink inside a real folder is not a file.
        let folder_path = dir.path().join("real");
        std::fs::create_dir(&folder_path).unwrap();
        std::os::unix::fs::symlink(secret.join("api-token"), folder_path.join("token.txt"))
            .unwrap();
        let folder = open_folder(&folder_path, false).unwrap().unwrap();
        let meta = std::fs::symlink_metadata(through(&folder, "token.txt")).unwrap();
        assert!(!meta.is_file());
        // Creating never writes through a planted symlink.
        std::os::unix::fs::symlink(secret.join("new"), folder_path.join("x")).unwrap();
        assert!(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(through(&folder, "x"))
                .is_err()
        );
        assert!(!secret.join("new").exists());
    }
}
