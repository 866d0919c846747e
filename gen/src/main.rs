//! `qapi-gen QEMU_SOURCE_DIR CRATE_DIR`: writes the `qmp-types` crate's generated code.

use std::path::PathBuf;
use std::process::ExitCode;

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [src, out] = args.as_slice() else {
        eprintln!(
            "usage: qapi-gen QEMU_SOURCE_DIR CRATE_DIR  (QEMU_SOURCE_DIR holds qapi/ and qga/)"
        );
        return ExitCode::from(2);
    };
    match qapi_gen::generate(src, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qapi-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
