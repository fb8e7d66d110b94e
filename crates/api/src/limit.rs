//! Rate limiting (F3548 lists 429 on every endpoint): a token bucket per
//! key, refilled continuously. Keys are authenticated identities (a token's
//! `sub`), or a source address ([`crate::source::Source`]) where nobody is
//! authenticated yet: a peer's records, failed authentications, the
//! witness endpoint. Never a name the caller merely claims.
//!
//! Memory is bounded by two generations of at most [`GENERATION`] keys
//! each: a key used in the current generation stays; one used only in the
//! previous is moved into the current at its next use; when the current
//! fills, the previous is dropped. A dropped bucket was idle for a whole
//! generation, so eviction only ever forgives idle keys: a client sending
//! all the time keeps its bucket however many other keys appear, and
//! making a generation turn costs an attacker as many distinct keys (each
//! with a bucket of its own) as it forgives.

use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Keys per generation.
pub const GENERATION: usize = 50_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    generation: usize,
    buckets: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<String, Bucket>,
    previous: HashMap<String, Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second == 0` disables limiting.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_generation(per_second as f64, burst, GENERATION)
    }

    fn with_generation(per_second: f64, burst: u32, generation: usize) -> Self {
        RateLimiter {
            per_second,
            burst: burst.max(1) as f64,
            generation: generation.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token from `key`'s bucket, or answers 429 with the wait.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        self.charge(key, true)
    }

    /// 429 if `key`'s bucket is empty, without taking a token (for a cost
    /// charged only afterwards, when it turns out to be one: a failed
    /// authentication).
    pub fn peek(&self, key: &str) -> Result<(), ApiError> {
        self.charge(key, false)
    }

    fn charge(&self, key: &str, take: bool) -> Result<(), ApiError> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match g.current.get(key) {
            Some(b) => *b,
            None => match g.previous.get(key) {
                Some(b) => *b,
                // A key not held has a full bucket.
                None if !take => return self.verdict(None, now).map(|_| ()),
                None => Bucket {
                    tokens: self.burst,
                    at: now,
                },
            },
        };
        let verdict = self.verdict(Some(bucket), now);
        if !take {
            return verdict.map(|_| ());
        }
        // A refused request leaves the bucket as it was, but its key counts
        // as used: it moves into the current generation all the same.
        let kept = match verdict {
            Ok(tokens) => Bucket {
                tokens: tokens - 1.0,
                at: now,
            },
            Err(_) => bucket,
        };
        if !g.current.contains_key(key) {
            g.previous.remove(key);
            if g.current.len() >= self.generation {
                g.previous = std::mem::take(&mut g.current);
            }
        }
        g.current.insert(key.to_string(), kept);
        verdict.map(|_| ())
    }

    /// The bucket's tokens now (a key not held: full), if at least one.
    fn verdict(&self, b: Option<Bucket>, now: Instant) -> Result<f64, ApiError> {
        let tokens = b.map_or(self.burst, |b| {
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst)
        });
        if tokens >= 1.0 {
            Ok(tokens)
        } else {
            let wait = ((1.0 - tokens) / self.per_second).ceil().max(1.0) as u64;
            Err(ApiError::TooManyRequests {
                retry_after_s: wait,
            })
        }
    }

    /// Keys held (both generations).
    pub fn keys(&self) -> usize {
        let g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        g.current.len() + g.previous.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_busy_key_keeps_its_empty_bucket_however_many_keys_come_after_it() {
        // A token every 1,000 s, so the test's own time adds none.
        let l = RateLimiter::with_generation(0.001, 5, 100);
        for _ in 0..5 {
            l.check("attacker").unwrap();
        }
        assert!(l.check("attacker").is_err(), "the burst is spent");
        // Ten generations' worth of fresh names, the attacker's key used
        // between them as it would be.
        for i in 0..1_000 {
            l.check(&format!("name-{i}")).unwrap();
            if i % 50 == 0 {
                assert!(
                    l.check("attacker").is_err(),
                    "the busy key was forgiven after {i} new keys"
                );
            }
        }
        assert!(l.check("attacker").is_err());
        assert!(l.keys() <= 200, "memory is bounded: {} keys", l.keys());
    }

    #[test]
    fn an_idle_key_is_dropped_after_a_generation_and_comes_back_full() {
        let l = RateLimiter::with_generation(0.001, 2, 10);
        l.check("idle").unwrap();
        l.check("idle").unwrap();
        assert!(l.check("idle").is_err());
        for i in 0..25 {
            l.check(&format!("k{i}")).unwrap();
        }
        assert!(l.check("idle").is_ok(), "an idle key's bucket was dropped");
    }

    #[test]
    fn peek_refuses_an_empty_bucket_without_taking_or_keeping_anything() {
        let l = RateLimiter::with_generation(0.001, 1, 10);
        l.peek("k").unwrap();
        l.peek("k").unwrap();
        assert_eq!(l.keys(), 0, "a key only looked at is not kept");
        l.check("k").unwrap();
        assert!(l.peek("k").is_err());
        assert!(l.check("k").is_err());
    }

    #[test]
    fn zero_per_second_limits_nothing() {
        let l = RateLimiter::new(0, 1);
        for _ in 0..100 {
            l.check("k").unwrap();
        }
    }
}
