//! HMAC-SHA256 request signing between the edge and the runners.
//!
//! The signed message binds the timestamp, method, path and a hash of the
//! body, so a captured request cannot be replayed outside the window, sent
//! to another path, or have its body swapped. Format, version `v1`:
//!
//! ```text
//! x-infergate-timestamp: <unix ms>
//! x-infergate-signature: v1=<hex hmac-sha256(secret, "v1\n<ts>\n<METHOD>\n<path>\n<hex sha256(body)>")>
//! ```

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const HEADER_TIMESTAMP: &str = "x-infergate-timestamp";
pub const HEADER_SIGNATURE: &str = "x-infergate-signature";
/// How far a timestamp may be from the verifier's clock, either way.
pub const DEFAULT_WINDOW_MS: u64 = 5 * 60 * 1000;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed (missing {0} header)")]
    Missing(&'static str),
    #[error("the request signature is malformed")]
    Malformed,
    #[error("the request timestamp is outside the allowed window")]
    Expired,
    #[error("the request signature does not match")]
    Mismatch,
}

fn message(timestamp_ms: u64, method: &str, path: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "v1\n{timestamp_ms}\n{}\n{path}\n{body_hash}",
        method.to_ascii_uppercase()
    )
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// The signature header value for a request.
pub fn sign(secret: &[u8], timestamp_ms: u64, method: &str, path: &str, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(message(timestamp_ms, method, path, body).as_bytes());
    format!("v1={}", hex::encode(m.finalize().into_bytes()))
}

/// Both headers to attach to a signed request.
pub fn signed_headers(
    secret: &[u8],
    timestamp_ms: u64,
    method: &str,
    path: &str,
    body: &[u8],
) -> [(String, String); 2] {
    [
        (HEADER_TIMESTAMP.to_string(), timestamp_ms.to_string()),
        (
            HEADER_SIGNATURE.to_string(),
            sign(secret, timestamp_ms, method, path, body),
        ),
    ]
}

/// The parts of a received request that the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// Value of the `x-infergate-timestamp` header, if present.
    pub timestamp: Option<&'a str>,
    /// Value of the `x-infergate-signature` header, if present.
    pub signature: Option<&'a str>,
    pub method: &'a str,
    /// Path as received, without scheme or host.
    pub path: &'a str,
    pub body: &'a [u8],
}

/// Verify a request. The comparison is constant-time (`verify_slice`).
pub fn verify(secret: &[u8], req: &SignedRequest<'_>, now_ms: u64, window_ms: u64) -> Result<(), SignatureError> {
    let (method, path, body) = (req.method, req.path, req.body);
    let ts = req.timestamp.ok_or(SignatureError::Missing(HEADER_TIMESTAMP))?;
    let sig = req.signature.ok_or(SignatureError::Missing(HEADER_SIGNATURE))?;
    let ts: u64 = ts.trim().parse().map_err(|_| SignatureError::Malformed)?;
    if now_ms.abs_diff(ts) > window_ms {
        return Err(SignatureError::Expired);
    }
    let hex_sig = sig.trim().strip_prefix("v1=").ok_or(SignatureError::Malformed)?;
    let raw = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut m = mac(secret);
    m.update(message(ts, method, path, body).as_bytes());
    m.verify_slice(&raw).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(ts: Option<&'a str>, sig: Option<&'a str>, path: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest {
            timestamp: ts,
            signature: sig,
            method: "POST",
            path,
            body,
        }
    }

    #[test]
    fn roundtrip_and_tamper() {
        let s = sign(b"k", 1000, "post", "/v1/completions", b"{}");
        let w = DEFAULT_WINDOW_MS;
        let check = |sig: &str, path: &str, body: &[u8], now: u64| {
            verify(b"k", &req(Some("1000"), Some(sig), path, body), now, w)
        };
        assert_eq!(check(&s, "/v1/completions", b"{}", 1000), Ok(()));
        assert_eq!(
            check(&s, "/v1/chat/completions", b"{}", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&s, "/v1/completions", b"{ }", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&s, "/v1/completions", b"{}", 1000 + w + 1),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            check("v1=zz", "/v1/completions", b"{}", 1000),
            Err(SignatureError::Malformed)
        );
        let other = verify(
            b"other",
            &req(Some("1000"), Some(&s), "/v1/completions", b"{}"),
            1000,
            w,
        );
        assert_eq!(other, Err(SignatureError::Mismatch));
        let missing = verify(b"k", &req(None, Some(&s), "/", b""), 0, 1);
        assert_eq!(missing, Err(SignatureError::Missing(HEADER_TIMESTAMP)));
    }
}
