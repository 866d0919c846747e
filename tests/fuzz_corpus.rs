//! Replays the committed fuzz corpus, and any saved crash artifacts, through the fuzz target
//! bodies on the stable toolchain (`cargo fuzz` runs them with coverage guidance).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::time::Instant;

fn replay(target: &str, run: impl Fn(Instant, &[u8])) {
    let base = common::t0();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(base, &data)));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            count += 1;
        }
    }
    assert!(count > 0, "no corpus for {target}");
    eprintln!("{target}: {count} inputs replayed");
}

#[test]
fn framer_corpus() {
    replay("framer", |_, d| qmp_proto::testing::fuzz::framer(d));
}

#[test]
fn client_corpus() {
    replay("client", qmp_proto::testing::fuzz::client);
}

#[test]
fn server_corpus() {
    replay("server", qmp_proto::testing::fuzz::server);
}

#[test]
fn pair_corpus() {
    replay("pair", qmp_proto::testing::fuzz::pair);
}
