//! What the integration tests share: the test kit's peers, blocking flavour (real QEMU, the
//! fake QEMU on a socket), and a check of QMP errors.
#![allow(dead_code, unused_imports, unreachable_pub)]

pub use qmp_testkit::blocking::{FakePeer, Peer};
pub use qmp_testkit::tempdir;

/// The QMP error of a call that must fail with one, checking its class.
pub fn qmp_error<T: std::fmt::Debug>(
    result: Result<T, qmp_blocking::Error>,
    class: &str,
) -> qmp_blocking::QmpError {
    match result {
        Err(qmp_blocking::Error::Qmp(e)) => {
            assert_eq!(e.class, class, "{e}");
            e
        }
        other => panic!("expected a QMP error of class {class}, got {other:?}"),
    }
}
