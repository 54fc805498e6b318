//! SASL PLAIN and AMQPLAIN responses, comparing secrets in constant time, and slowing down
//! an address that keeps failing to log in.

use amq_protocol::types::parsing::parse_field_table;
use amq_protocol::types::AMQPValue;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// (username, password) from a `connection.start-ok` response.
pub(crate) fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            // [authzid] NUL authcid NUL passwd
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let pass = parts.next()?;
            if parts.next().is_some() {
                return None;
            }
            Some((
                String::from_utf8(user.to_vec()).ok()?,
                String::from_utf8(pass.to_vec()).ok()?,
            ))
        }
        "AMQPLAIN" => {
            // A field table without its length prefix.
            let mut table = (response.len() as u32).to_be_bytes().to_vec();
            table.extend_from_slice(response);
            let (_, fields) = parse_field_table(&table[..]).ok()?;
            let get = |k: &str| match fields.inner().get(k)? {
                AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
                AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
                _ => None,
            };
            Some((get("LOGIN")?, get("PASSWORD")?))
        }
        _ => None,
    }
}

/// Compares two secrets without stopping at the first difference, so the time taken tells
/// nothing of how much of a guess matched.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failed logins from one address within this window count together.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Failures allowed before logins from the address are slowed down.
const FREE_FAILURES: u32 = 5;
/// The pause grows by this much per failure past the free ones, up to `MAX_PAUSE` (below the
/// handshake timeout, so the client still gets its refusal).
const PAUSE_STEP: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Addresses tracked at most (a flood of addresses cannot grow the table without bound).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Recent failed logins per source address. Every login attempt from an address past its
/// free failures waits first, longer with each failure, so guessing passwords is slow; a
/// success forgets the address.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long an attempt from `ip` waits before its password is checked.
    pub(crate) fn pause(&self, ip: IpAddr, now: Instant) -> Duration {
        match self.table().get(&ip) {
            Some(f) if now.duration_since(f.last) < FAILURE_WINDOW && f.count >= FREE_FAILURES => {
                (PAUSE_STEP * (f.count - FREE_FAILURES + 1)).min(MAX_PAUSE)
            }
            _ => Duration::ZERO,
        }
    }

    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) {
        let mut table = self.table();
        if table.len() >= MAX_TRACKED && !table.contains_key(&ip) {
            table.retain(|_, f| now.duration_since(f.last) < FAILURE_WINDOW);
            if table.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = table.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= FAILURE_WINDOW {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
    }

    pub(crate) fn succeeded(&self, ip: IpAddr) {
        self.table().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_authzid() {
        assert_eq!(
            credentials("PLAIN", b"\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(
            credentials("PLAIN", b"admin\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(credentials("PLAIN", b"guest"), None);
        assert_eq!(credentials("EXTERNAL", b""), None);
    }

    #[test]
    fn amqplain_table() {
        let mut body = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "pw")] {
            body.push(k.len() as u8);
            body.extend_from_slice(k.as_bytes());
            body.push(b'S');
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            credentials("AMQPLAIN", &body),
            Some(("guest".into(), "pw".into()))
        );
    }

    #[test]
    fn an_address_that_keeps_failing_waits_longer_each_time_until_it_succeeds() {
        let throttle = LoginThrottle::default();
        let (ip, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.pause(ip, t0), Duration::ZERO);
            throttle.failed(ip, t0);
        }
        assert_eq!(throttle.pause(ip, t0), PAUSE_STEP);
        throttle.failed(ip, t0);
        assert_eq!(throttle.pause(ip, t0), PAUSE_STEP * 2);
        for _ in 0..100 {
            throttle.failed(ip, t0);
        }
        assert_eq!(throttle.pause(ip, t0), MAX_PAUSE);
        assert_eq!(throttle.pause(other, t0), Duration::ZERO);
        assert_eq!(throttle.pause(ip, t0 + FAILURE_WINDOW), Duration::ZERO);
        throttle.succeeded(ip);
        assert_eq!(throttle.pause(ip, t0), Duration::ZERO);
    }
}
