//! The gateway pipeline on a trait fake of the platform: scripted upstream
//! bytes split at arbitrary points, in-memory KV, a manual clock. This is a
//! unit test of the core; the end-to-end suite in tests/e2e runs the real
//! builds against a real upstream.

mod common;

use bytes::Bytes;
use common::*;
use futures_executor::LocalPool;
use infergate::config::Config;
use infergate::gateway::{Body, Gateway, Request, Response};
use proptest::prelude::*;
use serde_json::{json, Value};

fn upstream_sse() -> Vec<u8> {
    let mut s = String::new();
    for (i, t) in ["Hel", "lo", " wor", "ld"].iter().enumerate() {
        let role = if i == 0 { r#""role":"assistant","# } else { "" };
        s += &format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"{t}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n");
    }
    s += "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    s += "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4,\"total_tokens\":9}}\n\n";
    s += "data: [DONE]\n\n";
    s.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the upstream splits its bytes, the client gets the same stream.
    #[test]
    fn stream_output_is_split_invariant(cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
        let mut pool = LocalPool::new();
        let (gw, fake) = setup(&pool);
        *fake.upstream.borrow_mut() = (200, split(&upstream_sse(), &[]));
        let (_, whole) = run(&mut pool, &gw, &fake, chat(true));
        *fake.upstream.borrow_mut() = (200, split(&upstream_sse(), &cuts));
        let (resp, parts) = run(&mut pool, &gw, &fake, chat(true));
        prop_assert_eq!(resp.status, 200);
        prop_assert_eq!(whole, parts);
    }
}

#[test]
fn streaming_strips_usage_the_client_did_not_ask_for() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![upstream_sse().into()]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(true));
    assert_eq!(resp.header("content-type"), Some("text/event-stream; charset=utf-8"));
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("usage"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let sent: Value = serde_json::from_slice(&fake.sent.borrow()[0].body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let auth = &fake.sent.borrow()[0].headers;
    assert!(auth.iter().any(|(k, v)| k == "authorization" && v == "Bearer sk-up"));
}

#[test]
fn non_streaming_is_the_fold() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![upstream_sse().into()]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
    assert_eq!(resp.status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(v["usage"]["total_tokens"], 9);
}

/// A JSON client of an OpenAI-compatible upstream gets the upstream's own
/// JSON, byte for byte (fields the gateway does not know included), asked
/// for as JSON.
#[test]
fn a_json_client_gets_the_upstreams_json_unchanged() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    let answer = r#"{"id":"c1","object":"chat.completion","created":7,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":0}},"service_tier":"default","x_vendor":{"k":[1,2]}}"#;
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from_static(answer.as_bytes())]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
    assert_eq!(resp.status, 200);
    assert_eq!(String::from_utf8(body).unwrap(), answer);
    let sent: Value = serde_json::from_slice(&fake.sent.borrow()[0].body).unwrap();
    assert_eq!(sent["stream"], false, "said outright");
    assert_eq!(sent.get("stream_options"), None);
    assert!(!fake.sent.borrow()[0]
        .headers
        .iter()
        .any(|(_, v)| v == "text/event-stream"));
}

