//! `POST /v1/responses`: the Responses API through the same pipeline.
//!
//! The request is translated to a chat request (`wire::openai::responses`)
//! and validated by the chat rules; from there it is authenticated,
//! rate-limited, routed and accounted like `/v1/chat/completions`. The
//! answer is a Response object, or the typed Responses events when the
//! client streams. Errors keep OpenAI's shape.
//!
//! With `store` (the default) the account stage keeps the finished
//! Response, its input items and the conversation so far in KV, under the
//! tenant, for `responses.ttl_secs` (default 30 days); `GET`/`DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items` serve them, and
//! `previous_response_id` continues the conversation.

use std::rc::Rc;

use serde_json::{json, Value};

use super::Decoded;
use crate::gateway::respond::ClientFormat;
use crate::gateway::stages::account::RecentRecords;
use crate::gateway::upstream::attempt::Native;
use crate::gateway::upstream::target::NativeApi;
use crate::gateway::{Gateway, GatewayError, Request, RequestCtx, Response};
use crate::platform::{KvStore, Platform, Runtime};
use crate::wire::openai::responses::{native, rename_params, stored, to_chat, ResponseMeta, ResponsesRequest};
use crate::wire::openai::validate::{parse_json_object, validate_chat, ValidRequest};
use crate::wire::openai::ModelCatalog;
use crate::wire::openai::ValidationError;

/// Stage 2 for `/v1/responses`. `max` is the body cap in bytes; `p` gives
/// the Response its id and creation time.
pub(crate) fn decode<P: Runtime>(
    body: &[u8],
    max: usize,
    catalog: &dyn ModelCatalog,
    p: &P,
) -> Result<Decoded, GatewayError> {
    let (req, object): (ResponsesRequest, _) = parse_json_object(body, max)?;
    // The translated body may be a little larger than the original.
    let valid = translate(&req, &[], max.saturating_mul(2), catalog)?;
    let meta = ResponseMeta::new(&req, (p.random_u64(), p.random_u64()), p.now_ms() / 1000);
    Ok(Decoded {
        valid,
        format: ClientFormat::Responses {
            meta: Rc::new(meta),
            native: Rc::new(Native {
                api: NativeApi::Responses,
                body: object,
                headers: Vec::new(),
            }),
        },
    })
}

/// The request as a validated chat request. With `truncation: "auto"`, a
/// conversation longer than the model's context window loses its oldest
/// turns (never a system message, never the last turn) until it fits, as
/// OpenAI truncates; without it, that is a 400 `context_length_exceeded`
/// on `input`.
///
/// Returns `ValidationError::BodyTooLarge` when the translated body is
/// over `max` bytes, else the first validation error, named as the
/// Responses request names the field.
fn translate(
    req: &ResponsesRequest,
    history: &[Value],
    max: usize,
    catalog: &dyn ModelCatalog,
) -> Result<ValidRequest, GatewayError> {
    let mut chat = to_chat(req, history, catalog.native_responses(&req.model))?;
    loop {
        let bytes = serde_json::to_vec(&Value::Object(chat.clone())).unwrap_or_default();
        if bytes.len() > max {
            return Err(ValidationError::BodyTooLarge {
                size: bytes.len(),
                limit: max,
            }
            .into());
        }
        match validate_chat(&bytes, usize::MAX, catalog) {
            Err(e @ ValidationError::ContextLength { .. }) if req.truncates() => {
                if !drop_oldest_turn(&mut chat) {
                    return Err(rename_params(e).into());
                }
            }
            r => return r.map_err(|e| rename_params(e).into()),
        }
    }
}

