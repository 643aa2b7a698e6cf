//! `/v1/responses` to a provider that serves the Responses API itself
//! (`responses_api: true`): the client's body goes upstream unchanged, the
//! upstream's events come back byte for byte, and the gateway still
//! accounts, stores (under the upstream's id) and ends a broken stream
//! with `response.failed`.

mod common;

use bytes::Bytes;
use common::*;
use futures_executor::LocalPool;
use infergate::gateway::stages::{counters, usage};
use infergate::gateway::Request;
use infergate::platform::KvStore;
use serde_json::{json, Value};

const UP_ID: &str = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";

fn native() -> serde_json::Value {
    json!({
        "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1",
                       "api_key_secret": "UP", "responses_api": true}],
        "models": [{"id": "m", "upstream_model": "gpt-up", "targets": ["up"]}]
    })
}

fn event(kind: &str, seq: u64, mut fields: Value) -> String {
    fields["type"] = kind.into();
    fields["sequence_number"] = seq.into();
    format!("event: {kind}\ndata: {fields}\n\n")
}

/// A Responses stream as OpenAI sends it: `text` in two deltas, then
/// `terminal` (`completed` or `incomplete`), or nothing after the deltas
/// when `terminal` is `None`. Fields the gateway does not know
/// (`logprobs`, `service_tier`) ride along.
fn stream(terminal: Option<&str>) -> Vec<String> {
    let base = json!({"id": UP_ID, "object": "response", "created_at": 1, "status": "in_progress",
        "model": "gpt-up-2024", "output": [], "usage": null, "service_tier": "default"});
    let item = json!({"id": "msg_up", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Hi there", "annotations": [], "logprobs": []}]});
    let mut out = vec![
        event("response.created", 0, json!({"response": base})),
        event("response.in_progress", 1, json!({"response": base})),
        event(
            "response.output_item.added",
            2,
            json!({"output_index": 0, "item": {"id": "msg_up", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        event(
            "response.output_text.delta",
            3,
            json!({"item_id": "msg_up", "output_index": 0, "content_index": 0, "delta": "Hi", "logprobs": []}),
        ),
        event(
            "response.output_text.delta",
            4,
            json!({"item_id": "msg_up", "output_index": 0, "content_index": 0, "delta": " there", "logprobs": []}),
        ),
    ];
    if let Some(t) = terminal {
        let mut done = base.clone();
        done["status"] = t.into();
        done["output"] = json!([item]);
        done["usage"] = json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13});
        if t == "incomplete" {
            done["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        out.push(event(
            "response.output_item.done",
            5,
            json!({"output_index": 0, "item": item}),
        ));
        out.push(event(&format!("response.{t}"), 6, json!({"response": done})));
    }
    out
}

fn post(body: Value) -> Request {
    let auth = vec![("authorization".to_string(), format!("Bearer {KEY}"))];
    Request::new("POST", "/v1/responses", auth, body.to_string())
}

fn get(path: &str) -> Request {
    let auth = vec![("authorization".to_string(), format!("Bearer {KEY}"))];
    Request::new("GET", path, auth, String::new())
}

fn script(fake: &Fake, frames: &[String]) {
    *fake.upstream.borrow_mut() = (200, frames.iter().map(|f| Bytes::from(f.clone())).collect());
}

fn sent_body(fake: &Fake, i: usize) -> Value {
    serde_json::from_slice(&fake.sent.borrow()[i].body).unwrap()
}

fn usage_now(pool: &mut LocalPool, fake: &Fake) -> counters::Counts {
    let raw = pool
        .run_until(fake.kv.get(&usage::usage_key("k1", fake.now.get())))
        .unwrap();
    counters::decode(raw.as_deref())
}

/// The `data:` objects of an SSE body, in order.
fn events(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn a_stream_is_relayed_byte_for_byte_and_accounted() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(&pool, native());
    let frames = stream(Some("completed"));
    script(&fake, &frames);
    let body = json!({"model": "m", "input": "hello", "stream": true, "include": ["message.output_text.logprobs"],
        "some_new_field": {"kept": true}});
    let (resp, out) = run(&mut pool, &gw, &fake, post(body));
    pool.run_until_stalled();
    assert_eq!(resp.status, 200);
    assert_eq!(String::from_utf8_lossy(&out), frames.concat());
    // The client's body went upstream as sent, the model mapped.
    let sent = &fake.sent.borrow()[0];
    assert_eq!(sent.url, "http://up/v1/responses");
    let up = sent_body(&fake, 0);
    assert_eq!(up["model"], "gpt-up");
    assert_eq!(up["some_new_field"], json!({"kept": true}));
    assert_eq!(up["include"], json!(["message.output_text.logprobs"]));
    let counts = usage_now(&mut pool, &fake);
    assert_eq!(counts.get("prompt_tokens"), Some(&11));
    assert_eq!(counts.get("completion_tokens"), Some(&2));
    // Stored under the id the client saw: the upstream's.
    let (resp, stored) = run(&mut pool, &gw, &fake, get(&format!("/v1/responses/{UP_ID}")));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&stored));
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored["output"][0]["content"][0]["logprobs"], json!([]));
    assert_eq!(stored["service_tier"], "default");
}

#[test]
fn a_json_client_gets_the_upstreams_own_response() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(&pool, native());
    script(&fake, &stream(Some("incomplete")));
    let (resp, out) = run(&mut pool, &gw, &fake, post(json!({"model": "m", "input": "hello"})));
    pool.run_until_stalled();
    assert_eq!(resp.status, 200);
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["id"], UP_ID);
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["usage"]["total_tokens"], 13);
    // A JSON client of an upstream of its own API gets the upstream's JSON:
    // the request says `stream: false`, and the bytes come back unchanged.
    assert_eq!(sent_body(&fake, 0)["stream"], false);
    assert_eq!(usage_now(&mut pool, &fake).get("completion_tokens"), Some(&2));
}

