//! Passive health: a circuit breaker per upstream.
//!
//! `circuit_failures` consecutive failures open a target's circuit for
//! `circuit_cooldown_ms`; after that one request is let through as a probe
//! (half-open): success closes the circuit, failure opens it again. Every
//! other outcome of the probe (a 429, a deadline that passed before it was
//! sent, a request dropped mid-flight) hands the probe back through the
//! [`Permit`]'s `Drop`, and a probe held longer than the request deadline
//! is presumed lost, so no outcome can leave a target shut out. The
//! state lives in isolate memory and is shared through KV
//! (`v1:health:<name>`), written only on open and close, and read by other
//! isolates at most every few seconds, so one isolate's discovery spares the
//! others the timeouts. Its instants (`until_ms`) are wall-clock times,
//! since other isolates compare them with their own clocks.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{json, Value};

use crate::platform::{KvStore, Platform};

/// How often an isolate re-reads a target's shared circuit state.
const SYNC_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until_ms: u64 },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Circuit {
    state: State,
    failures: u32,
    synced_at_ms: Option<u64>,
    /// Which probe holds the half-open slot, and since when.
    probe_seq: u64,
    probe_since_ms: u64,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit {
            state: State::Closed,
            failures: 0,
            synced_at_ms: None,
            probe_seq: 0,
            probe_since_ms: 0,
        }
    }
}

/// What a recorded result changed, so the caller can share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened { until_ms: u64 },
    Closed,
}

#[derive(Debug)]
pub struct Circuits {
    map: RefCell<HashMap<String, Circuit>>,
    threshold: u32,
    cooldown_ms: u64,
    probe_lease_ms: u64,
}

/// Leave to send one request to a target. A probe's permit that is
/// dropped before [`Circuits::success`] or [`Circuits::failure`] resolved
/// the circuit hands the half-open slot back for the next request.
#[must_use]
#[derive(Debug)]
pub struct Permit<'a> {
    circuits: &'a Circuits,
    name: String,
    probe: Option<u64>,
}

impl Permit<'_> {
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(seq) = self.probe {
            self.circuits.release(&self.name, seq);
        }
    }
}

pub fn circuit_key(name: &str) -> String {
    format!("v1:health:{name}")
}

impl Circuits {
    /// `probe_lease_ms`: how long a probe may hold the half-open slot
    /// before it is presumed lost (the request deadline is the natural
    /// bound: no attempt outlives it).
    pub fn new(threshold: u32, cooldown_ms: u64, probe_lease_ms: u64) -> Self {
        Circuits {
            map: RefCell::new(HashMap::new()),
            threshold: threshold.max(1),
            cooldown_ms,
            probe_lease_ms: probe_lease_ms.max(1),
        }
    }

    pub fn state(&self, name: &str) -> State {
        self.map.borrow().get(name).map_or(State::Closed, |c| c.state)
    }

