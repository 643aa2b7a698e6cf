//! `/v1/responses` on the core: a stored Response belongs to its tenant.

mod common;

use bytes::Bytes;
use common::*;
use futures_executor::LocalPool;
use infergate::gateway::Request;
use infergate::platform::KvStore;
use serde_json::{json, Value};

const OTHER: &str = "ig-other-tenant-key";

fn sse() -> String {
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
    chunk(json!({"role": "assistant", "content": "Hi there"}), Value::Null)
        + &chunk(json!({}), json!("stop"))
        + &format!("data: {usage}\n\ndata: [DONE]\n\n")
}

/// Create a stored Response as `key`, with the account stage run; its id.
fn create(pool: &mut LocalPool, gw: &infergate::gateway::Gateway, fake: &Fake, key: &str, input: &str) -> String {
    let body = json!({"model": "m", "input": input});
    let (resp, out) = run(pool, gw, fake, req("POST", "/v1/responses", key, Some(body)));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&out));
    pool.run_until_stalled();
    serde_json::from_slice::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn req(method: &str, path: &str, key: &str, body: Option<Value>) -> Request {
    let auth = vec![("authorization".to_string(), format!("Bearer {key}"))];
    Request::new(method, path, auth, body.map(|b| b.to_string()).unwrap_or_default())
}

#[test]
fn stored_responses_are_scoped_to_their_tenant() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    seed_key(&fake, OTHER, "k2", "u");

    let (resp, body) = run(
        &mut pool,
        &gw,
        &fake,
        req(
            "POST",
            "/v1/responses",
            KEY,
            Some(json!({"model": "m", "input": "hello"})),
        ),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(created["output"][0]["content"][0]["text"], "Hi there");
    assert_eq!(created["usage"]["total_tokens"], 7);
    pool.run_until_stalled(); // the account stage stores it
    let id = created["id"].as_str().unwrap().to_string();

    let (resp, body) = run(
        &mut pool,
        &gw,
        &fake,
        req("GET", &format!("/v1/responses/{id}"), KEY, None),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), created);
    let (resp, body) = run(
        &mut pool,
        &gw,
        &fake,
        req("GET", &format!("/v1/responses/{id}/input_items"), KEY, None),
    );
    assert_eq!(resp.status, 200);
    let items: Value = serde_json::from_slice(&body).unwrap();
    // Listed as OpenAI lists them: a message item with an input_text part.
    assert_eq!(
        items["data"][0]["content"],
        json!([{"type": "input_text", "text": "hello"}])
    );
    assert_eq!(items["data"][0]["status"], "completed");
    assert!(items["data"][0]["id"].as_str().unwrap().starts_with("msg_"));

    // Another tenant's key: the same id does not exist for it.
    for (method, path) in [
        ("GET", format!("/v1/responses/{id}")),
        ("DELETE", format!("/v1/responses/{id}")),
    ] {
        let (resp, _) = run(&mut pool, &gw, &fake, req(method, &path, OTHER, None));
        assert_eq!(resp.status, 404, "{method} {path}");
    }
    let cont = json!({"model": "m", "input": "more", "previous_response_id": id});
    // Another tenant's id is unknown to it: a 400 naming the field.
    let (resp, body) = run(
        &mut pool,
        &gw,
        &fake,
        req("POST", "/v1/responses", OTHER, Some(cont.clone())),
    );
    assert_eq!(resp.status, 400);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["param"],
        "previous_response_id"
    );

    // Its own tenant continues the conversation: the stored turn goes first.
    let (resp, _) = run(&mut pool, &gw, &fake, req("POST", "/v1/responses", KEY, Some(cont)));
    assert_eq!(resp.status, 200);
    let sent: Value = serde_json::from_slice(&fake.sent.borrow().last().unwrap().body).unwrap();
    let contents: Vec<&Value> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["content"])
        .collect();
    assert_eq!(contents[0][0]["text"], "hello");
    assert_eq!(contents[1][0]["text"], "Hi there");
    assert_eq!(*contents.last().unwrap(), "more");

    let (resp, _) = run(
        &mut pool,
        &gw,
        &fake,
        req("DELETE", &format!("/v1/responses/{id}"), KEY, None),
    );
    assert_eq!(resp.status, 200);
    let (resp, _) = run(
        &mut pool,
        &gw,
        &fake,
        req("GET", &format!("/v1/responses/{id}"), KEY, None),
    );
    assert_eq!(resp.status, 404);
}

#[test]
fn store_false_stores_nothing() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let before = fake.kv.keys().len();
    let body = json!({"model": "m", "input": "hello", "store": false, "stream": true});
    let (resp, bytes) = run(&mut pool, &gw, &fake, req("POST", "/v1/responses", KEY, Some(body)));
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8_lossy(&bytes).contains("event: response.completed"));
    pool.run_until_stalled();
    let stored: Vec<String> = fake
        .kv
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("v1:resp:"))
        .collect();
    assert!(stored.is_empty(), "{stored:?} (keys before: {before})");
}