/// What accounting and completeness need is read from the JSON: an answer
/// cut short, an error sent with a 200, or a body that is neither JSON nor
/// SSE is a 502 in the client's shape, never relayed.
#[test]
fn a_json_answer_that_is_not_whole_is_an_error() {
    let cases = [
        (
            r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#,
            "upstream_incomplete",
        ),
        (
            r#"{"id":"c","object":"chat.completion","choices":[]}"#,
            "upstream_incomplete",
        ),
        (
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            "upstream_stream_error",
        ),
        (r#"{"error":"upstream overloaded"}"#, "upstream_stream_error"),
        (
            r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"{\"title\": \"partial"},"finish_reason":"error"}],"usage":{"prompt_tokens":null,"completion_tokens":null,"total_tokens":0}}"#,
            "upstream_stream_error",
        ),
        (
            r#"{"id":"c","object":"chat.completion"}"#,
            "upstream_malformed_response",
        ),
        ("<html>bad gateway</html>", "upstream_malformed_response"),
    ];
    for (answer, code) in cases {
        // A fresh gateway each: the failures would open the circuit.
        let mut pool = LocalPool::new();
        let (gw, fake) = setup(&pool);
        *fake.upstream.borrow_mut() = (200, vec![Bytes::from_static(answer.as_bytes())]);
        let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (resp.status, v["error"]["code"].as_str()),
            (502, Some(code)),
            "{answer}"
        );
        // Delivered whole (and generated upstream): not asked for again.
        assert_eq!(fake.sent.borrow().len(), 1, "{answer}");
    }
}

/// A JSON answer that does not come within `json_timeout_ms` is a 504,
/// asked for once: its wait is as long as a generation may take.
#[test]
fn a_json_answer_that_never_comes_is_a_504_asked_for_once() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    fake.hang.set(true);
    *fake.upstream.borrow_mut() = (200, vec![]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (resp.status, v["error"]["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did not answer within"));
    assert_eq!(fake.sent.borrow().len(), 1);
}

/// A router's error sent with a 200 and coded 429 is a rate limit, for the
/// JSON answer and the stream alike; a generation that finished with
/// `"error"` is an error in the stream too, not a finished answer.
#[test]
fn errors_sent_with_a_200_keep_their_kind_in_json_and_stream() {
    let coded = r#"{"error":{"message":"Provider returned error","code":429}}"#;
    let named = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    for (stream, limited) in [(false, coded), (true, coded), (false, named), (true, named)] {
        let mut pool = LocalPool::new();
        let (gw, fake) = setup(&pool);
        let body = if stream {
            format!("data: {limited}\n\n")
        } else {
            limited.to_string()
        };
        *fake.upstream.borrow_mut() = (200, vec![Bytes::from(body)]);
        let (resp, body) = run(&mut pool, &gw, &fake, chat(stream));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (resp.status, v["error"]["code"].as_str()),
            (429, Some("upstream_rate_limited"))
        );
    }
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    let error_finish = chunk(json!([{"index":0,"delta":{},"finish_reason":"error"}]), Value::Null);
    *fake.upstream.borrow_mut() = (200, vec![hello().into(), error_finish.into()]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(true));
    assert_eq!(resp.status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("upstream_stream_error"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}

/// An upstream that streams although it was asked for JSON is read as the
/// stream it is, and the client gets its fold.
#[test]
fn an_upstream_that_streams_anyway_is_folded() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    fake.always_streams.set(true);
    *fake.upstream.borrow_mut() = (200, vec![upstream_sse().into()]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(v["usage"]["total_tokens"], 9);
}

#[test]
fn truncated_upstream_is_an_error_not_an_answer() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    let full = upstream_sse();
    *fake.upstream.borrow_mut() = (200, vec![Bytes::copy_from_slice(&full[..full.len() / 2])]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
    assert_eq!(resp.status, 502, "{}", String::from_utf8_lossy(&body));
    let (resp, body) = run(&mut pool, &gw, &fake, chat(true));
    assert_eq!(resp.status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.trim_end().ends_with("}}"), "{text}");
    assert!(text.contains("upstream_interrupted"));
    assert!(!text.contains("[DONE]"));
}

#[test]
fn auth_failures_and_upstream_errors_render_openai_shape() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    let mut req = chat(false);
    req.headers.clear();
    let (resp, body) = run(&mut pool, &gw, &fake, req);
    assert_eq!(resp.status, 401);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    *fake.upstream.borrow_mut() = (500, vec![Bytes::from_static(b"{\"error\":{\"message\":\"boom\"}}")]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
    assert_eq!(resp.status, 502);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");
    // Nothing was sent upstream for the unauthenticated request; the 500
    // was retried once (routing.retries defaults to 1).
    assert_eq!(fake.sent.borrow().len(), 2);
}

/// Numbers the edge relays (embedding vectors, logprobs) keep their exact
/// value through its parse and re-serialization: serde_json's default float
/// parser can be one ULP off, so the core enables `float_roundtrip`.
#[test]
fn relayed_numbers_keep_their_exact_value() {
    for text in [
        "0.10112830996513367",
        "-0.054384928196668625",
        "1e-45",
        "3.4028234663852886e38",
    ] {
        let exact: f64 = text.parse().unwrap(); // std's parser is correctly rounded
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v.as_f64().unwrap().to_bits(), exact.to_bits(), "{text}");
        let again: serde_json::Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(again.as_f64().unwrap().to_bits(), exact.to_bits(), "{text}");
    }
}

