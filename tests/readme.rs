//! The README's code is compiled: its core examples as doctests of this crate (see
//! `ReadmeDoctests` in `src/lib.rs`), and each adapter example, marked `ignore` there because
//! this crate cannot see the adapter, stands verbatim in that adapter's crate docs, where
//! rustdoc compiles it.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn adapter_examples_in_the_readme_are_compiled_in_their_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = 0;
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("```rust,ignore\n") {
        let body = &rest[at + "```rust,ignore\n".len()..];
        let end = body.find("```").unwrap();
        let code = &body[..end];
        rest = &body[end..];
        let krate = ["qmp_blocking", "qmp_async", "qmp_tokio"]
            .into_iter()
            .find(|k| code.contains(&format!("{k}::")))
            .unwrap_or_else(|| {
                panic!("an ignored README block that is no adapter example:\n{code}")
            });
        let dir = match krate {
            "qmp_blocking" => "adapters/blocking",
            "qmp_tokio" => "adapters/tokio",
            _ => "adapters/async-io",
        };
        let docs = std::fs::read_to_string(root.join(dir).join("src/lib.rs")).unwrap();
        let as_doc: String = code
            .lines()
            .map(|l| {
                if l.is_empty() {
                    "//!\n".to_owned()
                } else {
                    format!("//! {l}\n")
                }
            })
            .collect();
        assert!(
            docs.contains(&as_doc),
            "the README example for {krate} is not in {dir}/src/lib.rs verbatim"
        );
        checked += 1;
    }
    assert!(checked >= 1);
}
