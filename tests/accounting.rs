//! The account stage runs exactly once for every admitted request, on
//! every route, whatever the outcome: one log line (naming the upstream
//! that was called) and one request in the key's usage bucket, with an
//! error counted when the request failed.

mod common;

use bytes::Bytes;
use common::*;
use futures_executor::LocalPool;
use futures_util::StreamExt;
use infergate::gateway::stages::{counters, usage};
use infergate::gateway::{Body, Request};
use infergate::platform::KvStore;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    ChatJson,
    ChatSse,
    Embeddings,
    MessagesJson,
    MessagesSse,
    Task,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Upstream {
    /// A complete answer.
    Ok,
    /// HTTP 500 on every attempt.
    Fails,
    /// Text, then the body ends without a `finish_reason`.
    Truncated,
}

const ROUTES: [Route; 6] = [
    Route::ChatJson,
    Route::ChatSse,
    Route::Embeddings,
    Route::MessagesJson,
    Route::MessagesSse,
    Route::Task,
];

fn request(route: Route) -> Request {
    let auth = vec![("authorization".to_string(), format!("Bearer {KEY}"))];
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let (path, body) = match route {
        Route::ChatJson | Route::ChatSse => (
            "/v1/chat/completions",
            json!({"model": "m", "messages": msgs, "stream": route == Route::ChatSse}),
        ),
        Route::Embeddings => ("/v1/embeddings", json!({"model": "m", "input": "hi"})),
        Route::MessagesJson | Route::MessagesSse => (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 16, "messages": msgs, "stream": route == Route::MessagesSse}),
        ),
        Route::Task => ("/v1/tasks", json!({"model": "m", "messages": msgs})),
    };
    Request::new("POST", path, auth, body.to_string())
}

fn chunk(delta: Value, finish: Value) -> String {
    let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

fn script(fake: &Fake, route: Route, upstream: Upstream) {
    let body = match (route, upstream) {
        (_, Upstream::Fails) => (500, r#"{"error":{"message":"boom"}}"#.to_string()),
        (Route::Embeddings, Upstream::Ok) => (
            200,
            json!({"object": "list", "model": "m", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}})
            .to_string(),
        ),
        (Route::Embeddings, Upstream::Truncated) => (200, r#"{"object":"list","data":[{"emb"#.to_string()),
        (_, Upstream::Ok) => {
            let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
            let s = chunk(json!({"role": "assistant", "content": "Hi"}), Value::Null)
                + &chunk(json!({}), json!("stop"))
                + &format!("data: {usage}\n\ndata: [DONE]\n\n");
            (200, s)
        }
        (_, Upstream::Truncated) => (200, chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null)),
    };
    *fake.upstream.borrow_mut() = (body.0, vec![Bytes::from(body.1)]);
}

/// The `request` log lines in `logs`, as their `fields` objects.
fn request_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["fields"].clone())
        .filter(|f| f["message"] == "request")
        .collect()
}

/// The key's usage bucket for the current hour, as stored in KV.
fn usage_now(pool: &mut LocalPool, fake: &Fake) -> counters::Counts {
    let key = usage::usage_key("k1", fake.now.get());
    let raw = pool.run_until(fake.kv.get(&key)).unwrap();
    counters::decode(raw.as_deref())
}

/// One request through the gateway, its body read to the end, and every
/// background task (pump, account stage, task runner) run to completion.
fn run_one(route: Route, upstream: Upstream) -> (u16, String, Vec<Value>, counters::Counts) {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    script(&fake, route, upstream);
    let mut status = 0;
    let mut body = String::new();
    let logs = capture_logs(|| {
        let (resp, bytes) = run(&mut pool, &gw, &fake, request(route));
        status = resp.status;
        body = String::from_utf8_lossy(&bytes).into_owned();
        pool.run_until_stalled();
    });
    let counts = usage_now(&mut pool, &fake);
    (status, body, request_lines(&logs), counts)
}