/// Remove the oldest turn: the first message that is not a system one and
/// everything up to the next user message (the answer, its tool calls and
/// their results), so the conversation still starts with a user turn and
/// no tool result loses its call. Whether one went: the last turn never
/// does.
fn drop_oldest_turn(chat: &mut serde_json::Map<String, Value>) -> bool {
    let Some(messages) = chat.get_mut("messages").and_then(Value::as_array_mut) else {
        return false;
    };
    let system = |m: &Value| matches!(m["role"].as_str(), Some("system" | "developer"));
    let Some(at) = messages.iter().position(|m| !system(m)) else {
        return false;
    };
    let Some(next) = messages
        .iter()
        .enumerate()
        .skip(at + 1)
        .find(|(_, m)| m["role"] == "user")
        .map(|(i, _)| i)
    else {
        return false;
    };
    // System messages inside the turn stay.
    let mut i = at;
    let mut end = next;
    while i < end {
        if system(&messages[i]) {
            i += 1;
        } else {
            messages.remove(i);
            end -= 1;
        }
    }
    true
}

/// The KV key of a stored Response: tenant-scoped, so another tenant's key
/// never finds it. Only for an id that passes [`valid_id`]: a tenant may
/// contain `:`, so an id that did too could name another tenant's key
/// (tenant `a` asking for `b:resp_1` would read tenant `a:b`'s `resp_1`).
pub fn store_key(tenant: &str, id: &str) -> String {
    format!("v1:resp:{tenant}:{id}")
}

/// Whether `id` may name a stored Response: 1 to 128 of `A-Z a-z 0-9 _ -`,
/// which every id the gateway or OpenAI issues is.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn unknown(id: &str) -> GatewayError {
    GatewayError::UnknownResource {
        what: "response",
        id: id.chars().take(64).collect(),
    }
}

/// A stored Response of `tenant`: this isolate's recent write first, then
/// KV. Returns `GatewayError::UnknownResource` for an id the tenant has
/// not stored (or one that could not name a key).
async fn load<P: Platform>(p: &P, recent: &RecentRecords, tenant: &str, id: &str) -> Result<Value, GatewayError> {
    if !valid_id(id) {
        return Err(unknown(id));
    }
    let key = store_key(tenant, id);
    let raw = match recent.get(&key, p.now_ms()) {
        Some(r) => r.to_vec(),
        None => KvStore::get(p, &key).await?.ok_or_else(|| unknown(id))?,
    };
    serde_json::from_slice(&raw).map_err(|_| unknown(id))
}

impl Gateway {
    /// `previous_response_id`: the stored conversation goes before the new
    /// input, and the request is decoded again with it.
    ///
    /// Returns `GatewayError::UnknownResource` (404) when this tenant has
    /// no such Response.
    pub(crate) async fn continue_response<P: Platform>(
        &self,
        p: &P,
        tenant: &str,
        meta: Rc<ResponseMeta>,
        native: &Native,
    ) -> Result<(ValidRequest, ClientFormat), GatewayError> {
        let id = meta.request.previous_response_id.clone().unwrap_or_default();
        // As OpenAI answers it: the request's field is at fault, a 400.
        let record = load(p, &self.shared.recent_records, tenant, &id)
            .await
            .map_err(|e| match e {
                GatewayError::UnknownResource { .. } => GatewayError::from(ValidationError::Invalid {
                    param: "previous_response_id".into(),
                    reason: format!(
                        "no stored response `{}` exists",
                        id.chars().take(64).collect::<String>()
                    ),
                }),
                e => e,
            })?;
        let history: Vec<Value> = record["conversation"].as_array().cloned().unwrap_or_default();
        let max = self.config.limits.max_body_bytes;
        // The stored conversation counts towards the context like any other
        // prompt; only the cap on the client's own bytes is not applied to
        // it, up to a bound that keeps one request's memory sane.
        let valid = translate(&meta.request, &history, max.saturating_mul(64), &*self.config)?;
        // An upstream serving the Responses API gets the conversation
        // inline: the state is the gateway's, never the upstream's.
        let native = Native {
            // Streaming is decided per attempt, where the body is sent.
            body: native::request_body(&native.body, &history, &meta.model, false),
            ..native.clone()
        };
        let mut meta = (*meta).clone();
        meta.history = history;
        let format = ClientFormat::Responses {
            meta: Rc::new(meta),
            native: Rc::new(native),
        };
        Ok((valid, format))
    }

