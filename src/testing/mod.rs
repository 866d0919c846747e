//! Test support, behind the `testing` feature: the client and server engines wired together
//! in memory ([`Pair`]), and the bodies of the fuzz targets ([`fuzz`]).
//!
//! The crate's own tests and its fuzzer use them, and so can the tests of code built on the
//! engines: enable the feature in `[dev-dependencies]` only, so that it stays out of
//! ordinary builds:
//!
//! ```toml
//! [dev-dependencies]
//! qmp-proto = { version = "0.1", features = ["testing"] }
//! ```

pub mod fuzz;
mod pair;

pub use pair::Pair;
