//! What the integration tests share: the test kit's peers, async flavour (real QEMU, the
//! fake QEMU on a socket), its executor matrix, and a check of fd refusal.
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::fs::File;

use qmp_async::Qmp;
pub use qmp_testkit::asynchronous::{
    sleep, under_async_executor, under_smol, under_tokio, within, FakePeer, Join, Peer, Spawner,
};
pub use qmp_testkit::{exists, signal_pid, tempdir, T};

/// A call with a file descriptor on a stream that cannot carry one fails before anything
/// is sent.
pub async fn assert_fds_refused(qmp: &Qmp) {
    let null = File::open("/dev/null").expect("/dev/null");
    let opts = qmp_async::CallOptions::new().fd(null);
    let refused = qmp
        .execute_with::<serde_json::Value, _>("getfd", &serde_json::json!({"fdname": "x"}), opts)
        .await;
    assert!(
        matches!(refused, Err(qmp_async::Error::FdsUnsupported)),
        "{refused:?}"
    );
}
