//! The engine-cost table: every message, fed whole, byte by byte and in 4 KiB chunks, against
//! the `RawValue` and `Value` baselines on the same bytes, all measured in interleaved rounds.

use std::time::Instant;

use crate::engine::{
    measured_engine, measured_raw_value, measured_value, prepare, Engine, Feed, Message,
};
use crate::stats::{fmt_ns, interleave, time, Variant};
use crate::Row;

/// How many messages one sample feeds, and how many rounds to run, for a message.
fn plan(message: Message, quick: bool) -> (usize, usize) {
    let (batch, rounds) = match message {
        Message::EmptyReply | Message::SmallReply | Message::Event => (1024, 101),
        Message::Schema => (2, 101),
        Message::Large => (1, 15),
    };
    if quick {
        (batch, rounds.min(5))
    } else {
        (batch, rounds)
    }
}

/// Measures every message and returns one row per (message, measure).
pub fn run(quick: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for message in Message::ALL {
        rows.extend(run_message(message, quick));
    }
    rows
}

fn run_message(message: Message, quick: bool) -> Vec<Row> {
    let (batch, rounds) = plan(message, quick);
    let wire = message.wire();
    let size = wire.len();
    let engine = std::cell::RefCell::new(Engine::negotiated());
    let floor_input = prepare(&mut engine.borrow_mut(), &wire, batch, false);
    let engine_variant = |feed: Feed| {
        let engine = &engine;
        let wire = &wire;
        Variant::new(feed.name(), move || {
            let mut e = engine.borrow_mut();
            let input = prepare(&mut e, wire, batch, message.is_reply());
            let start = Instant::now();
            for w in &input {
                measured_engine(&mut e, &w.bytes, feed);
            }
            let took = start.elapsed();
            drop(input);
            (batch as u64, took)
        })
    };
    let mut variants = vec![
        Variant::new("RawValue", || {
            time(batch as u64, || {
                for w in &floor_input {
                    measured_raw_value(&w.bytes);
                }
            })
        }),
        Variant::new("Value", || {
            time(batch as u64, || {
                for w in &floor_input {
                    measured_value(&w.bytes);
                }
            })
        }),
        engine_variant(Feed::Whole),
        engine_variant(Feed::Chunks4K),
        engine_variant(Feed::ByteByByte),
    ];
    let started = Instant::now();
    interleave(&mut variants, rounds);
    let floor = variants[0].median_ns();
    log(&format!(
        "engine {}: {size} bytes, {rounds} rounds of {batch} in {:.1} s",
        message.name(),
        started.elapsed().as_secs_f64()
    ));
    variants
        .iter()
        .map(|v| Row {
            group: "engine",
            case: format!("{} ({})", message.name(), human_size(size)),
            measure: match v.name {
                "RawValue" => "serde_json RawValue (floor)".to_owned(),
                "Value" => "serde_json Value".to_owned(),
                feed => format!("engine, {feed}"),
            },
            absolute: format!(
                "{} /msg ({:.0} MB/s)",
                fmt_ns(v.median_ns()),
                size as f64 / v.median_ns() * 1e3
            ),
            ratio: v.median_ns() / floor,
            baseline: "RawValue",
        })
        .collect()
}

/// A byte size in the unit that suits it.
pub fn human_size(bytes: usize) -> String {
    if bytes < 10_000 {
        format!("{bytes} B")
    } else if bytes < 10_000_000 {
        format!("{:.0} KB", bytes as f64 / 1e3)
    } else {
        format!("{:.0} MB", bytes as f64 / 1e6)
    }
}

/// Progress on stderr.
#[allow(clippy::print_stderr)]
pub(crate) fn log(line: &str) {
    eprintln!("{line}");
}