/// A native gateway on which one Response (`UP_ID`) has been created and
/// stored, to continue from.
fn created() -> (LocalPool, infergate::gateway::Gateway, Fake) {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(&pool, native());
    script(&fake, &stream(Some("completed")));
    let (resp, _) = run(&mut pool, &gw, &fake, post(json!({"model": "m", "input": "hello"})));
    assert_eq!(resp.status, 200);
    pool.run_until_stalled();
    (pool, gw, fake)
}

#[test]
fn a_continued_conversation_goes_upstream_inline_never_as_an_id() {
    let (mut pool, gw, fake) = created();
    let next = json!({"model": "m", "previous_response_id": UP_ID,
        "input": [{"role": "user", "content": "and then?"}]});
    let (resp, out) = run(&mut pool, &gw, &fake, post(next));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&out));
    // The client reads the id it sent, which the upstream never saw.
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["previous_response_id"], UP_ID);
    let up = sent_body(&fake, 1);
    assert!(up.get("previous_response_id").is_none(), "{up}");
    let input = up["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{up}");
    assert_eq!(input[0]["content"], json!([{"type": "input_text", "text": "hello"}]));
    assert_eq!(input[1]["content"][0]["text"], "Hi there");
    assert!(
        input.iter().take(2).all(|i| i.get("id").is_none()),
        "stored item ids stay at the edge"
    );
    assert_eq!(input[2]["content"], "and then?");
}

#[test]
fn a_stream_cut_short_ends_in_response_failed_numbered_after_the_upstreams() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(&pool, native());
    script(&fake, &stream(None));
    let (resp, out) = run(
        &mut pool,
        &gw,
        &fake,
        post(json!({"model": "m", "input": "hello", "stream": true})),
    );
    pool.run_until_stalled();
    assert_eq!(resp.status, 200);
    let evs = events(&out);
    let n = evs.len();
    assert_eq!(evs[n - 2]["type"], "error");
    assert_eq!(evs[n - 2]["code"], "upstream_interrupted");
    assert_eq!(evs[n - 1]["type"], "response.failed");
    assert_eq!(evs[n - 1]["response"]["id"], UP_ID);
    assert_eq!(evs[n - 1]["response"]["status"], "failed");
    let seqs: Vec<u64> = evs.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..n as u64).collect::<Vec<_>>());
    // The text that reached the client is charged as an estimate.
    assert!(
        usage_now(&mut pool, &fake)
            .get("completion_tokens")
            .copied()
            .unwrap_or(0)
            > 0
    );
}

