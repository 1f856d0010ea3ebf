use super::*;

#[test]
fn a_remote_on_this_machine_is_found_and_a_network_one_is_not() {
    let base = Path::new("/srv/app");
    assert_eq!(
        local_remote("/srv/r.git", base),
        Some(PathBuf::from("/srv/r.git"))
    );
    assert_eq!(
        local_remote("file:///srv/r.git", base),
        Some(PathBuf::from("/srv/r.git"))
    );
    assert_eq!(
        local_remote("../r.git", base),
        Some(PathBuf::from("/srv/app/../r.git"))
    );
    assert_eq!(
        local_remote("./a:b", base),
        Some(PathBuf::from("/srv/app/./a:b"))
    );
    for network in [
        "https://github.com/o/r.git",
        "http://127.0.0.1:8080/o/r.git",
        "ssh://git@host:2222/o/r",
        "git@github.com:o/r.git",
    ] {
        assert_eq!(local_remote(network, base), None, "{network}");
    }
}
