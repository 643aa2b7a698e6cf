//! The only doors from the core to the outside world.
//!
//! The gateway is written against these traits so the same code runs on
//! Workers, on Spin and natively in tests. The futures are deliberately not
//! `Send`: wasm is single-threaded and the platform handles (`JsValue`,
//! Spin resources) are not `Send` either. Native code drives them on a
//! current-thread runtime or a `LocalSet`.

#![allow(async_fn_in_trait)] // the futures are intentionally !Send, see above

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

pub type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;
/// A streaming HTTP body. Dropping it must cancel the underlying transfer.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, HttpError>>>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("key-value store unavailable: {0}")]
    Unavailable(String),
    /// The platform has no such store (strict counters on a host without
    /// a Durable Object binding or key-value atomics).
    #[error("not available on this platform: {0}")]
    Unsupported(&'static str),
}

/// Key-value storage (Workers KV, Spin key-value, memory).
pub trait KvStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// `ttl_secs` below the platform minimum (60 s on Workers KV) is raised
    /// to it by the adapter.
    async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: Option<u64>) -> Result<(), KvError>;
    async fn delete(&self, key: &str) -> Result<(), KvError>;
    /// Keys starting with `prefix`, at most `limit`, in lexicographic order.
    /// Eventually consistent on Workers KV, like everything else there.
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, KvError>;
}

/// One change to a strict counter: add `delta` to `key` if `bound` holds.
/// Serializable: the Workers adapter sends a request's charges to its
/// Durable Object as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Charge {
    pub key: String,
    pub delta: i64,
    pub bound: Bound,
    /// Seconds the counter is needed for after this change; a store may
    /// forget it afterwards.
    pub ttl_secs: u64,
    /// Also take this many more units now, for the isolate to hand out
    /// later without a round trip (an `AtMost` bound only). A store grants
    /// them only while the bound leaves at least [`GRANT_HEADROOM`] times as
    /// many after the charge ([`grant`]), so what isolates hold unused is
    /// small next to what is left; a store may grant nothing.
    #[serde(default)]
    pub extra: i64,
}

/// How many times a grant what an `AtMost` bound must still leave.
pub const GRANT_HEADROOM: i64 = 16;

/// What a store grants of `c.extra` when the counter stands at `after`
/// (this charge included): all of it while the bound leaves at least
/// [`GRANT_HEADROOM`] times as much, else nothing (near a limit every
/// request asks); nothing for other bounds.
pub fn grant(c: &Charge, after: i64) -> i64 {
    match c.bound {
        Bound::AtMost(n) if c.extra > 0 && n.saturating_sub(after) >= c.extra.saturating_mul(GRANT_HEADROOM) => c.extra,
        _ => 0,
    }
}

/// When a [`Charge`] may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Bound {
    /// Always (corrections, reads with `delta` 0).
    Unbounded,
    /// If the value after the change is at most this (a per-minute limit:
    /// requests, tokens).
    AtMost(i64),
    /// If the value before the change is below this (a spend budget: a
    /// request may start while any budget is left).
    Below(i64),
}

/// What a [`StrictCounters::charge`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Charged {
    /// Every charge applied: the values after, and what was granted of
    /// each charge's `extra` (included in `after`), in order.
    Applied { after: Vec<i64>, granted: Vec<i64> },
    /// None applied: charge `index` would break its bound at `current`.
    Refused { index: usize, current: i64 },
}

impl Bound {
    /// Whether a counter at `current` may take `delta`.
    pub fn admits(self, current: i64, delta: i64) -> bool {
        match self {
            Bound::Unbounded => true,
            Bound::AtMost(n) => current.saturating_add(delta) <= n,
            Bound::Below(n) => current < n,
        }
    }
}

/// Counters that are exact across isolates: every request's charges are
/// decided and applied in one step by one authority (a Durable Object per
/// shard on Workers, key-value atomics on Spin), so concurrent requests
/// can never both take the last unit of a limit.
pub trait StrictCounters {
    /// Whether this platform has a strict store (for `/ready`): its name
    /// when it is missing.
    fn strict_missing(&self) -> Option<&'static str> {
        Some("a strict counter store")
    }

    /// Apply all of `charges` or none. `shard` names the authority that
    /// owns the keys (the tenant), so that one request's charges are one
    /// atomic step.
    ///
    /// Returns `KvError::Unsupported` on a platform without a strict store
    /// (the default), `KvError::Unavailable` when the store failed.
    async fn charge(&self, shard: &str, charges: &[Charge]) -> Result<Charged, KvError> {
        let _ = (shard, charges);
        Err(KvError::Unsupported("strict counters"))
    }
}