fn chunk(choices: Value, usage: Value) -> String {
    let c = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":choices,"usage":usage});
    format!("data: {c}\n\n")
}

fn finish_and_usage() -> String {
    chunk(json!([{"index":0,"delta":{},"finish_reason":"stop"}]), Value::Null)
        + &chunk(
            json!([]),
            json!({"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}),
        )
}

fn hello() -> String {
    chunk(
        json!([{"index":0,"delta":{"role":"assistant","content":"Hello"}}]),
        Value::Null,
    )
}

/// The upstream finishes (finish_reason, usage), then holds the connection
/// open with keep-alive comments: the client's stream ends anyway.
#[test]
fn finished_stream_ends_although_the_upstream_stays_open() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    fake.hang.set(true);
    let mut chunks = vec![hello(), finish_and_usage()];
    chunks.extend((0..3).map(|_| ": keepalive\n\n".to_string()));
    *fake.upstream.borrow_mut() = (200, chunks.into_iter().map(Bytes::from).collect());
    let (_, body) = run(&mut pool, &gw, &fake, chat(true));
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("error"), "{text}");
    let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
}

/// Bifrost #6784's shape: finish_reason, no usage, no `[DONE]`, then only
/// heartbeats. The stream ends after the short grace period for usage.
#[test]
fn finished_stream_without_usage_ends_after_a_grace_period() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    fake.hang.set(true);
    let finish = chunk(
        json!([{"index":0,"delta":{},"finish_reason":"tool_calls"}]),
        Value::Null,
    );
    let chunks = [hello(), finish, ": heartbeat\n\n".into(), ": heartbeat\n\n".into()];
    *fake.upstream.borrow_mut() = (200, chunks.into_iter().map(Bytes::from).collect());
    let (_, body) = run(&mut pool, &gw, &fake, chat(true));
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

/// Completeness is the finish_reason: `[DONE]` without one is an error,
/// and a close after one (with no `[DONE]`) is a complete answer.
#[test]
fn completeness_comes_from_finish_reason() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(hello() + "data: [DONE]\n\n")]);
    let (resp, _) = run(&mut pool, &gw, &fake, chat(false));
    assert_eq!(resp.status, 502);
    let (_, body) = run(&mut pool, &gw, &fake, chat(true));
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(text.contains("\"error\""), "{text}");

    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(hello() + &finish_and_usage())]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat(false));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&body));
    let (_, body) = run(&mut pool, &gw, &fake, chat(true));
    assert!(String::from_utf8(body).unwrap().ends_with("data: [DONE]\n\n"));
}

/// Keep-alive comments are not progress: a stream that sends only them
/// for longer than the stall timeout has stalled.
#[test]
fn comments_do_not_keep_a_stalled_stream_alive() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    fake.tick_ms.set(1_000);
    let mut chunks = vec![hello()];
    chunks.extend((0..120).map(|_| ": keepalive\n\n".to_string()));
    chunks.push(finish_and_usage() + "data: [DONE]\n\n");
    *fake.upstream.borrow_mut() = (200, chunks.into_iter().map(Bytes::from).collect());
    let (_, body) = run(&mut pool, &gw, &fake, chat(true));
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("upstream_stalled"), "{text}");
}