#[test]
fn every_route_and_outcome_is_accounted_once() {
    for route in ROUTES {
        for upstream in [Upstream::Ok, Upstream::Fails, Upstream::Truncated] {
            let case = format!("{route:?} / {upstream:?}");
            let (status, body, lines, counts) = run_one(route, upstream);
            assert_eq!(
                lines.len(),
                1,
                "{case}: one log line, got {lines:?} (status {status}, body {body})"
            );
            let line = &lines[0];
            assert_eq!(
                line["upstream"], "up",
                "{case}: the log line names the upstream: {line}"
            );
            assert_eq!(line["key_id"], "k1", "{case}: {line}");
            assert_eq!(
                counts.get("requests"),
                Some(&1),
                "{case}: one request in usage: {counts:?}"
            );
            let failed = upstream != Upstream::Ok;
            assert_eq!(
                counts.get("errors").copied().unwrap_or(0),
                i64::from(failed),
                "{case}: errors in usage: {counts:?} (line {line})"
            );
            let streamed = matches!(route, Route::ChatSse | Route::MessagesSse);
            match (route, upstream) {
                (Route::Task, _) => assert_eq!(status, 202, "{case}"),
                // A stream that fails after its first event is still a 200,
                // its failure an SSE error event.
                (_, Upstream::Truncated) if streamed => assert_eq!(status, 200, "{case}"),
                (_, Upstream::Ok) => assert_eq!(status, 200, "{case}: {body}"),
                _ => assert!(status >= 500, "{case}: status {status}, body {body}"),
            }
            if failed {
                assert_ne!(line["outcome"], "ok", "{case}: {line}");
            } else {
                assert_eq!(
                    line["outcome"],
                    if route == Route::Task { "task_completed" } else { "ok" }
                );
            }
        }
    }
}

