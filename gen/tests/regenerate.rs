//! The committed `types/` code is what the generator writes from the schema: regenerates
//! into a temporary directory and compares file by file.
//!
//! Needs QEMU's QAPI source schema: `QAPI_SCHEMA_DIR` names the QEMU source tree (holding
//! `qapi/` and `qga/`). Without it the test is skipped, with the reason printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
#[allow(clippy::print_stderr)]
fn committed_code_is_up_to_date() {
    let Some(src) = std::env::var_os("QAPI_SCHEMA_DIR") else {
        eprintln!(
            "skipping: QAPI_SCHEMA_DIR is not set (the QEMU source tree with qapi/ and qga/)"
        );
        return;
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../types");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("src/qmp")).unwrap();
    std::fs::copy(crate_dir.join("Cargo.toml"), tmp.path().join("Cargo.toml")).unwrap();
    qapi_gen::generate(Path::new(&src), tmp.path()).unwrap();

    let committed = qapi_gen::generated_files(&crate_dir);
    let fresh = qapi_gen::generated_files(tmp.path());
    let rel = |base: &Path, v: &[std::path::PathBuf]| -> Vec<String> {
        v.iter()
            .map(|p| p.strip_prefix(base).unwrap().display().to_string())
            .collect()
    };
    assert_eq!(
        rel(&crate_dir, &committed),
        rel(tmp.path(), &fresh),
        "the set of generated files differs"
    );
    let mut stale = Vec::new();
    for (a, b) in committed.iter().zip(&fresh) {
        if std::fs::read(a).unwrap() != std::fs::read(b).unwrap() {
            stale.push(a.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date (run `{}`): {stale:?}",
        qapi_gen::REGENERATE
    );
}
