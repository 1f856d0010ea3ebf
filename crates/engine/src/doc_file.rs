//! Reading files an agent can write — the task doc, attachments — which it could also replace
//! with a symlink to a file it cannot see but the server can (`api-token`, `secret.key`): the
//! server would then read the secret for it and show it to anyone who may see the task. Only a
//! regular file is opened: `lstat` first, then the opened file must be the one `lstat` saw.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The largest doc read (the rest is cut).
pub(crate) const DOC_LIMIT: u64 = 4_000_000;

/// The regular file at `path`, opened: `Ok(None)` when there is none, an `InvalidData` error
/// when it is not a regular file (a symlink, a folder) or changed while it was opened.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<Option<File>> {
    let seen = match std::fs::symlink_metadata(path) {
        Ok(seen) => seen,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if !seen.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file (replaced by a link?): it is not read",
        ));
    }
    let file = File::open(path)?;
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "changed while it was opened: it is not read",
        ));
    }
    Ok(Some(file))
}

/// The doc at `path` (at most [`DOC_LIMIT`] bytes), as [`open_regular`] opens it.
pub(crate) fn read(path: &Path) -> std::io::Result<Option<String>> {
    let Some(file) = open_regular(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.take(DOC_LIMIT).read_to_end(&mut bytes)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn only_a_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("api-token");
        std::fs::write(&secret, "hunter2").unwrap();
        let doc = dir.path().join("doc.md");
        assert_eq!(read(&doc).unwrap(), None);
        std::os::unix::fs::symlink(&secret, &doc).unwrap();
        let err = read(&doc).unwrap_err().to_string();
        assert!(
            !err.contains("hunter2") && err.contains("not a regular file"),
            "{err}"
        );
        std::fs::remove_file(&doc).unwrap();
        std::fs::write(&doc, "# plan").unwrap();
        assert_eq!(read(&doc).unwrap().as_deref(), Some("# plan"));
    }
}
