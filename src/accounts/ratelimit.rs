//! Token buckets keyed by client address or email, for the account endpoints.
//!
//! A [`Rule`] is a burst (the bucket's size) and a refill rate; a [`Limiter`] keeps one bucket
//! per key, created full on first use. Callers ask [`Limiter::check`] before doing the work a
//! rule protects and [`Limiter::charge`] only for what the rule counts (a failed login, a
//! successful sign-up), so requests refused by validation cost nothing, as the reference's
//! integration suite needs (shared/spec/compat.md). Time is passed in: nothing here reads a clock.
//!
//! Memory is bounded: at most `keys_max` buckets. When a new key arrives at the bound, buckets
//! that have refilled completely are dropped (they hold no information); if that frees less
//! than a tenth of the map, the half that was charged longest ago goes too. An attacker cycling
//! through keys can therefore reset old buckets, but only after filling the map with fresh
//! ones, each of which it had to earn with a counted failure.
//!
//! Client addresses are keyed per IPv4 address and per IPv6 /64 (one host usually owns a whole
//! /64, so per-address buckets would be free to multiply).
//!
//! Not here: sharing buckets between cores or between instances. Each core has its own
//! limiters, so a client whose connections land on several cores (SO_REUSEPORT hashes each
//! connection) can get up to the rule's allowance per core.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Buckets kept per limiter by default (per core).
pub const RATE_LIMIT_KEYS_MAX: usize = 100_000;

/// A burst size and a refill rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub burst: f64,
    pub per_second: f64,
}

impl Rule {
    /// `burst` events at once, refilling at `burst` per `period`.
    pub fn per(burst: u32, period: Duration) -> Rule {
        let burst = f64::from(burst.max(1));
        Rule {
            burst,
            per_second: burst / period.as_secs_f64().max(1e-3),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One rule's buckets.
#[derive(Debug)]
pub struct Limiter<K> {
    rule: Rule,
    keys_max: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rule: Rule, keys_max: usize) -> Limiter<K> {
        Limiter {
            rule,
            keys_max: keys_max.max(1),
            buckets: HashMap::new(),
        }
    }

    /// `Ok` when `key` has a whole token left; else how long until it has one.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let tokens = self
            .buckets
            .get(key)
            .map_or(self.rule.burst, |b| self.level(b, now));
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - tokens) / self.rule.per_second,
            ))
        }
    }

    /// Takes one token from `key`'s bucket (it may go below zero after concurrent checks; the
    /// debt is repaid by waiting longer).
    pub fn charge(&mut self, key: &K, now: Instant) {
        let tokens = match self.buckets.get(key) {
            Some(b) => self.level(b, now),
            None => {
                self.make_room(now);
                self.rule.burst
            }
        };
        self.buckets.insert(
            key.clone(),
            Bucket {
                tokens: (tokens - 1.0).max(-self.rule.burst),
                updated: now,
            },
        );
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        (b.tokens + elapsed * self.rule.per_second).min(self.rule.burst)
    }

    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.keys_max {
            return;
        }
        let (rule, before) = (self.rule, self.buckets.len());
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * rule.per_second < rule.burst
        });
        if before - self.buckets.len() >= self.keys_max / 10 {
            return;
        }
        let mut ages: Vec<Instant> = self.buckets.values().map(|b| b.updated).collect();
        let mid = ages.len() / 2;
        let (_, &mut cutoff, _) = ages.select_nth_unstable(mid);
        self.buckets.retain(|_, b| b.updated > cutoff);
    }
}

/// The rate-limit key of a client address: the IPv4 address, or the /64 of an IPv6 one
/// (IPv4-mapped IPv6 addresses count as IPv4).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refill() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Rule::per(3, Duration::from_secs(60)), 10);
        for _ in 0..3 {
            assert!(l.check(&"a", t0).is_ok());
            l.charge(&"a", t0);
        }
        let wait = l.check(&"a", t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(l.check(&"b", t0).is_ok(), "keys are independent");
        assert!(l.check(&"a", t0 + Duration::from_secs(19)).is_err());
        assert!(l.check(&"a", t0 + Duration::from_secs(20)).is_ok());
        // Never above the burst, however long it rests.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            l.charge(&"a", later);
        }
        assert!(l.check(&"a", later).is_err());
    }

    #[test]
    fn checking_costs_nothing() {
        let t0 = Instant::now();
        let l: Limiter<&str> = Limiter::new(Rule::per(1, Duration::from_secs(1)), 10);
        for _ in 0..100 {
            assert!(l.check(&"a", t0).is_ok());
        }
        assert!(l.is_empty());
    }

    #[test]
    fn memory_stays_bounded_and_refilled_buckets_go_first() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Rule::per(2, Duration::from_secs(10)), 100);
        l.charge(&0u32, t0);
        l.charge(&0u32, t0);
        for k in 1..100u32 {
            l.charge(&k, t0 + Duration::from_secs(20));
        }
        assert_eq!(l.len(), 100);
        // Key 0 refilled long ago: dropping it loses nothing.
        l.charge(&1000, t0 + Duration::from_secs(21));
        assert!(l.len() <= 100);
        for k in 2000..10_000u32 {
            l.charge(
                &k,
                t0 + Duration::from_secs(22) + Duration::from_millis(u64::from(k)),
            );
        }
        assert!(l.len() <= 100, "{}", l.len());
        // The newest key kept its bucket through the evictions: a second charge empties it.
        let last = t0 + Duration::from_secs(22) + Duration::from_millis(9_999);
        l.charge(&9_999, last);
        assert!(l.check(&9_999, last).is_err());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
