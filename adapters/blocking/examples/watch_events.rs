//! Watch QMP events until the session ends (or for a number of seconds).
//!
//! ```sh
//! qemu-system-x86_64 -M pc -accel tcg -S -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//! cargo run -p qmp-blocking --example watch_events -- /tmp/qmp.sock [SECONDS]
//! ```
//!
//! It sends `cont` and `stop` first, so a paused VM shows `RESUME` and `STOP`.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use qmp_blocking::{CallOptions, Connection, Error, EventFilter, IgnoredAny};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: events SOCKET [SECONDS]")?;
    let seconds: u64 = args.next().map_or(Ok(10), |s| s.parse())?;

    let mut qmp = Connection::connect_unix(&path)?;

    // The event a command causes may arrive before its reply; it is buffered, not missed.
    let opts = CallOptions::new().timeout(Duration::from_secs(5));
    if let Ok((_, e)) =
        qmp.execute_and_wait::<IgnoredAny>("cont", &(), opts, EventFilter::name("RESUME"))
    {
        println!("cont -> {}", e.name);
    }
    qmp.execute::<IgnoredAny>("stop", &())?;

    let end = Instant::now() + Duration::from_secs(seconds);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match qmp.next_event(left) {
            Ok(Some(e)) => {
                let data = e.data.as_ref().map_or("{}", |d| d.get());
                println!("{:?} {} {data}", e.timestamp, e.name);
            }
            Ok(None) => break, // time is up
            Err(Error::Disconnected(reason)) => {
                println!("session ended: {reason}");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if qmp.events_lost() > 0 {
        println!("{} events were dropped (buffer full)", qmp.events_lost());
    }
    Ok(())
}
