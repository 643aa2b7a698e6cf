//! Load behaviour over HTTP against the real runner: admission control
//! (429/503), client disconnects freeing their slot, graceful drain.

mod common;

use std::time::Duration;

use common::{options, TestServer};
use futures_util::StreamExt;
use infergate_runner::engine::EngineConfig;
use infergate_runner::server::Signing;
use serde_json::{json, Value};

const MODEL: &str = "local/tiny-gpt";

fn completion(prompt: &str, max_tokens: u32) -> Value {
    json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_control_answers_429_and_503_at_once() {
    // Not loaded yet: 503 with Retry-After, /health live, /ready not.
    let mut s = TestServer::unloaded(options(
        Signing::Disabled,
        EngineConfig {
            max_batch_size: 1,
            max_queue: 1,
            step_delay: Some(Duration::from_millis(20)),
            ..EngineConfig::default()
        },
    ))
    .await;
    let r = s.post("/v1/completions", completion("Hello", 4)).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "model_loading");
    assert_eq!(reqwest::get(s.url("/health")).await.unwrap().status(), 200);
    let r = reqwest::get(s.url("/ready")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "loading");

    s.load().await;
    let r = reqwest::get(s.url("/ready")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["device"], "cpu");

    // One running (batch size 1), one queued (queue 1), the third refused.
    let mut long = completion("Hello", 200);
    long["stream"] = json!(true);
    let a = s.post("/v1/completions", long.clone()).await;
    let mut a_body = a.bytes_stream();
    let first = a_body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    s.wait_metric("infergate_runner_running_batch_size", 5, |v| v == 1.0)
        .await;
    let b = s.post("/v1/completions", long.clone()).await;
    assert_eq!(b.status(), 200);
    assert_eq!(s.metric("infergate_runner_queue_depth").await, 1.0);
    let started = std::time::Instant::now();
    let c = s.post("/v1/completions", long).await;
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once");
    assert_eq!(c.status(), 429);
    assert_eq!(c.headers()["retry-after"], "1");
    let v: Value = c.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "queue_full");
    assert_eq!(
        s.metric("infergate_runner_rejected_total{reason=\"queue_full\"}").await,
        1.0
    );
    drop(a_body);
    drop(b);
    s.wait_metric("infergate_runner_queue_depth", 10, |v| v == 0.0).await;
    s.wait_metric("infergate_runner_running_batch_size", 10, |v| v == 0.0)
        .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_frees_the_slot() {
    let s = TestServer::start(options(
        Signing::Disabled,
        EngineConfig {
            step_delay: Some(Duration::from_millis(20)),
            ..EngineConfig::default()
        },
    ))
    .await;
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story"}],
                          "max_tokens": 400, "temperature": 0, "stream": true});
    let r = s.post("/v1/chat/completions", body.clone()).await;
    let mut stream = r.bytes_stream();
    // Read until some content arrived.
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || seen.matches("data:").count() < 3 {
        seen.push_str(&String::from_utf8_lossy(&stream.next().await.unwrap().unwrap()));
    }
    s.wait_metric("infergate_runner_running_batch_size", 5, |v| v == 1.0)
        .await;
    drop(stream); // the client goes away mid-stream
    s.wait_metric("infergate_runner_running_batch_size", 5, |v| v == 0.0)
        .await;
    assert_eq!(
        s.metric("infergate_runner_sequences_total{outcome=\"cancelled\"}")
            .await,
        1.0
    );
    // The slot is usable again.
    body["stream"] = json!(false);
    body["max_tokens"] = json!(3);
    let (status, v) = s.post_json("/v1/chat/completions", body).await;
    assert_eq!((status, v["usage"]["completion_tokens"].as_u64()), (200, Some(3)));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_streams_in_flight() {
    let s = TestServer::start(options(
        Signing::Disabled,
        EngineConfig {
            step_delay: Some(Duration::from_millis(10)),
            ..EngineConfig::default()
        },
    ))
    .await;
    let mut body = completion("Hello", 30);
    body["stream"] = json!(true);
    let r = s.post("/v1/completions", body).await;
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let base = s.base.clone();
    let state = s.state.clone();
    let shutdown = tokio::spawn(s.shutdown());
    // New connections are refused while the stream still completes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(state.is_draining());
    assert!(reqwest::get(format!("{base}/health")).await.is_err());
    let mut all = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = stream.next().await {
        all.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(all.ends_with("data: [DONE]\n\n"), "{all}");
    shutdown.await.unwrap();
}
