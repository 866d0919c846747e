#![no_main]
use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

static BASE: OnceLock<Instant> = OnceLock::new();

fuzz_target!(|data: &[u8]| qmp_proto::testing::fuzz::client(*BASE.get_or_init(Instant::now), data));
