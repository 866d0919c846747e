//! When and how often an adapter reconnects.

use std::time::Duration;

/// When and how often to reconnect after the peer goes away: exponential backoff from
/// `initial`, doubling up to `max`, for at most `max_attempts` attempts in a row (unlimited
/// by default), each delay shortened by a random share of up to `jitter` (a half by default),
/// so that many connections that lost their peers at once (a host event) do not redial in
/// lockstep. The count starts again once a session is ready. A connection closed locally is
/// not reconnected (one that ended with `quit` is: QEMU may be restarted on purpose).
///
/// ```
/// use std::time::Duration;
/// use qmp_kit::Reconnect;
///
/// let policy = Reconnect::new()
///     .initial(Duration::from_millis(50))
///     .max(Duration::from_secs(2))
///     .max_attempts(20);
/// // The delay before each attempt, before jitter:
/// assert_eq!(policy.delay(1), Some(Duration::from_millis(50)));
/// assert_eq!(policy.delay(3), Some(Duration::from_millis(200)));
/// assert_eq!(policy.delay(10), Some(Duration::from_secs(2)));
/// assert_eq!(policy.delay(21), None);
/// // With jitter: between half of it and all of it.
/// let d = policy.jittered_delay(3, 0x1234_5678_9abc_def0).unwrap();
/// assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconnect {
    initial: Duration,
    max: Duration,
    max_attempts: Option<u32>,
    jitter: f64,
    calls_wait: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            max_attempts: None,
            jitter: 0.5,
            calls_wait: false,
        }
    }
}

impl Reconnect {
    /// 100 ms, doubling up to 5 s, without limit, with up to half of each delay taken off at
    /// random; calls made while disconnected fail at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// The delay before the first attempt.
    pub fn initial(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// The longest delay between attempts.
    pub fn max(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// Gives up after this many failed attempts in a row.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The largest share of each delay taken off at random, from 0 (no jitter: every
    /// connection redials on the same schedule) to 1 (anywhere between no delay and the
    /// delay); 0.5 by default. Clamped to that range.
    pub fn jitter(mut self, share: f64) -> Self {
        self.jitter = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// Whether a call made while disconnected waits for the next session, up to its own
    /// timeout (`true`), or fails at once with the reason the last session ended (`false`,
    /// the default). A call without a timeout (none given and no default command timeout)
    /// then waits until a session comes or the policy gives up
    /// ([`max_attempts`](Self::max_attempts); unlimited by default).
    pub fn calls_wait(mut self, wait: bool) -> Self {
        self.calls_wait = wait;
        self
    }

    /// See [`calls_wait`](Self::calls_wait).
    pub fn get_calls_wait(&self) -> bool {
        self.calls_wait
    }

    /// The delay before attempt `attempt` (from 1) before jitter, or `None` past the limit.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        Some(self.initial.saturating_mul(factor).min(self.max))
    }

    /// The delay before attempt `attempt` with jitter: [`delay`](Self::delay) shortened by
    /// `random`'s share (its 53 high bits as a fraction) of up to [`jitter`](Self::jitter).
    pub fn jittered_delay(&self, attempt: u32, random: u64) -> Option<Duration> {
        let delay = self.delay(attempt)?;
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        Some(delay.mul_f64(1.0 - self.jitter * fraction))
    }

    /// The delay before attempt `attempt`, with a fresh random jitter.
    pub fn next_delay(&self, attempt: u32) -> Option<Duration> {
        self.jittered_delay(attempt, crate::socket::random_seed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_share_and_spreads() {
        let policy = Reconnect::new()
            .initial(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let d = policy.next_delay(1).unwrap();
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                "{d:?}"
            );
            seen.insert(d.as_millis());
        }
        // Random enough that 64 connections do not redial together.
        assert!(seen.len() > 16, "{seen:?}");
        let none = Reconnect::new().jitter(0.0);
        assert_eq!(
            none.jittered_delay(2, u64::MAX),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            Reconnect::new().jitter(7.0).jittered_delay(1, 0),
            Some(Duration::from_millis(100))
        );
    }
}