    /// May a request go to `name` now? Moves an expired open circuit to
    /// half-open and admits exactly one probe at a time.
    pub fn allow(&self, name: &str, now_ms: u64) -> Option<Permit<'_>> {
        let mut map = self.map.borrow_mut();
        let c = map.entry(name.to_string()).or_default();
        let probe = match c.state {
            State::Closed => false,
            State::Open { until_ms } => now_ms >= until_ms,
            State::HalfOpen { probing: false } => true,
            // A probe that outlived every deadline will never report.
            State::HalfOpen { probing: true } => now_ms.saturating_sub(c.probe_since_ms) >= self.probe_lease_ms,
        };
        if c.state != State::Closed && !probe {
            return None;
        }
        let probe = probe.then(|| {
            c.state = State::HalfOpen { probing: true };
            c.probe_seq = c.probe_seq.wrapping_add(1);
            c.probe_since_ms = now_ms;
            c.probe_seq
        });
        Some(Permit {
            circuits: self,
            name: name.to_string(),
            probe,
        })
    }

    /// A probe that ended without a verdict: the slot is free again, and
    /// the circuit stays half-open. Only the probe that holds it may.
    fn release(&self, name: &str, seq: u64) {
        let mut map = self.map.borrow_mut();
        if let Some(c) = map.get_mut(name) {
            if c.state == (State::HalfOpen { probing: true }) && c.probe_seq == seq {
                c.state = State::HalfOpen { probing: false };
            }
        }
    }

    pub fn success(&self, name: &str) -> Transition {
        let mut map = self.map.borrow_mut();
        let c = map.entry(name.to_string()).or_default();
        let was_closed = c.state == State::Closed;
        c.failures = 0;
        c.state = State::Closed;
        if was_closed {
            Transition::None
        } else {
            Transition::Closed
        }
    }

    pub fn failure(&self, name: &str, now_ms: u64) -> Transition {
        let mut map = self.map.borrow_mut();
        let c = map.entry(name.to_string()).or_default();
        c.failures = c.failures.saturating_add(1);
        let open = matches!(c.state, State::HalfOpen { .. }) || c.failures >= self.threshold;
        if open && !matches!(c.state, State::Open { .. }) {
            let until_ms = now_ms + self.cooldown_ms;
            c.state = State::Open { until_ms };
            return Transition::Opened { until_ms };
        }
        Transition::None
    }

    /// Adopt another isolate's open circuit from KV, at most every few seconds.
    pub async fn sync<P: Platform>(&self, p: &P, name: &str) {
        let now = p.now_ms();
        let due = {
            let map = self.map.borrow();
            map.get(name)
                .and_then(|c| c.synced_at_ms)
                .is_none_or(|t| now.saturating_sub(t) >= SYNC_MS)
        };
        if !due {
            return;
        }
        let raw = KvStore::get(p, &circuit_key(name)).await.ok().flatten();
        let until = raw
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["open_until_ms"].as_u64());
        let mut map = self.map.borrow_mut();
        let c = map.entry(name.to_string()).or_default();
        c.synced_at_ms = Some(now);
        if let Some(until_ms) = until.filter(|u| *u > now) {
            if c.state == State::Closed {
                c.state = State::Open { until_ms };
            }
        }
    }

    /// Write a transition to KV for other isolates. Best effort.
    pub async fn publish<P: Platform>(&self, p: &P, name: &str, t: Transition) {
        let key = circuit_key(name);
        let _ = match t {
            Transition::None => Ok(()),
            Transition::Opened { until_ms } => {
                let body = json!({"v": 1, "open_until_ms": until_ms}).to_string();
                KvStore::put(p, &key, body.into_bytes(), Some(self.cooldown_ms / 1000 + 60)).await
            }
            Transition::Closed => KvStore::delete(p, &key).await,
        };
    }

    pub fn snapshot(&self) -> Vec<(String, State)> {
        let mut v: Vec<_> = self.map.borrow().iter().map(|(k, c)| (k.clone(), c.state)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_probes_then_closes() {
        let c = Circuits::new(2, 1000, 5000);
        assert!(c.allow("r", 0).is_some());
        assert_eq!(c.failure("r", 0), Transition::None);
        assert_eq!(c.failure("r", 10), Transition::Opened { until_ms: 1010 });
        assert!(c.allow("r", 500).is_none());
        let probe = c.allow("r", 1010).unwrap();
        assert!(probe.is_probe());
        assert!(c.allow("r", 1011).is_none()); // only one at a time
        assert_eq!(c.failure("r", 1020), Transition::Opened { until_ms: 2020 });
        drop(probe); // resolved already: dropping changes nothing
        assert_eq!(c.state("r"), State::Open { until_ms: 2020 });
        let _probe = c.allow("r", 2020).unwrap();
        assert_eq!(c.success("r"), Transition::Closed);
        assert!(!c.allow("r", 2021).unwrap().is_probe());
        assert_eq!(c.state("r"), State::Closed);
    }

    fn half_open(c: &Circuits) {
        assert_eq!(c.failure("r", 0), Transition::Opened { until_ms: 1000 });
    }

    #[test]
    fn a_probe_without_a_verdict_is_handed_back() {
        let c = Circuits::new(1, 1000, 5000);
        half_open(&c);
        let probe = c.allow("r", 1000).unwrap();
        assert!(c.allow("r", 1001).is_none());
        drop(probe); // a 429, a deadline, a dropped request
        assert_eq!(c.state("r"), State::HalfOpen { probing: false });
        assert!(c.allow("r", 1002).unwrap().is_probe());
    }

    #[test]
    fn a_lost_probe_expires_after_its_lease() {
        let c = Circuits::new(1, 1000, 5000);
        half_open(&c);
        let lost = c.allow("r", 1000).unwrap();
        assert!(c.allow("r", 5999).is_none());
        let next = c.allow("r", 6000).unwrap();
        assert!(next.is_probe());
        // The old probe's late drop does not free the new probe's slot.
        drop(lost);
        assert_eq!(c.state("r"), State::HalfOpen { probing: true });
        assert!(c.allow("r", 6001).is_none());
        drop(next);
        assert!(c.allow("r", 6002).is_some());
    }
}
