//! The default limits: a 10 MiB message is accepted, one byte more is refused before it is
//! buffered.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use qmp_proto::{CallOptions, ClientConfig, CommandError, DisconnectReason, Event, ProtocolError};

fn reply_of_size(size: usize, id: u64) -> Vec<u8> {
    let head = b"{\"return\": \"";
    let tail = format!("\", \"id\": {id}}}");
    let mut msg = head.to_vec();
    msg.resize(size - tail.len(), b'a');
    msg.extend_from_slice(tail.as_bytes());
    assert_eq!(msg.len(), size);
    msg
}

#[test]
fn default_limit_is_10_mib() {
    assert_eq!(
        ClientConfig::default().get_max_message_size(),
        10 * 1024 * 1024
    );
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    let a = c.execute(now, "big", &(), CallOptions::new()).unwrap();
    let b = c.execute(now, "bigger", &(), CallOptions::new()).unwrap();

    let exact = reply_of_size(10 * 1024 * 1024, 2);
    for chunk in exact.chunks(64 * 1024) {
        c.handle_input(now, chunk);
    }
    let evs = events(&mut c);
    assert!(matches!(&evs[..], [Event::Reply { id, result: Ok(raw) }]
        if *id == a && raw.get().len() == 10 * 1024 * 1024 - 21));

    let over = reply_of_size(10 * 1024 * 1024 + 1, 3);
    let mut fed = 0;
    for chunk in over.chunks(64 * 1024) {
        c.handle_input(now, chunk);
        fed += chunk.len();
        if c.state() == qmp_proto::RunState::Idle {
            break;
        }
    }
    // Refused in the chunk holding the byte past the limit, not at the end of the message.
    assert!(fed > 10 * 1024 * 1024 && fed <= 10 * 1024 * 1024 + 64 * 1024);
    let evs = events(&mut c);
    let limit = |e: &ProtocolError| {
        matches!(e, ProtocolError::MessageTooLarge { limit, excerpt }
        if *limit == 10 * 1024 * 1024 && excerpt.total_len() == 10 * 1024 * 1024 + 1)
    };
    match &evs[..] {
        [_, Event::Reply {
            id,
            result: Err(CommandError::Interrupted(DisconnectReason::Protocol(e1))),
        }, _, Event::Disconnected(DisconnectReason::Protocol(e2))]
            if *id == b && limit(e1) && limit(e2) => {}
        other => panic!("unexpected events: {other:?}"),
    }
}
