//! Request parameters that peers' bug trackers show going wrong silently:
//! each is either honoured or refused with a 400 naming the field.

mod common;

use common::TestServer;
use serde_json::{json, Value};

const MODEL: &str = "local/tiny-gpt";
const PROMPT: &str = "Once upon a time there was";

async fn greedy_first_token(s: &TestServer, extra: Value) -> (u16, Value) {
    let mut body = json!({"model": MODEL, "prompt": PROMPT, "max_tokens": 1, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.post_json("/v1/completions", body).await
}

/// `logit_bias` works on /v1/completions as on chat (it was ignored there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_honour_logit_bias() {
    let s = TestServer::start_default().await;
    let (status, plain) = greedy_first_token(&s, json!({})).await;
    assert_eq!(status, 200, "{plain}");
    let first = plain["choices"][0]["text"].as_str().unwrap().to_string();
    // The greedy first token id: encode the text it decoded to.
    let codec = infergate_runner::engine::TextCodec::load(&common::open_model()).unwrap();
    let id = codec.encode(&first).unwrap()[0];
    let (status, banned) = greedy_first_token(&s, json!({"logit_bias": {id.to_string(): -100}})).await;
    assert_eq!(status, 200, "{banned}");
    assert_ne!(
        banned["choices"][0]["text"].as_str().unwrap(),
        first,
        "a -100 bias bans the token"
    );
    for bad in [json!({"abc": 1}), json!({"99999999": 1}), json!({"5": 101})] {
        let (status, v) = greedy_first_token(&s, json!({"logit_bias": bad})).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"]["param"].as_str().unwrap().starts_with("logit_bias."), "{v}");
    }
    let (status, v) = greedy_first_token(&s, json!({"logit_bias": []})).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("logit_bias")), "{v}");
}

/// A text-only model refuses image and audio parts instead of answering as
/// if they had never been sent; legacy function calling is refused like tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_refuses_what_it_cannot_read() {
    let s = TestServer::start_default().await;
    let image = json!({"model": MODEL, "max_tokens": 2, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
    ]});
    let (status, v) = s.post_json("/v1/chat/completions", image).await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("messages[0].content[1]")),
        "{v}"
    );
    let functions = json!({"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}],
        "functions": [{"name": "f", "parameters": {"type": "object"}}]});
    let (status, v) = s.post_json("/v1/chat/completions", functions).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("functions")), "{v}");
}

/// `developer` is OpenAI's newer name for `system`: a template without a
/// developer turn renders it as system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn developer_messages_render_as_system() {
    let s = TestServer::start_default().await;
    let ask = |role: &str| {
        json!({"model": MODEL, "max_tokens": 4, "temperature": 0, "messages": [
            {"role": role, "content": "Answer briefly."}, {"role": "user", "content": "Hi"}]})
    };
    let (_, sys) = s.post_json("/v1/chat/completions", ask("system")).await;
    let (_, dev) = s.post_json("/v1/chat/completions", ask("developer")).await;
    assert_eq!(sys["usage"], dev["usage"], "{sys} {dev}");
    assert_eq!(sys["choices"][0]["message"], dev["choices"][0]["message"]);
}

/// More sequences than the queue can ever hold is a 400 naming `n`, not a
/// 429 a client would retry forever; `echo` returns the prompt as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_requests_and_echo() {
    let s = TestServer::start_default().await;
    let body = json!({"model": MODEL, "prompt": ["a", "b", "c"], "n": 128, "max_tokens": 1});
    let (status, v) = s.post_json("/v1/completions", body).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("n")), "{v}");

    let prompt = "<|im_start|>user\nHi<|im_end|>\n";
    let body = json!({"model": MODEL, "prompt": prompt, "echo": true, "max_tokens": 2, "temperature": 0});
    let (status, v) = s.post_json("/v1/completions", body).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["choices"][0]["text"].as_str().unwrap().starts_with(prompt), "{v}");
}

/// A wrong method gets 405 in OpenAI's error shape, not an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_an_openai_error() {
    let s = TestServer::start_default().await;
    let r = reqwest::get(format!("{}/v1/chat/completions", s.base)).await.unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
}
