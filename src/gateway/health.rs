//! Passive health: a circuit breaker per upstream.
//!
//! `circuit_failures` consecutive failures open a target's circuit for
//! `circuit_cooldown_ms`; after that one request is let through as a probe
//! (half-open): success closes the circuit, failure opens it again. The
//! state lives in isolate memory and is shared through KV
//! (`v1:health:<name>`), written only on open and close, and read by other
//! isolates at most every few seconds, so one isolate's discovery spares the
//! others the timeouts.

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
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit {
            state: State::Closed,
            failures: 0,
            synced_at_ms: None,
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
}

pub fn health_key(name: &str) -> String {
    format!("v1:health:{name}")
}

impl Circuits {
    pub fn new(threshold: u32, cooldown_ms: u64) -> Self {
        Circuits {
            map: RefCell::new(HashMap::new()),
            threshold: threshold.max(1),
            cooldown_ms,
        }
    }

    pub fn state(&self, name: &str) -> State {
        self.map.borrow().get(name).map_or(State::Closed, |c| c.state)
    }

    /// May a request go to `name` now? Moves an expired open circuit to
    /// half-open and admits exactly one probe.
    pub fn allow(&self, name: &str, now_ms: u64) -> bool {
        let mut map = self.map.borrow_mut();
        let c = map.entry(name.to_string()).or_default();
        match c.state {
            State::Closed => true,
            State::Open { until_ms } if now_ms >= until_ms => {
                c.state = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probing: false } => {
                c.state = State::HalfOpen { probing: true };
                true
            }
            State::HalfOpen { probing: true } => false,
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
        let raw = KvStore::get(p, &health_key(name)).await.ok().flatten();
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
        let key = health_key(name);
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
        let c = Circuits::new(2, 1000);
        assert!(c.allow("r", 0));
        assert_eq!(c.failure("r", 0), Transition::None);
        assert_eq!(c.failure("r", 10), Transition::Opened { until_ms: 1010 });
        assert!(!c.allow("r", 500));
        assert!(c.allow("r", 1010)); // the probe
        assert!(!c.allow("r", 1011)); // only one at a time
        assert_eq!(c.failure("r", 1020), Transition::Opened { until_ms: 2020 });
        assert!(c.allow("r", 2020));
        assert_eq!(c.success("r"), Transition::Closed);
        assert!(c.allow("r", 2021));
        assert_eq!(c.state("r"), State::Closed);
    }
}
