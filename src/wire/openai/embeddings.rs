//! Embedding vectors in the encoding the client asked for.
//!
//! The official SDKs ask for `encoding_format: "base64"` by default and
//! decode the string as little-endian float32. An upstream that ignores the
//! field and sends float arrays would otherwise reach them as JSON the SDK
//! misreads (a vector a quarter of the width, without an error), and one
//! that sends base64 to a client that asked for floats would hand it a
//! string. So the edge converts whichever way is needed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Number, Value};

/// The encoding a request asked for: `base64`, or floats (the default).
pub fn wants_base64(encoding_format: Option<&str>) -> bool {
    encoding_format == Some("base64")
}

/// Rewrite `data[].embedding` of an embeddings response in place into the
/// requested encoding. Vectors already in it, and values that are neither
/// form, are left as they are.
pub fn encode_as(body: &mut Value, base64: bool) {
    let Some(data) = body.get_mut("data").and_then(Value::as_array_mut) else {
        return;
    };
    for item in data {
        let Some(e) = item.get_mut("embedding") else { continue };
        let converted = match (&*e, base64) {
            (Value::Array(xs), true) => to_base64(xs),
            (Value::String(s), false) => from_base64(s),
            _ => None,
        };
        if let Some(v) = converted {
            *e = v;
        }
    }
}

fn to_base64(xs: &[Value]) -> Option<Value> {
    let mut bytes = Vec::with_capacity(xs.len() * 4);
    for x in xs {
        bytes.extend_from_slice(&(x.as_f64()? as f32).to_le_bytes());
    }
    Some(STANDARD.encode(bytes).into())
}

fn from_base64(s: &str) -> Option<Value> {
    let bytes = STANDARD.decode(s).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    let xs = bytes
        .chunks_exact(4)
        .map(|c| {
            let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            // f32 → f64 is exact, so the client reads back the same float32.
            Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number)
        })
        .collect();
    Some(Value::Array(xs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_to_base64_and_back() {
        let mut body = json!({"data": [{"embedding": [0.5, -1.0, 0.25, 2.0]}]});
        encode_as(&mut body, true);
        assert_eq!(body["data"][0]["embedding"], "AAAAPwAAgL8AAIA+AAAAQA==");
        encode_as(&mut body, false);
        assert_eq!(body["data"][0]["embedding"], json!([0.5, -1.0, 0.25, 2.0]));
    }

    #[test]
    fn odd_values_are_left_alone() {
        let mut body = json!({"data": [{"embedding": "not base64!"}, {"embedding": ["x"]}, {"index": 2}]});
        let before = body.clone();
        encode_as(&mut body, false);
        encode_as(&mut body, true);
        assert_eq!(body, before);
    }
}
