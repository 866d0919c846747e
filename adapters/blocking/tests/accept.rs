//! Accept mode: we listen, QEMU connects (`-qmp unix:PATH` without `server=on`).

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::Peer;
use qmp_blocking::{Builder, Error, Listener};
use qmp_testkit::socket_path;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

#[test]
fn qemu_connects_to_our_owner_only_socket() {
    let (dir, path) = socket_path();
    let listener = Builder::new().connect_timeout(T).listen(&path).unwrap();
    assert_eq!(listener.path(), path);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let qmp_arg = format!("unix:{}", path.display());
    let Some(mut peer) = Peer::system_with(&["-machine", "none"], &qmp_arg, dir, path.clone())
    else {
        return;
    };
    let mut qmp = listener
        .accept(T)
        .unwrap_or_else(|e| panic!("{e}; stderr: {}", peer.stderr()));
    drop(listener);
    assert!(
        !path.exists(),
        "the socket file is removed with the listener"
    );
    assert_eq!(qmp.greeting().version.major, 10);
    let v: Value = qmp.execute("query-version", &()).unwrap();
    assert_eq!(v["qemu"]["major"], 10);
    peer.quit(&mut qmp);
}

#[test]
fn an_existing_file_is_neither_used_nor_removed() {
    let (_dir, path) = socket_path();
    std::fs::write(&path, "not ours").unwrap();
    let e = Listener::bind(&path).unwrap_err();
    match &e {
        Error::Io { context, source } => {
            assert!(context.contains(&*path.to_string_lossy()), "{context}");
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected an IO error, got {other:?}"),
    }
    assert!(e.to_string().starts_with("cannot listen on "), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not ours");
}

#[test]
fn a_replaced_path_is_not_removed() {
    let (_dir, path) = socket_path();
    let listener = Listener::bind(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "someone else's").unwrap();
    drop(listener);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
}

#[test]
fn accept_times_out_and_the_file_is_removed() {
    let (_dir, path) = socket_path();
    let listener = Listener::bind(&path).unwrap();
    let start = Instant::now();
    assert!(matches!(
        listener.accept(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(listener);
    assert!(!path.exists());
}
