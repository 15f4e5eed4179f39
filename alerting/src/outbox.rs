//! The outbox: every notification waits here, persisted with the alarm state, until each
//! of its receivers has accepted it. Failed attempts back off exponentially (1 s doubling
//! to [`MAX_BACKOFF`]); a receiver that refuses for good (a 4xx, a permanent SMTP error)
//! or a notification older than [`GIVE_UP_AFTER`] is dropped and recorded in the history.

use std::collections::HashMap;
use std::time::Duration;

use telltale_model::calendar::DAY_MS;

use crate::alarm::Notification;
use crate::notify::Failed;
use crate::state_dir::{Delivery, SavedState};

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Deliveries this old are dropped rather than retried.
pub const GIVE_UP_AFTER: Duration = Duration::from_millis(DAY_MS as u64);

/// Queues `n` for each of its receivers (an id already queued is left alone).
pub fn enqueue(state: &mut SavedState, n: &Notification, now: i64) {
    for r in &n.receivers {
        let id = format!("{}/{r}", n.id);
        state.outbox.entry(id.clone()).or_insert_with(|| Delivery {
            id,
            receiver: r.clone(),
            notification: n.clone(),
            attempts: 0,
            next_attempt: now,
            queued_at: now,
            last_error: None,
        });
    }
}

/// The deliveries due at `now`, oldest first. A delivery waits while an older one for
/// the same receiver and rule is still queued, so a recovery never overtakes its firing
/// notification after an outage.
pub fn due(state: &SavedState, now: i64) -> Vec<Delivery> {
    let mut oldest: HashMap<(&str, &str, &str), i64> = HashMap::new();
    for d in state.outbox.values() {
        let k = (
            d.receiver.as_str(),
            d.notification.group.as_str(),
            d.notification.rule.as_str(),
        );
        let at = oldest.entry(k).or_insert(d.notification.at);
        *at = (*at).min(d.notification.at);
    }
    let mut d: Vec<Delivery> = state
        .outbox
        .values()
        .filter(|d| {
            let k = (
                d.receiver.as_str(),
                d.notification.group.as_str(),
                d.notification.rule.as_str(),
            );
            d.next_attempt <= now && oldest.get(&k) == Some(&d.notification.at)
        })
        .cloned()
        .collect();
    d.sort_by_key(|d| (d.notification.at, d.id.clone()));
    d
}

/// When the next delivery is due, if any.
pub fn next_due(state: &SavedState) -> Option<i64> {
    state.outbox.values().map(|d| d.next_attempt).min()
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Accepted: removed from the outbox.
    Delivered,
    /// Will be tried again at this time.
    Retry(i64),
    /// Given up: removed from the outbox.
    Dropped,
}

/// Records the outcome of an attempt on `id` made at `now`.
pub fn settle(
    state: &mut SavedState,
    id: &str,
    result: &Result<(), Failed>,
    now: i64,
) -> Option<Settled> {
    let d = state.outbox.get_mut(id)?;
    d.attempts += 1;
    let settled = match result {
        Ok(()) => Settled::Delivered,
        Err(f) => {
            d.last_error = Some(f.message.clone());
            let age = now - d.queued_at;
            if !f.retryable || age > GIVE_UP_AFTER.as_millis() as i64 {
                Settled::Dropped
            } else {
                let backoff = Duration::from_secs(1)
                    .saturating_mul(1u32 << (d.attempts - 1).min(16))
                    .min(MAX_BACKOFF);
                d.next_attempt = now + backoff.as_millis() as i64;
                Settled::Retry(d.next_attempt)
            }
        }
    };
    if !matches!(settled, Settled::Retry(_)) {
        state.outbox.remove(id);
    }
    Some(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::Kind;

    fn n(id: &str, at: i64) -> Notification {
        Notification {
            id: id.into(),
            kind: Kind::Firing,
            repeat: 0,
            group: "g".into(),
            rule: "r".into(),
            description: String::new(),
            threshold: None,
            at,
            alarms: Vec::new(),
            receivers: vec!["mail".into(), "hook".into()],
        }
    }

    #[test]
    fn one_delivery_per_receiver_and_an_id_queues_once() {
        let mut s = SavedState::default();
        enqueue(&mut s, &n("a", 0), 0);
        enqueue(&mut s, &n("a", 0), 5);
        assert_eq!(s.outbox.len(), 2);
        assert_eq!(due(&s, 0).len(), 2);
    }

    #[test]
    fn retries_back_off_then_deliver_once() {
        let mut s = SavedState::default();
        enqueue(&mut s, &n("a", 0), 0);
        let down = Err(Failed {
            message: "connection refused".into(),
            retryable: true,
        });
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            match settle(&mut s, "a/mail", &down, now) {
                Some(Settled::Retry(at)) => {
                    waits.push((at - now) / 1000);
                    now = at;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(due(&s, now - 1).iter().all(|d| d.id != "a/mail"));
        assert_eq!(
            settle(&mut s, "a/mail", &Ok(()), now),
            Some(Settled::Delivered)
        );
        assert_eq!(
            settle(&mut s, "a/mail", &Ok(()), now),
            None,
            "gone once delivered"
        );
        assert_eq!(s.outbox.len(), 1);
    }

    #[test]
    fn a_later_notification_waits_for_an_older_one_of_the_same_rule() {
        let mut s = SavedState::default();
        let mut firing = n("f", 0);
        firing.receivers = vec!["mail".into()];
        enqueue(&mut s, &firing, 0);
        let down = Err(Failed {
            message: "down".into(),
            retryable: true,
        });
        // The firing notification backs off, its next attempt at 90 s...
        settle(&mut s, "f/mail", &down, 0);
        s.outbox.get_mut("f/mail").unwrap().next_attempt = 90_000;
        // ...and the recovery, queued later, is not sent before it.
        let mut resolved = n("r", 60_000);
        resolved.kind = Kind::Resolved;
        resolved.receivers = vec!["mail".into()];
        enqueue(&mut s, &resolved, 60_000);
        let ids =
            |s: &SavedState, now| due(s, now).iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert!(ids(&s, 60_000).is_empty(), "{:?}", ids(&s, 60_000));
        assert_eq!(ids(&s, 100_000), ["f/mail"]);
        settle(&mut s, "f/mail", &Ok(()), 100_000);
        assert_eq!(ids(&s, 100_000), ["r/mail"]);
    }

    #[test]
    fn permanent_refusals_and_old_notifications_are_dropped() {
        let mut s = SavedState::default();
        enqueue(&mut s, &n("a", 0), 0);
        let refused = Err(Failed {
            message: "HTTP 400".into(),
            retryable: false,
        });
        assert_eq!(
            settle(&mut s, "a/hook", &refused, 0),
            Some(Settled::Dropped)
        );
        let down = Err(Failed {
            message: "down".into(),
            retryable: true,
        });
        let late = GIVE_UP_AFTER.as_millis() as i64 + 1;
        assert_eq!(
            settle(&mut s, "a/mail", &down, late),
            Some(Settled::Dropped)
        );
        assert!(s.outbox.is_empty());
    }
}