/// The all-or-nothing decision over counters held in memory (the test
/// platform's store and the Durable Object's): `values[i]` is the current
/// value of `charges[i].key` (0 when absent). Keys may repeat; a later
/// charge sees the earlier ones.
pub fn decide_charges(values: &[i64], charges: &[Charge]) -> Charged {
    let mut after: Vec<i64> = Vec::with_capacity(charges.len());
    let mut granted: Vec<i64> = Vec::with_capacity(charges.len());
    for (i, c) in charges.iter().enumerate() {
        // An earlier charge on the same key in this batch counts.
        let current = charges[..i]
            .iter()
            .rposition(|e| e.key == c.key)
            .map_or(values.get(i).copied().unwrap_or(0), |j| after[j]);
        if !c.bound.admits(current, c.delta) {
            return Charged::Refused { index: i, current };
        }
        let charged = current.saturating_add(c.delta);
        let g = grant(c, charged);
        after.push(charged.saturating_add(g));
        granted.push(g);
    }
    Charged::Applied { after, granted }
}

/// An outbound request. Its headers carry credentials (`authorization`,
/// `x-api-key`), so its `Debug` shows header names only.
#[derive(Clone)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Whether dropping [`HttpClient::send`]'s future before the response
    /// arrives must cancel the request on the wire. True unless the core
    /// knows that giving up on it ends the client's request (a JSON
    /// answer's timeout is never retried): the runtime's own end of that
    /// request then cancels it, and a Workers adapter skips the
    /// `AbortController` it would otherwise attach to every fetch.
    pub cancel_on_drop: bool,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &header_names(&self.headers))
            .field("body_bytes", &self.body.len())
            .field("cancel_on_drop", &self.cancel_on_drop)
            .finish()
    }
}

/// Header names without their values, for `Debug` output.
pub fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(k, _)| k.as_str()).collect()
}

/// The upstream response headers the core reads, lower-case. An adapter
/// need copy no others into [`HttpResponse::headers`]: a provider sends
/// twenty or more (rate-limit counters, tracing ids, cookies), and on
/// Workers each one copied is several crossings into JS.
pub const UPSTREAM_HEADERS_READ: [&str; 3] = ["content-type", "content-length", "retry-after"];

/// Whether a `content-type` value names an event stream (any letter case),
/// which is read as SSE whatever was asked for.
pub fn is_event_stream(content_type: &str) -> bool {
    content_type.to_ascii_lowercase().contains("event-stream")
}

pub struct HttpResponse {
    pub status: u16,
    /// At least the headers named in [`UPSTREAM_HEADERS_READ`] that the
    /// upstream sent; names in any case.
    pub headers: Vec<(String, String)>,
    pub body: BodyStream,
}

impl HttpResponse {
    /// The value of header `name` (any case). `name` must be one of
    /// [`UPSTREAM_HEADERS_READ`]: adapters copy no others, so a debug build
    /// panics on any other name rather than let the core read a header
    /// that is always missing in production.
    pub fn header(&self, name: &str) -> Option<&str> {
        debug_assert!(
            UPSTREAM_HEADERS_READ.iter().any(|h| h.eq_ignore_ascii_case(name)),
            "`{name}` is not in UPSTREAM_HEADERS_READ"
        );
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Transport failures. The message is for logs and never carries secrets:
/// adapters must not include request headers in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("connection interrupted: {0}")]
    Interrupted(String),
}

/// Outbound HTTP with a streaming response body.
pub trait HttpClient {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError>;
}

/// Timers, background work, clocks and randomness: the things a sans-I/O
/// core must not reach for itself (`Instant::now()` panics on
/// `wasm32-unknown-unknown`).
pub trait Runtime {
    /// Run `fut` after the response has been handed back (`waitUntil`).
    fn spawn(&self, fut: LocalBoxFuture<()>);
    fn sleep(&self, ms: u64) -> LocalBoxFuture<()>;
    /// Wall-clock time, milliseconds since the Unix epoch: for timestamps
    /// and for anything compared across isolates (KV expiries, rate-limit
    /// windows, circuits shared through KV). It can step backwards.
    fn now_ms(&self) -> u64;
    /// Milliseconds on a clock that never goes backwards, from an arbitrary
    /// origin: for deadlines, stall timers, latencies and in-isolate TTLs.
    /// Only differences between two readings mean anything.
    fn monotonic_ms(&self) -> u64;
    /// Bytes of linear memory the core runs in, when the platform can tell
    /// (a wasm instance's memory grows and never shrinks, so this is its
    /// high-water mark).
    fn memory_bytes(&self) -> Option<u64> {
        None
    }
    fn random_u64(&self) -> u64;
}

/// Everything a gateway needs from its host.
pub trait Platform: KvStore + StrictCounters + HttpClient + Runtime + Clone + 'static {}
impl<T: KvStore + StrictCounters + HttpClient + Runtime + Clone + 'static> Platform for T {}

/// In-memory implementations for unit tests and local tools.
pub mod memory {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::rc::Rc;