#[test]
fn a_streamed_response_is_stored_as_it_completed() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let body = json!({"model": "m", "input": "hello", "stream": true});
    let (resp, bytes) = run(&mut pool, &gw, &fake, req("POST", "/v1/responses", KEY, Some(body)));
    assert_eq!(resp.status, 200);
    pool.run_until_stalled();
    let text = String::from_utf8(bytes).unwrap();
    let completed: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|e| e["type"] == "response.completed")
        .expect("a response.completed event")["response"]
        .clone();
    let id = completed["id"].as_str().unwrap();
    let (resp, body) = run(
        &mut pool,
        &gw,
        &fake,
        req("GET", &format!("/v1/responses/{id}"), KEY, None),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), completed);
}

/// A deterministic Response is cached like a chat completion: the second
/// identical request is a hit with its own id, replayed as typed events
/// when the client streams, and stored like any other Response.
#[test]
fn deterministic_responses_are_cached_and_replayed_in_shape() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let body = |stream: bool| json!({"model": "m", "input": "hello", "temperature": 0, "stream": stream});
    let (first, b1) = run(
        &mut pool,
        &gw,
        &fake,
        req("POST", "/v1/responses", KEY, Some(body(false))),
    );
    pool.run_until_stalled();
    let (second, b2) = run(
        &mut pool,
        &gw,
        &fake,
        req("POST", "/v1/responses", KEY, Some(body(false))),
    );
    pool.run_until_stalled();
    assert_eq!(first.header("x-infergate-cache"), Some("MISS"));
    assert_eq!(second.header("x-infergate-cache"), Some("HIT"));
    assert_eq!(fake.sent.borrow().len(), 1, "the hit did not call the upstream");
    let (r1, r2): (Value, Value) = (
        serde_json::from_slice(&b1).unwrap(),
        serde_json::from_slice(&b2).unwrap(),
    );
    assert_ne!(r1["id"], r2["id"]);
    assert_eq!(r1["output"][0]["content"], r2["output"][0]["content"]);
    let (resp, _) = run(
        &mut pool,
        &gw,
        &fake,
        req(
            "GET",
            &format!("/v1/responses/{}", r2["id"].as_str().unwrap()),
            KEY,
            None,
        ),
    );
    assert_eq!(resp.status, 200, "a hit is stored too");
    let (streamed, bytes) = run(
        &mut pool,
        &gw,
        &fake,
        req("POST", "/v1/responses", KEY, Some(body(true))),
    );
    assert_eq!(streamed.header("x-infergate-cache"), Some("HIT"));
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("event: response.output_text.delta"), "{text}");
    assert!(text.contains("event: response.completed"), "{text}");
}

/// `responses.ttl_secs` is how long a stored Response lives.
#[test]
fn stored_responses_expire_after_the_configured_ttl() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(
        &pool,
        json!({
            "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
            "models": [{"id": "m", "targets": ["up"]}],
            "responses": {"ttl_secs": 120}
        }),
    );
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let (_, body) = run(
        &mut pool,
        &gw,
        &fake,
        req("POST", "/v1/responses", KEY, Some(json!({"model": "m", "input": "hi"}))),
    );
    pool.run_until_stalled();
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/responses/{id}");
    // The store's clock and the gateway's move together.
    fake.kv.clock.set(fake.kv.clock.get() + 119_000);
    fake.now.set(fake.now.get() + 119_000);
    assert_eq!(run(&mut pool, &gw, &fake, req("GET", &path, KEY, None)).0.status, 200);
    fake.kv.clock.set(fake.kv.clock.get() + 2_000);
    fake.now.set(fake.now.get() + 2_000);
    assert_eq!(run(&mut pool, &gw, &fake, req("GET", &path, KEY, None)).0.status, 404);
}