fn embeddings(format: Option<&str>) -> Request {
    let mut body = json!({"model": "m", "input": "hi"});
    if let Some(f) = format {
        body["encoding_format"] = f.into();
    }
    Request {
        method: "POST".into(),
        path: "/v1/embeddings".into(),
        headers: vec![("authorization".into(), format!("Bearer {KEY}"))],
        body: Ok(body.to_string().into()),
        geo: None,
    }
}

/// The client asked for base64 (the SDKs' default); the upstream ignored
/// it and sent floats. The client still gets little-endian float32 base64.
#[test]
fn embeddings_honour_the_encoding_the_client_asked_for() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    let floats = json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-1.0,0.25,2.0]}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}});
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(floats.to_string())]);
    let (resp, body) = run(&mut pool, &gw, &fake, embeddings(Some("base64")));
    assert_eq!(resp.status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"][0]["embedding"], "AAAAPwAAgL8AAIA+AAAAQA==");
    // And the other way: base64 from the upstream, floats for the client.
    let b64 = json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAAPwAAgL8AAIA+AAAAQA=="}],"model":"m"});
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(b64.to_string())]);
    for format in [None, Some("float")] {
        let (_, body) = run(&mut pool, &gw, &fake, embeddings(format));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"][0]["embedding"], json!([0.5, -1.0, 0.25, 2.0]));
    }
}

/// Two targets whose circuits open on the first failure; model `m` tries
/// `a` then `b`, model `mb` only `b`.
fn two_targets(pool: &LocalPool) -> (Gateway, Fake) {
    let p =
        |n: &str| json!({"name": n, "kind": "openai", "base_url": format!("http://{n}/v1"), "api_key_secret": "UP"});
    setup_with(
        pool,
        json!({
            "providers": [p("a"), p("b")],
            "models": [{"id": "m", "targets": ["a", "b"]}, {"id": "mb", "targets": ["b"]}],
            "routing": {"circuit_failures": 1, "circuit_cooldown_ms": 10_000, "deadline_ms": 5_000, "retries": 0}
        }),
    )
}

fn chat_model(model: &str) -> Request {
    let mut r = chat(false);
    r.body = Ok(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
        .into());
    r
}

fn fail_with(fake: &Fake, status: u16) {
    *fake.upstream.borrow_mut() = (status, vec![Bytes::from_static(b"{\"error\":{\"message\":\"no\"}}")]);
}

/// A half-open probe answered by 429 resolves the probe: the target is
/// busy, not down, and the next request may probe again.
#[test]
fn a_probe_answered_by_429_does_not_shut_the_target_out() {
    let mut pool = LocalPool::new();
    let (gw, fake) = two_targets(&pool);
    fail_with(&fake, 500);
    let (resp, _) = run(&mut pool, &gw, &fake, chat_model("mb"));
    assert_eq!(resp.status, 502);
    fake.now.set(fake.now.get() + 20_000); // cooldown over: half-open
    fail_with(&fake, 429);
    let (resp, _) = run(&mut pool, &gw, &fake, chat_model("mb"));
    assert_eq!(resp.status, 429);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse())]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat_model("mb"));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&body));
}

/// A probe admitted but never sent, because the deadline passed while an
/// earlier target was failing, is handed back.
#[test]
fn a_probe_abandoned_by_the_deadline_is_handed_back() {
    let mut pool = LocalPool::new();
    let (gw, fake) = two_targets(&pool);
    fail_with(&fake, 500);
    let (resp, _) = run(&mut pool, &gw, &fake, chat_model("m"));
    assert_eq!(resp.status, 502);
    assert_eq!(fake.sent.borrow().len(), 2); // both circuits are open now
    fake.now.set(fake.now.get() + 20_000);
    // `a` fails slowly, past the whole deadline; `b` is admitted as the
    // probe but there is no time left to send it.
    fake.tick_ms.set(6_000);
    let (resp, _) = run(&mut pool, &gw, &fake, chat_model("m"));
    assert_eq!(resp.status, 502);
    assert_eq!(fake.sent.borrow().len(), 3);
    fake.tick_ms.set(0);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse())]);
    let (resp, body) = run(&mut pool, &gw, &fake, chat_model("mb"));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&body));
}