#[test]
fn an_upstream_failure_is_relayed_once() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(&pool, native());
    let mut frames = stream(None);
    frames.push(event(
        "response.failed",
        5,
        json!({"response": {"id": UP_ID, "object": "response", "status": "failed",
            "error": {"code": "server_error", "message": "The model failed."}}}),
    ));
    script(&fake, &frames);
    let (_, out) = run(
        &mut pool,
        &gw,
        &fake,
        post(json!({"model": "m", "input": "hello", "stream": true})),
    );
    assert_eq!(String::from_utf8_lossy(&out), frames.concat());
}

#[test]
fn other_providers_still_get_the_chat_translation() {
    let mut pool = LocalPool::new();
    let mut cfg = native();
    cfg["providers"][0]["responses_api"] = false.into();
    let (gw, fake) = setup_with(&pool, cfg);
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    script(&fake, &[format!("data: {chunk}\n\ndata: [DONE]\n\n")]);
    let (resp, out) = run(&mut pool, &gw, &fake, post(json!({"model": "m", "input": "hello"})));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&out));
    assert_eq!(fake.sent.borrow()[0].url, "http://up/v1/chat/completions");
}

#[test]
fn responses_api_is_refused_on_an_anthropic_provider() {
    let cfg = json!({
        "providers": [{"name": "a", "kind": "anthropic", "base_url": "http://a/v1", "responses_api": true}],
        "models": [{"id": "m", "targets": ["a"]}]
    });
    let err = infergate::config::Config::from_json(&cfg.to_string(), &|_| None).unwrap_err();
    assert!(err.to_string().contains("providers[0].responses_api"), "{err}");
}

/// A replay from the chat-chunk cache could not give back what only the
/// upstream's events carry, so a native model's Responses are not cached.
#[test]
fn a_native_models_responses_bypass_the_cache() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(&pool, native());
    for _ in 0..2 {
        script(&fake, &stream(Some("completed")));
        let (resp, _) = run(
            &mut pool,
            &gw,
            &fake,
            post(json!({"model": "m", "input": "hello", "temperature": 0})),
        );
        pool.run_until_stalled();
        assert_eq!(resp.header("x-infergate-cache"), Some("BYPASS"));
    }
    assert_eq!(fake.sent.borrow().len(), 2);
}

/// Built-in tools reach an upstream that has them; the chat translation
/// (for validation and accounting) leaves them out.
#[test]
fn built_in_tools_go_to_a_native_upstream() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(&pool, native());
    script(&fake, &stream(Some("completed")));
    let tools = json!([{"type": "web_search"}, {"type": "function", "name": "f", "parameters": {"type": "object"}}]);
    let (resp, out) = run(
        &mut pool,
        &gw,
        &fake,
        post(json!({"model": "m", "input": "hello", "tools": tools, "tool_choice": {"type": "web_search"}})),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&out));
    let up = sent_body(&fake, 0);
    assert_eq!(up["tools"], tools);
    assert_eq!(up["tool_choice"], json!({"type": "web_search"}));
}

/// A conversation whose output holds a built-in tool call continues, by
/// `previous_response_id` and by sending the items back: the chat
/// translation (validation, accounting) leaves out what it has no form for.
#[test]
fn a_conversation_with_built_in_tool_items_continues() {
    let (mut pool, gw, fake) = created();
    let items = json!([
        {"role": "user", "content": "search"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
        {"type": "item_reference", "id": "msg_9"},
        {"role": "user", "content": [{"type": "input_text", "text": "and?"}, {"type": "input_audio", "input_audio": {}}]}
    ]);
    script(&fake, &stream(Some("completed")));
    let (resp, out) = run(
        &mut pool,
        &gw,
        &fake,
        post(json!({"model": "m", "input": items, "previous_response_id": UP_ID})),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&out));
    let up = sent_body(&fake, 1);
    let kinds: Vec<String> = up["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("message").to_string())
        .collect();
    assert!(kinds.contains(&"web_search_call".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"item_reference".to_string()), "{kinds:?}");
}