    /// `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and
    /// `DELETE /v1/responses/{id}`; another tenant's id is a 404.
    pub(crate) async fn stored_responses<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
    ) -> Result<Response, GatewayError> {
        let path = crate::gateway::path_without_query(&req.path);
        let rest = path.strip_prefix("/v1/responses/").unwrap_or("");
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(GatewayError::NotFound {
                method: req.method.clone(),
                path: path.chars().take(200).collect(),
            });
        }
        let resp = match (req.method.as_str(), segs.as_slice()) {
            ("GET", [id]) | ("GET", [id, "input_items"]) | ("DELETE", [id]) => {
                let principal = self.authenticate(p, req).await?;
                ctx.key_id = Some(principal.key_id.clone());
                let record = load(p, &self.shared.recent_records, &principal.tenant, id).await?;
                match (req.method.as_str(), segs.len()) {
                    ("GET", 1) if query_param(&req.path, "stream") == Some("true") => {
                        let after = match query_param(&req.path, "starting_after") {
                            None => None,
                            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                                GatewayError::from(ValidationError::Invalid {
                                    param: "starting_after".into(),
                                    reason: "must be an event's sequence_number".into(),
                                })
                            })?),
                        };
                        let bytes = stored::events(&record["response"], after);
                        Response {
                            status: 200,
                            headers: vec![("content-type".into(), "text/event-stream; charset=utf-8".into())],
                            body: crate::gateway::Body::Full(bytes.into()),
                        }
                    }
                    ("GET", 1) => Response::json(200, &record["response"]),
                    ("GET", _) => {
                        let items = record["input_items"].as_array().cloned().unwrap_or_default();
                        Response::json(200, &input_items_page(items, &req.path)?)
                    }
                    _ => {
                        let key = store_key(&principal.tenant, id);
                        self.shared.recent_records.remove(&key);
                        KvStore::delete(p, &key).await?;
                        Response::json(200, &json!({"id": id, "object": "response", "deleted": true}))
                    }
                }
            }
            (m, [_] | [_, "input_items"]) => {
                return Err(GatewayError::MethodNotAllowed {
                    method: m.into(),
                    path: path.chars().take(200).collect(),
                    allowed: if segs.len() == 1 { "GET, DELETE" } else { "GET" },
                })
            }
            (m, _) => {
                return Err(GatewayError::NotFound {
                    method: m.into(),
                    path: path.chars().take(200).collect(),
                })
            }
        };
        ctx.log(resp.status, p.monotonic_ms(), "ok", None);
        Ok(resp)
    }
}

/// The value of query parameter `name` in `path`, if given.
fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// One page of input items, as OpenAI pages them: `order` (`desc`, the
/// default, or `asc`), `limit` (1 to 100, default 20) and `after` (an item
/// id).
fn input_items_page(items: Vec<Value>, path: &str) -> Result<Value, GatewayError> {
    let param = |name: &str| query_param(path, name);
    let bad = |param: &str, reason: &str| {
        GatewayError::from(ValidationError::Invalid {
            param: param.into(),
            reason: reason.into(),
        })
    };
    let limit = match param("limit") {
        None => 20,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| bad("limit", "must be an integer from 1 to 100"))?,
    };
    let mut items = items;
    match param("order") {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(_) => return Err(bad("order", "must be asc or desc")),
    }
    let start = match param("after") {
        None => 0,
        Some(after) => items
            .iter()
            .position(|i| i["id"] == after)
            .map(|i| i + 1)
            .ok_or_else(|| bad("after", "is not an item of this response"))?,
    };
    let rest = items.len().saturating_sub(start);
    let page: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let first = page.first().map(|i| i["id"].clone()).unwrap_or(Value::Null);
    let last = page.last().map(|i| i["id"].clone()).unwrap_or(Value::Null);
    Ok(json!({"object": "list", "data": page, "first_id": first, "last_id": last, "has_more": rest > limit}))
}
