//! The half of a platform adapter that is the same on every platform.
//!
//! An adapter supplies a [`Host`] (where its variables and secrets live)
//! and its request and response conversions; everything else is here:
//! loading and validating the config, the gateway built once per isolate
//! (or Spin instance) and reused, reading the request body with its cap,
//! and what is served while the config is broken.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::upstream::plan::Geo;
use super::{unconfigured_response, BodyError, Gateway, Misconfigured, Request, Response};
use crate::config::{admin_secret_name, Config, ConfigError, RawConfig};
use crate::platform::{HttpError, Platform};

/// Where an adapter's configuration comes from.
#[allow(async_fn_in_trait)] // single-threaded hosts, as in `platform`
pub trait Host {
    /// The name of the variable holding the config JSON, for messages.
    fn config_var(&self) -> &'static str;
    /// How an operator sets it on this platform, for the "not set" error.
    fn config_hint(&self) -> &'static str;
    /// The config JSON; `None` when unset or empty.
    async fn config_json(&self) -> Option<String>;
    /// A secret by the name the config gives it (`api_key_secret`, ...);
    /// `None` when unset or empty. Never logs the value.
    async fn secret(&self, name: &str) -> Option<String>;
}

/// Load and validate the config: every secret it names is fetched first
/// (hosts read variables asynchronously; validation is synchronous).
///
/// Returns `ConfigError::Invalid` naming the config variable when it is
/// unset, and whatever [`RawConfig::validate`] finds otherwise.
pub async fn load<H: Host>(host: &H) -> Result<Config, ConfigError> {
    let json = host.config_json().await.ok_or_else(|| ConfigError::Invalid {
        path: host.config_var().into(),
        message: format!("is not set; {}", host.config_hint()),
    })?;
    let raw = RawConfig::parse(&json)?;
    let mut secrets = HashMap::new();
    for name in raw.secret_names() {
        if let Some(v) = host.secret(&name).await {
            secrets.insert(name, v);
        }
    }
    raw.validate(&|name| secrets.get(name).cloned())
}

type Built = Rc<Result<Gateway, ConfigError>>;

thread_local! {
    /// One gateway per isolate: its caches (keys, counters, circuits)
    /// survive between requests, the way isolates are meant to be used.
    static GATEWAY: RefCell<Option<Built>> = const { RefCell::new(None) };
}

/// The isolate's gateway, built on first use. A config error is kept too:
/// fixing the config means deploying a new version, i.e. a new isolate.
pub async fn isolate_gateway<H: Host>(host: &H) -> Built {
    if let Some(g) = GATEWAY.with(|g| g.borrow().clone()) {
        return g;
    }
    let built = Rc::new(load(host).await.map(Gateway::new));
    // Two requests may race through the first build; the first one wins.
    GATEWAY.with(|g| g.borrow_mut().get_or_insert(built).clone())
}

/// The body-size cap for requests to this gateway (bytes), with a default
/// while the config is broken.
pub fn body_limit(gw: &Result<Gateway, ConfigError>) -> usize {
    gw.as_ref().map_or(1 << 20, |g| g.config.limits.max_body_bytes)
}

/// A platform's request, as far as the core needs it.
pub struct Incoming<S> {
    pub method: String,
    /// Path and query, as the client sent them.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as it arrives; `None` when there is none.
    pub body: Option<S>,
    /// The client's location, when the platform knows it.
    pub geo: Option<Geo>,
}

/// Everything between an adapter's request conversion and its response
/// conversion: read the body (not for GET and HEAD) under the gateway's
/// cap, then handle the request, or while the config is broken answer as
/// [`unconfigured_response`] says. `platform` is only built for a
/// configured gateway; when it cannot be (a missing binding) the client
/// gets a generic 503 and the log says why.
pub async fn serve<H, P, S>(
    gw: &Result<Gateway, ConfigError>,
    host: &H,
    incoming: Incoming<S>,
    platform: impl FnOnce() -> Result<P, String>,
) -> Response
where
    H: Host,
    P: Platform,
    S: Stream<Item = Result<Bytes, HttpError>> + Unpin,
{
    let declared = declared_length(&incoming.headers);
    let body = if matches!(incoming.method.as_str(), "GET" | "HEAD") {
        Ok(Bytes::new())
    } else {
        read_body(declared, incoming.body, body_limit(gw)).await
    };
    let req = Request {
        method: incoming.method,
        path: incoming.path,
        headers: incoming.headers,
        body,
        geo: incoming.geo,
    };
    match gw {
        Ok(g) => match platform() {
            Ok(p) => g.handle(&p, req).await,
            Err(why) => {
                tracing::error!(error = %why, "the platform's bindings are not available");
                Response::error(&Misconfigured)
            }
        },
        Err(e) => unconfigured(e, host, &req).await,
    }
}

/// The answer while the config is broken, as [`unconfigured_response`]
/// says; the admin token that unlocks the details comes from the host.
pub async fn unconfigured<H: Host>(err: &ConfigError, host: &H, req: &Request) -> Response {
    let name = admin_secret_name(host.config_json().await.as_deref());
    let admin = host.secret(&name).await;
    unconfigured_response(err, req, admin.as_deref())
}

/// The request body's `content-length`, when declared and a number.
pub fn declared_length(headers: &[(String, String)]) -> Option<usize> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
}

/// A body larger than the cap by up to this much is still read, and
/// discarded, before the 413: a request whose body is left unread ends its
/// connection, and a client that reuses it for its next request sees that
/// fail. Larger bodies are refused without reading them.
pub const DISCARD_MAX: usize = 256 << 10;

/// Read a request body of at most `limit` bytes. `declared` is its
/// `content-length`, when given.
///
/// Returns `BodyError::TooLarge` past the cap (without holding more than
/// `limit` bytes) and `BodyError::Interrupted` when the client's stream
/// fails: a truncated body is never passed on as if it were whole.
pub async fn read_body<S>(declared: Option<usize>, body: Option<S>, limit: usize) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<Bytes, HttpError>> + Unpin,
{
    let too_large = BodyError::TooLarge { limit };
    if declared.is_some_and(|n| n > limit.saturating_add(DISCARD_MAX)) {
        return Err(too_large);
    }
    let Some(mut body) = body else {
        return Ok(Bytes::new());
    };
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| BodyError::Interrupted)?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit.saturating_add(DISCARD_MAX) {
            return Err(too_large);
        }
        if seen <= limit {
            out.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;
    use futures_util::stream;

    fn chunks(parts: &[&'static [u8]]) -> Option<impl Stream<Item = Result<Bytes, HttpError>> + Unpin> {
        Some(stream::iter(
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn body_within_the_cap_is_whole() {
        assert_eq!(
            block_on(read_body(None, chunks(&[b"ab", b"cd"]), 4)),
            Ok(Bytes::from_static(b"abcd"))
        );
    }

    #[test]
    fn body_over_the_cap_is_too_large_not_truncated() {
        let r = block_on(read_body(None, chunks(&[b"ab", b"cde"]), 4));
        assert_eq!(r, Err(BodyError::TooLarge { limit: 4 }));
        let declared = block_on(read_body(Some(4 + DISCARD_MAX + 1), chunks(&[]), 4));
        assert_eq!(declared, Err(BodyError::TooLarge { limit: 4 }));
    }

    #[test]
    fn interrupted_body_is_an_error() {
        let s = stream::iter(vec![
            Ok(Bytes::from_static(b"{\"mo")),
            Err(HttpError::Interrupted("reset".into())),
        ]);
        assert_eq!(block_on(read_body(None, Some(s), 100)), Err(BodyError::Interrupted));
    }
}