/// `input_items` pages as OpenAI's does: newest first by default, `limit`,
/// `after`, `order=asc`; bad values are a 400 naming the parameter.
#[test]
fn input_items_page_like_openai() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let input: Vec<Value> = (0..5)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let (_, body) = run(
        &mut pool,
        &gw,
        &fake,
        req(
            "POST",
            "/v1/responses",
            KEY,
            Some(json!({"model": "m", "input": input})),
        ),
    );
    pool.run_until_stalled();
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let page = |pool: &mut LocalPool, q: &str| {
        let (resp, body) = run(
            pool,
            &gw,
            &fake,
            req("GET", &format!("/v1/responses/{id}/input_items{q}"), KEY, None),
        );
        (resp.status, serde_json::from_slice::<Value>(&body).unwrap())
    };
    let texts = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["content"][0]["text"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = page(&mut pool, "");
    assert_eq!(texts(&all), ["m4", "m3", "m2", "m1", "m0"], "newest first");
    let (_, first) = page(&mut pool, "?limit=2&order=asc");
    assert_eq!(texts(&first), ["m0", "m1"]);
    assert_eq!(first["has_more"], true);
    let after = first["last_id"].as_str().unwrap();
    let (_, next) = page(&mut pool, &format!("?limit=2&order=asc&after={after}"));
    assert_eq!(texts(&next), ["m2", "m3"]);
    for (q, param) in [
        ("?limit=abc", "limit"),
        ("?limit=0", "limit"),
        ("?order=sideways", "order"),
        ("?after=nope", "after"),
    ] {
        let (status, v) = page(&mut pool, q);
        assert_eq!((status, v["error"]["param"].as_str()), (400, Some(param)), "{q}");
    }
}

/// A tenant may contain `:`: tenant `t` must not reach tenant `t:prod`'s
/// Responses by naming `prod:<id>`, on any route that takes an id.
#[test]
fn an_id_cannot_reach_into_a_longer_tenant() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    seed_key(&fake, OTHER, "k2", "t:prod");
    let id = create(&mut pool, &gw, &fake, OTHER, "secret");
    // KEY is tenant `t`.
    let forged = format!("prod:{id}");
    for (method, path) in [
        ("GET", format!("/v1/responses/{forged}")),
        ("GET", format!("/v1/responses/{forged}/input_items")),
        ("DELETE", format!("/v1/responses/{forged}")),
    ] {
        let (resp, _) = run(&mut pool, &gw, &fake, req(method, &path, KEY, None));
        assert_eq!(resp.status, 404, "{method} {path}");
    }
    let cont = json!({"model": "m", "input": "repeat", "previous_response_id": forged});
    let (resp, _) = run(&mut pool, &gw, &fake, req("POST", "/v1/responses", KEY, Some(cont)));
    assert_eq!(resp.status, 400);
    // Still there for its own tenant.
    let (resp, _) = run(
        &mut pool,
        &gw,
        &fake,
        req("GET", &format!("/v1/responses/{id}"), OTHER, None),
    );
    assert_eq!(resp.status, 200);
}

/// A Response continued at once finds its record in this isolate even
/// when the store does not show the write yet (KV is eventually
/// consistent): here the store has lost it altogether.
#[test]
fn a_response_continued_at_once_is_found_before_the_store_shows_it() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let id = create(&mut pool, &gw, &fake, KEY, "hello");
    let key = infergate::gateway::routes::responses::store_key("t", &id);
    pool.run_until(fake.kv.delete(&key)).unwrap();
    let cont = json!({"model": "m", "input": "more", "previous_response_id": id});
    let (resp, body) = run(&mut pool, &gw, &fake, req("POST", "/v1/responses", KEY, Some(cont)));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&body));
    // Deleting it removes the isolate's copy too.
    let (resp, _) = run(
        &mut pool,
        &gw,
        &fake,
        req("DELETE", &format!("/v1/responses/{id}"), KEY, None),
    );
    assert_eq!(resp.status, 200);
    let (resp, _) = run(
        &mut pool,
        &gw,
        &fake,
        req("GET", &format!("/v1/responses/{id}"), KEY, None),
    );
    assert_eq!(resp.status, 404);
}

/// Fields chat has no place for change the answer, so they split the
/// cache: a request with `include` is not served the entry of one without.
#[test]
fn responses_only_fields_are_part_of_the_cache_key() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let plain = json!({"model": "m", "input": "hello", "temperature": 0});
    let mut with_include = plain.clone();
    with_include["include"] = json!(["message.output_text.logprobs"]);
    // Spelling out a default is the same request.
    let mut with_default = plain.clone();
    with_default["truncation"] = "disabled".into();
    let mut statuses = Vec::new();
    for body in [&plain, &with_default, &with_include, &with_include] {
        let (resp, _) = run(
            &mut pool,
            &gw,
            &fake,
            req("POST", "/v1/responses", KEY, Some(body.clone())),
        );
        pool.run_until_stalled();
        statuses.push(resp.header("x-infergate-cache").unwrap_or("").to_string());
    }
    assert_eq!(statuses, ["MISS", "HIT", "MISS", "HIT"]);
    assert_eq!(fake.sent.borrow().len(), 2);
}

