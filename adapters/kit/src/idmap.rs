//! Maps keyed by [`CommandId`]: the ids are a counter, so hashing them needs no protection
//! against chosen keys, and the default SipHash (about a thousand instructions per round
//! trip over a driver's maps) buys nothing.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use qmp_proto::CommandId;

/// A map from command ids, hashed with [`IdHasher`].
pub type IdMap<V> = HashMap<CommandId, V, BuildHasherDefault<IdHasher>>;

/// A set of command ids, hashed with [`IdHasher`].
pub type IdSet = HashSet<CommandId, BuildHasherDefault<IdHasher>>;

/// Hashes one `u64` (a [`CommandId`]) with a multiplication that spreads consecutive ids
/// over the high bits as well as the low ones (Fibonacci hashing).
///
/// ```
/// use std::time::Instant;
/// use qmp_kit::idmap::IdMap;
/// use qmp_proto::{CallOptions, Client, ClientConfig};
///
/// let mut client = Client::new(ClientConfig::default());
/// client.connect(Instant::now()).unwrap();
/// let id = client.execute(Instant::now(), "query-status", &(), CallOptions::new()).unwrap();
/// let mut map: IdMap<&str> = IdMap::default();
/// map.insert(id, "query-status");
/// assert_eq!(map[&id], "query-status");
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Not a command id alone: mix every byte in (never the case for `CommandId`).
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
