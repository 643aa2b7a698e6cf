//! The HTTP API end to end: a real runner (real ONNX Runtime, real model)
//! on an ephemeral port, driven over TCP.

mod common;

use common::{options, sse_data, stream_text, TestServer};
use infergate_runner::engine::EngineConfig;
use infergate_runner::server::Signing;
use serde_json::{json, Value};

const MODEL: &str = "local/tiny-gpt";
/// Greedy continuation of "Once upon a time there was" (16 tokens), as
/// onnxruntime-python computes it in tools/gen_test_model.py.
const GOLDEN: &str = "](atZ fanendouldtokenn\\ prine<E not";

/// (parsed chunks, whether the stream ended with [DONE])
async fn post_stream(s: &TestServer, path: &str, body: Value) -> (Vec<Value>, bool) {
    let r = s.post(path, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    let done = data.last().map(String::as_str) == Some("[DONE]");
    let chunks = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (chunks, done)
}

fn completion(prompt: &str, max_tokens: u32) -> Value {
    json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_non_streaming_and_streaming() {
    let s = TestServer::start_default().await;
    let (status, v) = s
        .post_json("/v1/completions", completion("Once upon a time there was", 16))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], MODEL);
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["choices"][0]["text"], GOLDEN);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 16, "total_tokens": 27})
    );

    let mut body = completion("Once upon a time there was", 16);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (chunks, done) = post_stream(&s, "/v1/completions", body).await;
    assert!(done, "the stream ends with [DONE]");
    assert!(chunks.len() > 2, "streamed in pieces");
    assert_eq!(stream_text(&chunks), (GOLDEN.to_string(), Some("length".to_string())));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 16);
    assert_eq!(last["usage"]["prompt_tokens"], 11);
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["usage"].is_null() && c["object"] == "text_completion"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_non_streaming_and_streaming_agree() {
    let s = TestServer::start_default().await;
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there!"}],
        "max_tokens": 12, "temperature": 0
    });
    let (status, v) = s.post_json("/v1/chat/completions", body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    let content = msg["content"].as_str().unwrap().to_string();
    assert!(!content.is_empty());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 12);
    // <|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!((15..=30).contains(&prompt_tokens), "{prompt_tokens}");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (chunks, done) = post_stream(&s, "/v1/chat/completions", streamed).await;
    assert!(done);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(stream_text(&chunks), (content, Some("length".to_string())));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_and_max_tokens() {
    let s = TestServer::start_default().await;
    // GOLDEN contains "fan": generation stops before it.
    let mut body = completion("Once upon a time there was", 16);
    body["stop"] = json!(["zzz", "fan"]);
    let (_, v) = s.post_json("/v1/completions", body.clone()).await;
    assert_eq!(v["choices"][0]["text"], "](atZ ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let used = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(used < 16, "stopped early ({used} tokens)");

    body["stream"] = json!(true);
    let (chunks, done) = post_stream(&s, "/v1/completions", body).await;
    assert!(done);
    assert_eq!(stream_text(&chunks), ("](atZ ".to_string(), Some("stop".to_string())));

    // A stop string spanning tokens, in chat.
    let (_, v) = s
        .post_json("/v1/completions", completion("Once upon a time there was", 3))
        .await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["choices"][0]["text"], "](at");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_make_sampling_reproducible() {
    let s = TestServer::start_default().await;
    let body = |seed: i64| json!({"model": MODEL, "prompt": "Hello", "max_tokens": 32, "temperature": 1.0, "top_p": 0.95, "seed": seed});
    let text = |v: Value| v["choices"][0]["text"].as_str().unwrap().to_string();
    let (_, a) = s.post_json("/v1/completions", body(42)).await;
    let (_, b) = s.post_json("/v1/completions", body(42)).await;
    let (_, c) = s.post_json("/v1/completions", body(43)).await;
    assert_eq!(text(a.clone()), text(b));
    assert_ne!(text(a.clone()), text(c));
    // Streaming with the same seed gives the same text too.
    let mut sb = body(42);
    sb["stream"] = json!(true);
    let (chunks, _) = post_stream(&s, "/v1/completions", sb).await;
    assert_eq!(stream_text(&chunks).0, text(a));
    // n choices with one seed differ from each other, reproducibly.
    let mut nb = body(42);
    nb["n"] = json!(2);
    let (_, n1) = s.post_json("/v1/completions", nb.clone()).await;
    let (_, n2) = s.post_json("/v1/completions", nb).await;
    assert_eq!(n1["choices"].as_array().unwrap().len(), 2);
    assert_eq!(n1["choices"], n2["choices"]);
    assert_ne!(n1["choices"][0]["text"], n1["choices"][1]["text"]);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field() {
    let s = TestServer::start_default().await;
    let cases = [
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "temperature": 5}),
            400,
            "temperature",
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "top_k": -1}),
            400,
            "top_k",
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "max_tokens": 100000}),
            400,
            "max_tokens",
        ),
        ("/v1/completions", json!({"model": MODEL}), 400, "prompt"),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": [1, 2, 99999]}),
            400,
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "word ".repeat(300), "max_tokens": 100}),
            400,
            "prompt",
        ),
        ("/v1/completions", json!({"model": "nope", "prompt": "x"}), 404, "model"),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": []}),
            400,
            "messages",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}),
            400,
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "top_p": 2}),
            400,
            "top_p",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 1}}),
            400,
            "logit_bias.abc",
        ),
    ];
    for (path, body, status, param) in cases {
        let (got, v) = s.post_json(path, body.clone()).await;
        assert_eq!(got, status, "{body} -> {v}");
        assert_eq!(v["error"]["param"], param, "{body} -> {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(v["error"]["type"].is_string());
    }
    let (_, v) = s
        .post_json("/v1/completions", json!({"model": "nope", "prompt": "x"}))
        .await;
    assert_eq!(v["error"]["code"], "model_not_found");
    let (_, v) = s
        .post_json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "word ".repeat(300), "max_tokens": 100}),
        )
        .await;
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    // Not JSON at all.
    let r = reqwest::Client::new()
        .post(s.url("/v1/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Oversized body.
    let big = "x".repeat(2 << 20);
    let r = reqwest::Client::new()
        .post(s.url("/v1/completions"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Unknown path: OpenAI-shaped 404.
    let r = reqwest::get(s.url("/v1/nothing")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "not_found_error");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_required_and_checked() {
    let secret = b"test-secret-for-the-runner".to_vec();
    let s = TestServer::start(options(
        Signing::Required {
            secret: secret.clone(),
            window_ms: infergate::signing::DEFAULT_WINDOW_MS,
        },
        EngineConfig::default(),
    ))
    .await;
    let body = serde_json::to_vec(&completion("Hello", 4)).unwrap();
    let client = reqwest::Client::new();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };

    // Unsigned: 401 in OpenAI shape.
    let r = client
        .post(s.url("/v1/completions"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["code"], "missing_signature");

    // Signed for another body: 401.
    let mut req = client.post(s.url("/v1/completions")).body(body.clone());
    for (k, v) in infergate::signing::signed_headers(&secret, now_ms(), "POST", "/v1/completions", b"{}") {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "invalid_signature");

    // Signed too long ago: 401.
    let mut req = client.post(s.url("/v1/completions")).body(body.clone());
    for (k, v) in
        infergate::signing::signed_headers(&secret, now_ms() - 10 * 60 * 1000, "POST", "/v1/completions", &body)
    {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 401);

    // Correctly signed: 200.
    let mut req = client.post(s.url("/v1/completions")).body(body.clone());
    for (k, v) in infergate::signing::signed_headers(&secret, now_ms(), "POST", "/v1/completions", &body) {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["usage"]["completion_tokens"], 4);

    // /v1/models needs a signature too; the operational endpoints do not.
    assert_eq!(reqwest::get(s.url("/v1/models")).await.unwrap().status(), 401);
    let mut req = client.get(s.url("/v1/models"));
    for (k, v) in infergate::signing::signed_headers(&secret, now_ms(), "GET", "/v1/models", b"") {
        req = req.header(k, v);
    }
    let models: Value = req.send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], MODEL);
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        assert_eq!(reqwest::get(s.url(path)).await.unwrap().status(), 200, "{path}");
    }
    let doc: Value = reqwest::get(s.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/models",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the runner's document"
        );
    }
    assert!(
        doc["paths"]["/admin/keys"].is_null(),
        "the runner's document lists only its own routes"
    );
    assert!(
        s.metric("infergate_runner_rejected_total{reason=\"unauthorized\"}")
            .await
            >= 4.0
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_metrics_and_prompt_arrays() {
    let s = TestServer::start_default().await;
    let models: Value = reqwest::get(s.url("/v1/models")).await.unwrap().json().await.unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL);

    let (_, v) = s.post_json("/v1/completions",
        json!({"model": MODEL, "prompt": ["Once upon a time there was", "Hello"], "max_tokens": 16, "temperature": 0, "echo": true}),
    )
    .await;
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[0]["text"], format!("Once upon a time there was{GOLDEN}"));
    assert!(choices[1]["text"].as_str().unwrap().starts_with("Hello"));

    let text = reqwest::get(s.url("/metrics")).await.unwrap().text().await.unwrap();
    for needle in [
        "infergate_runner_device_info{device=\"cpu\"} 1",
        "infergate_runner_ready 1",
        "# TYPE infergate_runner_time_to_first_token_seconds histogram",
        "# TYPE infergate_runner_inter_token_latency_seconds histogram",
        "infergate_runner_queue_depth 0",
        "infergate_runner_running_batch_size",
        "infergate_runner_generated_tokens_total 32",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    s.shutdown().await;
}
