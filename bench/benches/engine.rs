//! Micro benchmarks of the engine's cost per message (divan), beside the `serde_json`
//! baselines on the same bytes. `qmp-bench engine` prints the same measurements as ratios.
#![allow(missing_docs)]

use std::cell::RefCell;

use divan::Bencher;
use qmp_bench::engine::{
    measured_engine, measured_raw_value, measured_value, prepare, Engine, Feed, Message,
};

fn main() {
    divan::main();
}

const MESSAGES: [&str; 5] = [
    "empty-reply",
    "small-reply",
    "event",
    "schema",
    "10mb-reply",
];

fn message(name: &str) -> Message {
    Message::from_name(name).expect("a known message")
}

#[divan::bench(args = MESSAGES)]
fn raw_value_floor(bencher: Bencher<'_, '_>, name: &str) {
    let wire = message(name).wire();
    bencher
        .counter(divan::counter::BytesCount::new(wire.len()))
        .bench_local(|| measured_raw_value(&wire.bytes));
}

#[divan::bench(args = MESSAGES, sample_count = 20)]
fn value(bencher: Bencher<'_, '_>, name: &str) {
    let wire = message(name).wire();
    bencher
        .counter(divan::counter::BytesCount::new(wire.len()))
        .bench_local(|| measured_value(&wire.bytes));
}

fn engine(bencher: Bencher<'_, '_>, name: &str, feed: Feed) {
    let message = message(name);
    let wire = message.wire();
    let engine = RefCell::new(Engine::negotiated());
    bencher
        .counter(divan::counter::BytesCount::new(wire.len()))
        .with_inputs(|| {
            let mut input = prepare(&mut engine.borrow_mut(), &wire, 1, message.is_reply());
            input.pop().expect("one message")
        })
        .bench_local_refs(|w| measured_engine(&mut engine.borrow_mut(), &w.bytes, feed));
}

#[divan::bench(args = MESSAGES)]
fn engine_whole(bencher: Bencher<'_, '_>, name: &str) {
    engine(bencher, name, Feed::Whole);
}

#[divan::bench(args = MESSAGES)]
fn engine_4k_chunks(bencher: Bencher<'_, '_>, name: &str) {
    engine(bencher, name, Feed::Chunks4K);
}

#[divan::bench(args = MESSAGES, sample_count = 20)]
fn engine_byte_by_byte(bencher: Bencher<'_, '_>, name: &str) {
    engine(bencher, name, Feed::ByteByByte);
}
