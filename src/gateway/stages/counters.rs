//! Shared counters in an eventually consistent KV, coalesced per isolate.
//!
//! Workers KV is eventually consistent and accepts about one write per
//! second per key, so counters cannot be incremented in KV per request.
//! Instead each isolate keeps, per counter key:
//!
//! - `snapshot`: the last value it read from or wrote to KV,
//! - `pending`: increments made here and not yet written,
//! - `in_flight`: increments being written right now.
//!
//! Its view of the counter is `snapshot + pending + in_flight`, exact for
//! everything this isolate did. A background flush folds `pending` into KV
//! by read-modify-write at most once per `min_write_interval_ms` per key.
//! What other isolates did becomes visible when the snapshot is re-read
//! (`sync_interval_ms`) and KV has propagated it; concurrent read-modify-
//! writes from different isolates can also lose each other's increments.
//! Those two effects are the accuracy bound documented in the README; a
//! strict backend (a Durable Object, or key-value atomics on Spin) removes
//! them and plugs in behind `ratelimit::RateLimitBackend`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::platform::{KvError, KvStore, Platform};

/// Named integer fields, stored as `{"v":1, "<name>": n, ...}`.
pub type Counts = BTreeMap<String, i64>;

/// Soft bound on tracked counter keys per isolate.
const MAX_SLOTS: usize = 20_000;
/// An idle slot older than this may be evicted.
const IDLE_EVICT_MS: u64 = 180_000;

#[derive(Debug, Default)]
struct Slot {
    snapshot: Counts,
    snapshot_at_ms: Option<u64>,
    pending: Counts,
    in_flight: Counts,
    last_write_ms: u64,
    last_used_ms: u64,
    flushing: bool,
    ttl_secs: Option<u64>,
}

impl Slot {
    fn idle(&self) -> bool {
        !self.flushing && self.pending.is_empty() && self.in_flight.is_empty()
    }
}

pub fn add_into(dst: &mut Counts, delta: &Counts) {
    for (k, v) in delta {
        let e = dst.entry(k.clone()).or_insert(0);
        *e = e.saturating_add(*v);
    }
}

pub fn encode(c: &Counts) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("v".into(), 1.into());
    for (k, v) in c {
        m.insert(k.clone(), (*v).into());
    }
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

pub fn decode(raw: Option<&[u8]>) -> Counts {
    let Some(Ok(Value::Object(m))) = raw.map(serde_json::from_slice::<Value>) else {
        return Counts::new();
    };
    m.into_iter()
        .filter(|(k, _)| k != "v")
        .filter_map(|(k, v)| v.as_i64().map(|n| (k, n)))
        .collect()
}

/// The per-isolate table of coalesced counters.
#[derive(Debug)]
pub struct Counters {
    slots: RefCell<HashMap<String, Slot>>,
    sync_interval_ms: u64,
    min_write_interval_ms: u64,
    /// KV writes performed by this isolate, for `/admin/stats`.
    pub writes: Cell<u64>,
    pub reads: Cell<u64>,
    /// Writes per key kind (`rl`, `usage`, `budget`): the second segment of
    /// the key.
    pub writes_by_kind: RefCell<BTreeMap<String, u64>>,
}

impl Counters {
    pub fn new(sync_interval_ms: u64, min_write_interval_ms: u64) -> Self {
        Counters {
            slots: RefCell::new(HashMap::new()),
            sync_interval_ms,
            min_write_interval_ms,
            writes: Cell::new(0),
            reads: Cell::new(0),
            writes_by_kind: RefCell::new(BTreeMap::new()),
        }
    }

    /// This isolate's own view of `key` (its last snapshot plus what it
    /// has not written yet), without reading KV; `None` when it has none.
    pub fn peek(&self, key: &str) -> Option<Counts> {
        let slots = self.slots.borrow();
        let slot = slots.get(key)?;
        let mut view = slot.snapshot.clone();
        add_into(&mut view, &slot.pending);
        add_into(&mut view, &slot.in_flight);
        Some(view)
    }

    /// This isolate's view of a counter, re-reading KV when stale.
    pub async fn view<P: Platform>(&self, p: &P, key: &str) -> Result<Counts, KvError> {
        self.refresh(p, key).await?;
        Ok(self.peek(key).unwrap_or_default())
    }

