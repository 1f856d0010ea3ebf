//! Tests of the command line and the probe against the real bubblewrap where it matters.

use super::*;

#[test]
fn a_missing_bwrap_is_reported_with_the_install_hint() {
    let err = Sandbox::probe(Path::new("/nonexistent/bwrap")).unwrap_err();
    assert_eq!(
        err,
        SandboxError::Missing {
            bwrap: "/nonexistent/bwrap".into()
        }
    );
    let text = err.to_string();
    assert!(text.contains("apt-get install bubblewrap"), "{text}");
    assert!(text.contains("--sandbox=none"), "{text}");
}

#[test]
fn a_bwrap_that_cannot_sandbox_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("bwrap");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'No permissions to create new namespace' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    match Sandbox::probe(&fake).unwrap_err() {
        SandboxError::Unusable { detail, .. } => {
            assert_eq!(detail, "No permissions to create new namespace")
        }
        other => panic!("expected Unusable, got {other:?}"),
    }
}

#[test]
fn mounts_are_applied_once_parents_first_and_writable_wins() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let deep = root.join("a/b");
    std::fs::create_dir_all(&deep).unwrap();
    let mounts = Mounts {
        read_only: vec![deep.clone(), root.join("a"), root.join("missing")],
        writable: vec![root.join("a/b/../b"), "/".into()],
    };
    assert_eq!(
        ordered(&mounts),
        vec![
            (root.join("a"), root.join("a"), false),
            (deep.clone(), deep, true)
        ]
    );
}

#[test]
fn a_path_through_a_symlinked_folder_is_shown_where_it_was_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let real = root.join("real/bin");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
    let mounts = Mounts {
        read_only: vec![root.join("link/bin"), real.clone()],
        writable: Vec::new(),
    };
    assert_eq!(
        ordered(&mounts),
        vec![
            (real.clone(), root.join("link/bin"), false),
            (real.clone(), real, false)
        ]
    );
}

#[test]
fn is_within_sees_through_dot_dot() {
    assert!(is_within(Path::new("/srv/data/x"), Path::new("/srv/data")));
    assert!(is_within(Path::new("/srv/data"), Path::new("/srv/data")));
    assert!(is_within(
        Path::new("/srv/other/../data/db"),
        Path::new("/srv/data")
    ));
    assert!(!is_within(
        Path::new("/srv/database"),
        Path::new("/srv/data")
    ));
    assert!(!is_within(Path::new("/srv"), Path::new("/srv/data")));
}