/// A failed non-streaming `/v1/messages` request: the upstream stream ends
/// before it finishes, so the fold fails. The client gets Anthropic's
/// error shape, and the request is still accounted: its log line, an error
/// in the key's usage.
#[test]
fn a_failed_non_streaming_message_is_accounted() {
    let (status, body, lines, counts) = run_one(Route::MessagesJson, Upstream::Truncated);
    assert_eq!(status, 502, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error", "{body}");
    assert_eq!(v["error"]["type"], "api_error", "{body}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "upstream_interrupted");
    assert_eq!(lines[0]["status"], 502);
    assert_eq!(counts.get("errors"), Some(&1), "{counts:?}");
    // "Hel" was generated before the stream broke: charged as an estimate
    // (at least a token per chunk of text), not as nothing.
    assert_eq!(counts.get("completion_tokens"), Some(&1), "{counts:?}");
}

/// A cache hit is accounted too: a second identical deterministic request
/// is served from the cache, logged once, counted as a hit and charged
/// nothing.
#[test]
fn a_cache_hit_is_accounted_once() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    script(&fake, Route::ChatJson, Upstream::Ok);
    let deterministic = || {
        Request::new(
            "POST",
            "/v1/chat/completions",
            vec![("authorization".into(), format!("Bearer {KEY}"))],
            json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
    };
    let logs = capture_logs(|| {
        let (first, _) = run(&mut pool, &gw, &fake, deterministic());
        pool.run_until_stalled();
        let (second, _) = run(&mut pool, &gw, &fake, deterministic());
        pool.run_until_stalled();
        assert_eq!(first.header("x-infergate-cache"), Some("MISS"));
        assert_eq!(second.header("x-infergate-cache"), Some("HIT"));
    });
    let lines = request_lines(&logs);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["outcome"], "cache_hit");
    assert_eq!(fake.sent.borrow().len(), 1, "the hit did not call the upstream");
    let counts = usage_now(&mut pool, &fake);
    assert_eq!(counts.get("requests"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("cache_hits"), Some(&1), "{counts:?}");
    assert_eq!(
        counts.get("prompt_tokens"),
        Some(&5),
        "only the miss is charged: {counts:?}"
    );
}

/// A streaming client that leaves after the first chunk: the pump notices,
/// cancels the upstream, and the request is accounted once, as a
/// disconnect rather than as an upstream failure.
#[test]
fn a_client_that_leaves_mid_stream_is_accounted_once() {
    for route in [Route::ChatSse, Route::MessagesSse] {
        let mut pool = LocalPool::new();
        let (gw, fake) = setup(&pool);
        // More than the pump's channel holds, so it is still sending when
        // the client goes.
        let many: String = (0..64)
            .map(|_| chunk(json!({"content": "x"}), Value::Null))
            .collect::<String>()
            + &chunk(json!({}), json!("stop"))
            + "data: [DONE]\n\n";
        *fake.upstream.borrow_mut() = (200, vec![Bytes::from(many)]);
        let logs = capture_logs(|| {
            let mut resp = pool.run_until(gw.handle(&fake, request(route)));
            let Body::Stream(mut s) = std::mem::replace(&mut resp.body, Body::Full(Bytes::new())) else {
                panic!("{route:?}: a stream");
            };
            let first = pool.run_until(s.next());
            assert!(matches!(first, Some(Ok(_))), "{route:?}");
            drop(s);
            pool.run_until_stalled();
        });
        let lines = request_lines(&logs);
        assert_eq!(lines.len(), 1, "{route:?}: {lines:?}");
        assert_eq!(lines[0]["outcome"], "client_disconnected", "{route:?}");
        assert_eq!(lines[0]["upstream"], "up", "{route:?}");
        let counts = usage_now(&mut pool, &fake);
        assert_eq!(counts.get("requests"), Some(&1), "{route:?}: {counts:?}");
        assert_eq!(
            counts.get("errors"),
            None,
            "{route:?}: a disconnect is not an error: {counts:?}"
        );
    }
}

/// An Anthropic client of an Anthropic upstream: the upstream's events are
/// relayed (streaming) or folded into its Message (JSON), and the request
/// is accounted once with the upstream's own usage.
#[test]
fn a_relayed_message_is_accounted_with_the_upstreams_usage() {
    let frame = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    let sse: String = [
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 12, "cache_read_input_tokens": 30, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}}),
        json!({"type": "message_stop"}),
    ]
    .into_iter()
    .map(frame)
    .collect();
    for stream in [false, true] {
        let mut pool = LocalPool::new();
        let (gw, fake) = setup_with(
            &pool,
            json!({
                "providers": [{"name": "anthro", "kind": "anthropic", "base_url": "http://a/v1", "api_key_secret": "UP"}],
                "models": [{"id": "m", "targets": ["anthro"]}]
            }),
        );
        *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse.clone())]);
        let req = Request::new(
            "POST",
            "/v1/messages",
            vec![("authorization".into(), format!("Bearer {KEY}"))],
            json!({"model": "m", "max_tokens": 64, "stream": stream, "top_k": 3,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]})
            .to_string(),
        );
        let mut out = Vec::new();
        let logs = capture_logs(|| {
            let (resp, body) = run(&mut pool, &gw, &fake, req);
            assert_eq!(resp.status, 200);
            out = body;
            pool.run_until_stalled();
        });
        let sent: Value = serde_json::from_slice(&fake.sent.borrow()[0].body).unwrap();
        assert_eq!(sent["top_k"], 3, "the client's body went up: {sent}");
        assert_eq!(sent["messages"][0]["content"][0]["cache_control"]["type"], "ephemeral");
        if stream {
            assert_eq!(String::from_utf8(out).unwrap(), sse, "relayed as sent");
        } else {
            let m: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(m["content"][0]["text"], "Hi");
            assert_eq!(m["usage"]["cache_read_input_tokens"], 30);
        }
        let lines = request_lines(&logs);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["upstream"], "anthro");
        let counts = usage_now(&mut pool, &fake);
        assert_eq!(counts.get("requests"), Some(&1));
        assert_eq!(
            counts.get("completion_tokens"),
            Some(&42),
            "stream {stream}: {counts:?}"
        );
        // Input, cache reads included, as the translation counts it.
        assert_eq!(counts.get("prompt_tokens"), Some(&42), "stream {stream}: {counts:?}");
    }
}

/// Which upstream calls the platform must be able to cancel by itself
/// (`HttpRequest::cancel_on_drop`): every one but a client's JSON answer
/// from an upstream of its own format, whose timeout ends the client's
/// request (and the runtime then cancels what it started). A task goes on
/// after giving up (it stores the failure and calls its webhook), so its
/// attempt must be cancellable although its answer is JSON.
#[test]
fn only_a_clients_json_answer_leaves_cancelling_to_the_runtime() {
    for route in ROUTES {
        let mut pool = LocalPool::new();
        let (gw, fake) = setup(&pool);
        script(&fake, route, Upstream::Ok);
        let _ = run(&mut pool, &gw, &fake, request(route));
        pool.run_until_stalled();
        let sent = fake.sent.borrow();
        assert_eq!(sent.len(), 1, "{route:?}");
        assert_eq!(sent[0].cancel_on_drop, route != Route::ChatJson, "{route:?}");
    }
}