/// Query strings carry credentials (`?api-key=`, `?key=`); the log line's
/// path never includes them, on any route or outcome.
#[test]
fn log_lines_carry_the_path_without_its_query() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse())]);
    let logs = capture_logs(|| {
        let with_query = |mut r: Request, path: &str| {
            r.path = format!("{path}?api-key=sk-in-query&x=1");
            r
        };
        let mut get = chat(false);
        get.method = "GET".into();
        get.body = Ok(Bytes::new());
        let (resp, _) = run(&mut pool, &gw, &fake, with_query(chat(false), "/v1/chat/completions"));
        assert_eq!(resp.status, 200);
        let (resp, _) = run(&mut pool, &gw, &fake, with_query(get.clone(), "/v1/models"));
        assert_eq!(resp.status, 200);
        let (resp, _) = run(&mut pool, &gw, &fake, with_query(get.clone(), "/health"));
        assert_eq!(resp.status, 200);
        let (resp, _) = run(&mut pool, &gw, &fake, with_query(get.clone(), "/nowhere"));
        assert_eq!(resp.status, 404);
        let mut unauth = with_query(get, "/v1/models");
        unauth.headers.clear();
        let (resp, _) = run(&mut pool, &gw, &fake, unauth);
        assert_eq!(resp.status, 401);
        pool.run_until_stalled();
    });
    // The positive half: the lines are there, with their paths.
    for path in ["/v1/chat/completions", "/v1/models", "/health", "/nowhere"] {
        assert!(
            logs.contains(&format!("\"path\":\"{path}\"")),
            "{path} not logged: {logs}"
        );
    }
    assert!(!logs.contains("sk-in-query"), "{logs}");
    assert!(!logs.contains("api-key"), "{logs}");
}

/// Config errors an operator could make, each carrying something an
/// outsider must not see: a path, a secret's name, serde's echo of a value.
fn config_errors() -> Vec<(infergate::config::ConfigError, &'static str)> {
    use infergate::config::RawConfig;
    let echoed = json!({"providers": [], "models": [], "routing": {"retries": "sk-live-pasted-value"}});
    let missing = json!({"providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1",
        "api_key_secret": "PROVIDER_SECRET_NAME"}], "models": [{"id": "m", "targets": ["up"]}]});
    vec![
        (
            RawConfig::parse(&echoed.to_string()).unwrap_err(),
            "sk-live-pasted-value",
        ),
        (
            RawConfig::parse(&missing.to_string())
                .unwrap()
                .validate(&|_| None)
                .unwrap_err(),
            "PROVIDER_SECRET_NAME",
        ),
    ]
}

fn unconfigured_request(path: &str, token: Option<&str>) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        headers: token
            .map(|t| ("authorization".into(), format!("Bearer {t}")))
            .into_iter()
            .collect(),
        body: Ok(Bytes::new()),
        geo: None,
    }
}

fn body_of(resp: Response) -> String {
    match resp.body {
        Body::Full(b) => String::from_utf8(b.to_vec()).unwrap(),
        Body::Stream(_) => panic!("a stream"),
    }
}