    /// Re-read `key` from KV when this isolate's snapshot is stale, and
    /// mark it used. A caller that must decide and count without another
    /// request deciding in between refreshes first, then [`peek`]s and
    /// adds with no await in between.
    ///
    /// [`peek`]: Counters::peek
    pub async fn refresh<P: Platform>(&self, p: &P, key: &str) -> Result<(), KvError> {
        let now = p.now_ms();
        let stale = {
            let slots = self.slots.borrow();
            slots
                .get(key)
                .and_then(|s| s.snapshot_at_ms)
                .is_none_or(|t| now.saturating_sub(t) >= self.sync_interval_ms)
        };
        if stale {
            let raw = KvStore::get(p, key).await?;
            self.reads.set(self.reads.get() + 1);
            let kv = decode(raw.as_deref());
            let mut slots = self.slots.borrow_mut();
            let slot = slots.entry(key.to_string()).or_default();
            // KV reads can be older than our own last write (edge caching):
            // keep the larger of each field so our own increments never
            // disappear from the view. This errs towards over-counting.
            for (k, v) in kv {
                let cur = slot.snapshot.entry(k).or_insert(v);
                *cur = (*cur).max(v);
            }
            slot.snapshot_at_ms = Some(now);
        }
        let mut slots = self.slots.borrow_mut();
        slots.entry(key.to_string()).or_default().last_used_ms = now;
        Ok(())
    }

    /// Record an increment. Returns `true` when the caller must start a
    /// flush (none is running for this key yet).
    pub fn add(&self, key: &str, delta: &Counts, ttl_secs: Option<u64>, now_ms: u64) -> bool {
        let mut slots = self.slots.borrow_mut();
        if slots.len() > MAX_SLOTS {
            slots.retain(|_, s| !s.idle() || now_ms.saturating_sub(s.last_used_ms) < IDLE_EVICT_MS);
        }
        let slot = slots.entry(key.to_string()).or_default();
        add_into(&mut slot.pending, delta);
        slot.ttl_secs = ttl_secs;
        slot.last_used_ms = now_ms;
        if slot.flushing {
            false
        } else {
            slot.flushing = true;
            true
        }
    }

    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.borrow().is_empty()
    }
}

/// Add to a shared counter and make sure a flush is running for it.
pub fn bump<P: Platform>(
    shared: &Rc<impl AsRef<Counters> + 'static>,
    p: &P,
    key: &str,
    delta: &Counts,
    ttl_secs: Option<u64>,
) {
    if shared.as_ref().as_ref().add(key, delta, ttl_secs, p.now_ms()) {
        p.spawn(Box::pin(flush(shared.clone(), p.clone(), key.to_string())));
    }
}

/// Write a key's pending increments to KV, spaced by the write interval,
/// until none are left. Run it in the background (it may sleep).
pub async fn flush<P: Platform>(counters: Rc<impl AsRef<Counters>>, p: P, key: String) {
    let c = (*counters).as_ref();
    loop {
        let wait = {
            let slots = c.slots.borrow();
            let Some(slot) = slots.get(&key) else { return };
            (slot.last_write_ms + c.min_write_interval_ms).saturating_sub(p.now_ms())
        };
        if wait > 0 {
            p.sleep(wait).await;
        }
        let (delta, ttl) = {
            let mut slots = c.slots.borrow_mut();
            let Some(slot) = slots.get_mut(&key) else { return };
            slot.in_flight = std::mem::take(&mut slot.pending);
            (slot.in_flight.clone(), slot.ttl_secs)
        };
        let result = async {
            let raw = KvStore::get(&p, &key).await?;
            let mut value = decode(raw.as_deref());
            add_into(&mut value, &delta);
            KvStore::put(&p, &key, encode(&value), ttl).await?;
            Ok::<Counts, KvError>(value)
        }
        .await;
        let mut slots = c.slots.borrow_mut();
        let Some(slot) = slots.get_mut(&key) else { return };
        match result {
            Ok(written) => {
                c.writes.set(c.writes.get() + 1);
                let kind = key.split(':').nth(1).unwrap_or("other").to_string();
                *c.writes_by_kind.borrow_mut().entry(kind).or_insert(0) += 1;
                // What was just written is the freshest value known, and
                // exact: taken as is, so a correction downwards (a
                // reservation replaced by real usage) lowers the view too.
                // Only a read, which may be stale, is merged by maximum.
                slot.snapshot = written;
                slot.snapshot_at_ms = Some(p.now_ms());
                slot.in_flight.clear();
            }
            Err(e) => {
                // Keep the increments for the next attempt rather than
                // dropping them; the next request on this key retries.
                tracing::warn!(error = %e, "counter flush failed; will retry");
                let in_flight = std::mem::take(&mut slot.in_flight);
                add_into(&mut slot.pending, &in_flight);
                slot.flushing = false;
                return;
            }
        }
        slot.last_write_ms = p.now_ms();
        if slot.pending.is_empty() {
            slot.flushing = false;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip_ignores_garbage() {
        let mut c = Counts::new();
        c.insert("requests".into(), 3);
        c.insert("tokens".into(), -2);
        assert_eq!(decode(Some(&encode(&c))), c);
        assert!(decode(Some(b"not json")).is_empty());
        assert!(decode(None).is_empty());
    }
}
