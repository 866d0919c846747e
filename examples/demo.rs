//! The client engine against the embedded fake QEMU, in memory: negotiation, commands,
//! events, an error, and `quit`. Prints the conversation.
//!
//! ```sh
//! cargo run --example demo
//! ```
#![allow(clippy::print_stdout)]
// A program, not the core: it may read the clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use qmp_proto::server::{FakeQemu, Server, ServerEvent};
use qmp_proto::{CallOptions, Client, ClientConfig, Direction, Event};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeQemu::new().prelaunch();
    let mut server = Server::new(fake.server_config(), fake);
    let mut client = Client::new(ClientConfig::default().trace_messages(true));
    let now = Instant::now();
    server.accept(now);
    client.connect(now)?;
    for (name, args) in [
        ("query-status", serde_json::json!(null)),
        ("cont", serde_json::json!(null)),
        ("query-status", serde_json::json!(null)),
        ("blockdev-del", serde_json::json!({"node-name": "nope"})),
        ("quit", serde_json::json!(null)),
    ] {
        client.execute(now, name, &args, CallOptions::new())?;
    }
    loop {
        // Client -> server.
        while let Some(t) = client.poll_transmit() {
            let bytes = t.data.to_vec();
            client.advance_transmit(bytes.len());
            server.handle_input(now, &bytes);
        }
        // Server -> client.
        let out = server.take_output();
        if !out.is_empty() {
            client.handle_input(now, &out);
        }
        if server.poll_event() == Some(ServerEvent::Closed) {
            client.handle_eof(now);
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::Traffic {
                    direction, message, ..
                } => {
                    let arrow = if direction == Direction::Out {
                        "->"
                    } else {
                        "<-"
                    };
                    println!("{arrow} {}", message.trim_end());
                }
                Event::Reply { id, result } => match result {
                    Ok(value) => println!("   reply {id}: {}", value.get()),
                    Err(e) => println!("   reply {id}: {e}"),
                },
                Event::Qmp(ev) => println!("   event {}", ev.name),
                Event::StateChanged { from, to } => println!("   state {from} -> {to}"),
                Event::Disconnected(reason) => {
                    println!("   disconnected: {reason}");
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}