    /// Value and optional expiry (Unix ms).
    type Entry = (Vec<u8>, Option<u64>);

    /// Strict counters in memory, for tests: one authority for every
    /// shard, as a Durable Object is for its own.
    #[derive(Clone, Default)]
    pub struct MemoryCounters {
        map: Rc<RefCell<HashMap<String, i64>>>,
        /// `charge` calls, to count a route's strict-store operations.
        pub calls: Rc<Cell<u64>>,
    }

    impl MemoryCounters {
        pub fn get(&self, key: &str) -> i64 {
            self.map.borrow().get(key).copied().unwrap_or(0)
        }
    }

    impl StrictCounters for MemoryCounters {
        fn strict_missing(&self) -> Option<&'static str> {
            None
        }
        async fn charge(&self, _shard: &str, charges: &[Charge]) -> Result<Charged, KvError> {
            self.calls.set(self.calls.get() + 1);
            let mut map = self.map.borrow_mut();
            let values: Vec<i64> = charges.iter().map(|c| map.get(&c.key).copied().unwrap_or(0)).collect();
            let out = decide_charges(&values, charges);
            if let Charged::Applied { after, .. } = &out {
                for (c, v) in charges.iter().zip(after) {
                    map.insert(c.key.clone(), *v);
                }
            }
            Ok(out)
        }
    }

    /// A KV map with TTLs against a manually advanced clock.
    #[derive(Clone, Default)]
    pub struct MemoryKv {
        map: Rc<RefCell<HashMap<String, Entry>>>,
        pub clock: Rc<Cell<u64>>,
        pub writes: Rc<Cell<u64>>,
        /// Operations of every kind (get, put, delete, list), to check a
        /// route against a platform's per-invocation limit.
        pub ops: Rc<Cell<u64>>,
    }

    impl MemoryKv {
        pub fn keys(&self) -> Vec<String> {
            let mut k: Vec<String> = self.map.borrow().keys().cloned().collect();
            k.sort();
            k
        }
    }

    impl KvStore for MemoryKv {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            self.ops.set(self.ops.get() + 1);
            let now = self.clock.get();
            let map = self.map.borrow();
            Ok(map
                .get(key)
                .filter(|(_, exp)| exp.is_none_or(|e| e > now))
                .map(|(v, _)| v.clone()))
        }
        async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: Option<u64>) -> Result<(), KvError> {
            let exp = ttl_secs.map(|t| self.clock.get() + t * 1000);
            self.writes.set(self.writes.get() + 1);
            self.ops.set(self.ops.get() + 1);
            self.map.borrow_mut().insert(key.to_string(), (value, exp));
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<(), KvError> {
            self.ops.set(self.ops.get() + 1);
            self.map.borrow_mut().remove(key);
            Ok(())
        }
        /// Counted as Workers KV counts it: one operation per 1,000 names.
        async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
            let now = self.clock.get();
            let mut keys: Vec<String> = self
                .map
                .borrow()
                .iter()
                .filter(|(k, (_, exp))| k.starts_with(prefix) && exp.is_none_or(|e| e > now))
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort();
            keys.truncate(limit);
            self.ops.set(self.ops.get() + (keys.len() as u64).div_ceil(1000).max(1));
            Ok(keys)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, delta: i64, bound: Bound, extra: i64) -> Charge {
        Charge {
            key: key.into(),
            delta,
            bound,
            ttl_secs: 60,
            extra,
        }
    }

    #[test]
    fn a_batch_applies_whole_or_not_at_all_and_grants_only_with_headroom() {
        let c = [
            charge("r", 1, Bound::AtMost(161), 10),
            charge("s", 10, Bound::Below(100), 0),
        ];
        // 161 - 1 = 160 left after the charge: 16 times the 10 asked.
        assert_eq!(
            decide_charges(&[0, 99], &c),
            Charged::Applied {
                after: vec![11, 109],
                granted: vec![10, 0]
            }
        );
        assert_eq!(
            decide_charges(&[0, 100], &c),
            Charged::Refused { index: 1, current: 100 }
        );
        assert_eq!(
            decide_charges(&[161, 0], &c),
            Charged::Refused { index: 0, current: 161 }
        );
        // Near the limit nothing is granted.
        assert_eq!(
            decide_charges(&[1, 0], &c),
            Charged::Applied {
                after: vec![2, 10],
                granted: vec![0, 0]
            }
        );
    }
}