/// `truncation: "auto"` drops the oldest turns until the conversation fits
/// the model's context window; without it, that is a 400 on `input`.
#[test]
fn truncation_auto_drops_the_oldest_turns() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(
        &pool,
        json!({
            "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
            "models": [{"id": "m", "targets": ["up"], "context_window": 300, "max_output_tokens": 50}]
        }),
    );
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let long = "word ".repeat(300);
    let input = json!([
        {"role": "user", "content": long},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": long},
        {"role": "user", "content": "And now?"}
    ]);
    let body = |truncation: Option<&str>| {
        let mut b = json!({"model": "m", "instructions": "Be brief.", "input": input, "max_output_tokens": 20});
        if let Some(t) = truncation {
            b["truncation"] = t.into();
        }
        b
    };
    let (resp, out) = run(
        &mut pool,
        &gw,
        &fake,
        req("POST", "/v1/responses", KEY, Some(body(None))),
    );
    assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(&out));
    let e: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    assert_eq!(e["error"]["param"], "input");
    assert!(fake.sent.borrow().is_empty());

    let (resp, out) = run(
        &mut pool,
        &gw,
        &fake,
        req("POST", "/v1/responses", KEY, Some(body(Some("auto")))),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&out));
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["truncation"], "auto");
    let sent: Value = serde_json::from_slice(&fake.sent.borrow()[0].body).unwrap();
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    // The first turn went whole: the question, the call and its result.
    assert_eq!(roles, ["system", "user"]);
    assert_eq!(sent["messages"][1]["content"], "And now?");

    // Turns go whole, oldest first, and what is left starts with a user.
    let input = json!([
        {"role": "user", "content": long},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Second question?"},
        {"role": "assistant", "content": "Second answer."},
        {"role": "user", "content": "Third?"}
    ]);
    let body = json!({"model": "m", "input": input, "max_output_tokens": 20, "truncation": "auto"});
    let (resp, out) = run(&mut pool, &gw, &fake, req("POST", "/v1/responses", KEY, Some(body)));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&out));
    let sent: Value = serde_json::from_slice(&fake.sent.borrow()[1].body).unwrap();
    let contents: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["Second question?", "Second answer.", "Third?"]);
}

/// Malformed Responses requests are 400s naming the field as the
/// Responses API names it (not as the chat request it becomes).
#[test]
fn malformed_requests_name_the_responses_field() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    let f = json!({"type": "function", "name": "f", "parameters": {"type": "object"}});
    let call = json!({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"});
    let schema = |extra: Value| {
        let mut fmt = json!({"type": "json_schema", "name": "n", "schema": {"type": "object"}});
        for (k, v) in extra.as_object().unwrap() {
            fmt[k] = v.clone();
        }
        json!({"format": fmt})
    };
    for (body, param) in [
        (json!({"text": schema(json!({"schema": "str"}))}), "text.format.schema"),
        (json!({"text": schema(json!({"name": "bad name"}))}), "text.format.name"),
        (json!({"text": schema(json!({"strict": "yes"}))}), "text.format.strict"),
        (
            json!({"tools": [{"type": "function", "name": "f", "parameters": "x"}]}),
            "tools[0].parameters",
        ),
        (
            json!({"tools": [{"type": "function", "name": "bad name"}]}),
            "tools[0].name",
        ),
        (
            json!({"tools": [f], "tool_choice": {"type": "function", "name": "nope"}}),
            "tool_choice.name",
        ),
        (
            json!({"tools": [f], "tool_choice": {"type": "function"}}),
            "tool_choice.name",
        ),
        (json!({"tool_choice": "bogus"}), "tool_choice"),
        (
            json!({"input": [call, {"type": "function_call_output", "call_id": "c1",
                "output": [{"type": "input_image", "image_url": "https://x/y.png"}]}]}),
            "input[1].output[0].type",
        ),
        (
            json!({"input": [{"type": "function_call_output", "call_id": "c9", "output": "x"}]}),
            "input",
        ),
    ] {
        let mut b = json!({"model": "m", "input": "hi"});
        for (k, v) in body.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (resp, out) = run(
            &mut pool,
            &gw,
            &fake,
            req("POST", "/v1/responses", KEY, Some(b.clone())),
        );
        let e: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (resp.status, e["error"]["param"].as_str()),
            (400, Some(param)),
            "{b}: {e}"
        );
    }
    assert!(fake.sent.borrow().is_empty());
    // A tool's output as text parts reaches the model as its text.
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(sse())]);
    let parts = json!([{"type": "input_text", "text": "sun"}, {"type": "input_text", "text": "ny"}]);
    let b = json!({"model": "m", "input": [call, {"type": "function_call_output", "call_id": "c1", "output": parts}]});
    let (resp, _) = run(&mut pool, &gw, &fake, req("POST", "/v1/responses", KEY, Some(b)));
    assert_eq!(resp.status, 200);
    let sent: Value = serde_json::from_slice(&fake.sent.borrow()[0].body).unwrap();
    assert_eq!(sent["messages"][1]["content"], "sunny");
}