/// While the config is invalid an unauthenticated client gets a generic
/// 503 on every route but liveness; nothing of the config leaks.
#[test]
fn an_invalid_config_is_not_disclosed_to_clients() {
    for (err, secret) in config_errors() {
        assert!(
            err.to_string().contains(secret),
            "the operator's message names it: {err}"
        );
        for path in [
            "/v1/chat/completions",
            "/v1/models",
            "/ready",
            "/admin/stats",
            "/v1/tasks/x",
            "/v1/messages",
        ] {
            for token in [None, Some("not-the-admin-token")] {
                let req = unconfigured_request(path, token);
                let resp = infergate::gateway::unconfigured_response(&err, &req, Some("the-admin-token"));
                assert_eq!(resp.status, 503, "{path}");
                let body = body_of(resp);
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["error"]["code"], "gateway_misconfigured");
                assert!(!body.contains(secret), "{path}: {body}");
                assert!(!body.contains("providers"), "{path}: {body}");
                assert!(!body.contains("api_key_secret"), "{path}: {body}");
            }
        }
        let resp =
            infergate::gateway::unconfigured_response(&err, &unconfigured_request("/health?probe=1", None), None);
        assert_eq!(resp.status, 200);
        // The operator, with the admin token, is told what is wrong.
        let req = unconfigured_request("/ready", Some("the-admin-token"));
        let resp = infergate::gateway::unconfigured_response(&err, &req, Some("the-admin-token"));
        assert_eq!(resp.status, 503);
        assert!(body_of(resp).contains(secret));
        // No admin token configured: nobody is.
        let resp = infergate::gateway::unconfigured_response(&err, &unconfigured_request("/ready", Some("")), None);
        assert!(!body_of(resp).contains(secret));
    }
}

#[test]
fn the_admin_secret_is_found_in_a_config_that_does_not_load() {
    use infergate::config::admin_secret_name;
    assert_eq!(admin_secret_name(None), "INFERGATE_ADMIN_TOKEN");
    assert_eq!(admin_secret_name(Some("{not json")), "INFERGATE_ADMIN_TOKEN");
    let broken = json!({"admin": {"token_secret": "OPS_TOKEN"}, "routing": {"retries": "x"}});
    assert_eq!(admin_secret_name(Some(&broken.to_string())), "OPS_TOKEN");
}

/// A gateway over `fake`'s KV with `model`'s entry replaced.
fn gateway_with_model(model: Value) -> Gateway {
    let p =
        |n: &str| json!({"name": n, "kind": "openai", "base_url": format!("http://{n}/v1"), "api_key_secret": "UP"});
    let cfg = json!({"providers": [p("up"), p("up2")], "models": [model]});
    Gateway::new(Config::from_json(&cfg.to_string(), &|n| (n == "UP").then(|| "sk-up".into())).unwrap())
}

/// A remap in the config (another upstream model, another target chain)
/// must not serve answers cached under the old one.
#[test]
fn a_config_remap_does_not_serve_old_answers() {
    let mut pool = LocalPool::new();
    let (_, fake) = setup(&pool);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse())]);
    let deterministic = || {
        let mut r = chat(false);
        r.body = Ok(
            json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
                .to_string()
                .into(),
        );
        r
    };
    let mut cache_status = |gw: &Gateway| {
        let (resp, _) = run(&mut pool, gw, &fake, deterministic());
        pool.run_until_stalled(); // the cache write
        assert_eq!(resp.status, 200);
        resp.header("x-infergate-cache").unwrap().to_string()
    };
    let before = gateway_with_model(json!({"id": "m", "upstream_model": "small-v1", "targets": ["up"]}));
    assert_eq!(cache_status(&before), "MISS");
    assert_eq!(cache_status(&before), "HIT");
    let remapped = gateway_with_model(json!({"id": "m", "upstream_model": "small-v2", "targets": ["up"]}));
    assert_eq!(cache_status(&remapped), "MISS", "another upstream model");
    let rerouted = gateway_with_model(json!({"id": "m", "upstream_model": "small-v2", "targets": ["up2"]}));
    assert_eq!(cache_status(&rerouted), "MISS", "another target chain");
    assert_eq!(cache_status(&rerouted), "HIT");
}
