//! Sample time: milliseconds since the Unix epoch, aligned to the collection interval.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (Prometheus's sample timestamp unit).
pub type TimestampMs = i64;

/// `t` as milliseconds since the epoch; times before the epoch count as 0.
pub fn to_millis(t: SystemTime) -> TimestampMs {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as TimestampMs)
        .unwrap_or(0)
}

/// The latest multiple of `interval` at or before `ts` (so every node's samples of one cycle
/// share a timestamp). A zero interval leaves `ts` unchanged.
pub fn align_down(ts: TimestampMs, interval: Duration) -> TimestampMs {
    let step = interval.as_millis() as TimestampMs;
    if step <= 0 {
        return ts;
    }
    ts - ts.rem_euclid(step)
}

/// How long from `now` until the next multiple of `interval` strictly after it.
pub fn until_next_boundary(now: SystemTime, interval: Duration) -> Duration {
    let ts = to_millis(now);
    let next = align_down(ts, interval) + interval.as_millis() as TimestampMs;
    Duration::from_millis((next - ts).max(0) as u64)
}

/// Where background loops get "now" (retention, flush ages): the system clock in the
/// binary, a [`MockClock`] in tests, so time-driven behaviour is tested without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that says what it is told.
#[derive(Debug, Clone)]
pub struct MockClock(std::sync::Arc<std::sync::Mutex<SystemTime>>);

impl MockClock {
    /// A clock reading `at`.
    pub fn at(at: SystemTime) -> Self {
        MockClock(std::sync::Arc::new(std::sync::Mutex::new(at)))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for MockClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_to_interval_boundaries() {
        let i = Duration::from_secs(15);
        let base = 1_700_000_010_000; // a multiple of 15 000
        assert_eq!(align_down(base + 7_123, i), base);
        assert_eq!(align_down(base, i), base);
        assert_eq!(align_down(42, Duration::ZERO), 42);
        let now = UNIX_EPOCH + Duration::from_millis(base as u64 + 7_123);
        assert_eq!(until_next_boundary(now, i), Duration::from_millis(7_877));
        let on = UNIX_EPOCH + Duration::from_millis(base as u64);
        assert_eq!(until_next_boundary(on, i), i);
    }
}
