//! The Responses translation in both directions, on the wire's own terms.

use serde_json::{json, Value};

use super::encode::obj;
use super::*;
use crate::stream::StreamEvent;
use crate::wire::error::OpenAiError;

fn req(v: Value) -> ResponsesRequest {
    serde_json::from_value(v).unwrap()
}

fn meta() -> ResponseMeta {
    ResponseMeta::new(&req(json!({"model": "m", "input": "x"})), (1, 2), 1_700_000_000)
}

#[test]
fn a_tool_loop_translates_to_chat() {
    let r = req(json!({
        "model": "m", "instructions": "be brief", "max_output_tokens": 50,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get", "arguments": ""},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": {"t": 20}}
        ],
        "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
        "reasoning": {"effort": "low"}
    }));
    let chat = to_chat(&r, &[], false).unwrap();
    let m = chat["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(
        m[1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}})
    );
    // Two consecutive calls are one assistant turn; empty arguments are `{}`.
    assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(m[2]["tool_calls"][1]["function"]["arguments"], "{}");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    );
    assert_eq!(m[4]["content"], "{\"t\":20}");
    assert_eq!(chat["tools"][0]["function"]["strict"], true);
    assert_eq!(
        chat["tool_choice"],
        json!({"type": "function", "function": {"name": "get"}})
    );
    assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
    assert_eq!(chat["max_tokens"], 50);
    assert_eq!(chat["reasoning_effort"], "low");
}

#[test]
fn what_chat_cannot_express_names_the_parameter() {
    let bad_tool = req(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}));
    assert!(to_chat(&bad_tool, &[], false)
        .unwrap_err()
        .to_string()
        .contains("tools[0].type"));
    let bad_item = req(json!({"model": "m", "input": [{"type": "computer_call"}]}));
    assert!(to_chat(&bad_item, &[], false)
        .unwrap_err()
        .to_string()
        .contains("input[0].type"));
    for (body, param) in [
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
            "input[0].content[0].image_url",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": null}]}),
            "input[0].content",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
            "input[0].call_id",
        ),
        (json!({"model": "m", "input": "x", "text": "plain"}), "text"),
        (
            json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": ""}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f",
                "arguments": {"a": 1}}]}),
            "input[0].arguments",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": "json_object"}}),
            "text.format",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
            "text.format.schema",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}),
            "text.format.name",
        ),
        (json!({"model": "m", "input": "x", "metadata": ["a"]}), "metadata"),
        (json!({"model": "m", "input": "x", "metadata": {"k": 1}}), "metadata.k"),
        (
            json!({"model": "m", "input": "x", "metadata": {"k": "v".repeat(513)}}),
            "metadata.k",
        ),
        (
            json!({"model": "m", "input": "x", "truncation": "middle"}),
            "truncation",
        ),
        (json!({"model": "m", "input": "x", "background": true}), "background"),
    ] {
        let e = to_chat(&req(body.clone()), &[], false).unwrap_err();
        assert_eq!(e.param().as_deref(), Some(param), "{body}: {e}");
    }
    let chat_named = ValidationError::Invalid {
        param: "max_tokens".into(),
        reason: "must be at least 1".into(),
    };
    assert_eq!(rename_params(chat_named).param().as_deref(), Some("max_output_tokens"));
    let schema_named = ValidationError::Missing {
        param: "response_format.json_schema.name".into(),
    };
    assert_eq!(rename_params(schema_named).param().as_deref(), Some("text.format.name"));
    let too_long = ValidationError::ContextLength {
        param: "messages",
        limit: 8,
        requested: 9,
        prompt: 9,
        completion: 0,
    };
    assert_eq!(rename_params(too_long).param().as_deref(), Some("input"));
}

#[test]
fn built_in_tools_go_only_to_upstreams_that_serve_them() {
    let body = json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"},
        "tools": [{"type": "web_search_preview"}, {"type": "function", "name": "f", "parameters": {}}]});
    let e = to_chat(&req(body.clone()), &[], false).unwrap_err();
    assert_eq!(e.param().as_deref(), Some("tools[0].type"));
    let chat = to_chat(&req(body), &[], true).unwrap();
    assert_eq!(chat["tools"].as_array().map(Vec::len), Some(1));
    assert_eq!(chat["tools"][0]["function"]["name"], "f");
    assert!(!chat.contains_key("tool_choice"));
}

#[test]
fn a_completion_becomes_a_response() {
    let completion = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Checking.", "reasoning_content": "think",
        "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "get", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 4}}});
    let r = to_response(&completion, &meta());
    assert_eq!(r["status"], "completed");
    let kinds: Vec<&str> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reasoning", "message", "function_call"]);
    assert_eq!(r["output"][2]["call_id"], "call_9");
    assert_eq!(r["usage"]["input_tokens"], 7);
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 4);
    assert_eq!(r["usage"]["total_tokens"], 10);
    let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "a"}}]});
    let r = to_response(&cut, &meta());
    assert_eq!(
        (r["status"].as_str(), r["incomplete_details"]["reason"].as_str()),
        (Some("incomplete"), Some("max_output_tokens"))
    );
}

fn chunk(delta: Value, finish: Value) -> StreamEvent {
    StreamEvent::Delta(obj(
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
    ))
}

fn events(bytes: &[u8]) -> Vec<Value> {
    let mut d = crate::sse::SseDecoder::default();
    d.push(bytes);
    let mut out = vec![];
    while let Some(e) = d.next_event().unwrap() {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(e.event.as_deref(), v["type"].as_str(), "event: names the type");
        out.push(v);
    }
    out
}

#[test]
fn a_stream_becomes_typed_events_in_order() {
    let mut enc = ResponsesEncoder::new(meta());
    let evs = [
        chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"a\""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        StreamEvent::Usage(crate::stream::Usage {
            prompt_tokens: 5,
            completion_tokens: 4,
            total_tokens: 9,
        }),
        StreamEvent::Done {
            finish_reason: Some("tool_calls".into()),
        },
    ];
    let bytes: Vec<u8> = evs.iter().filter_map(|e| enc.encode(e)).flatten().collect();
    let all = events(&bytes);
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            // The message is done before the call opens, as OpenAI
            // streams them.
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let seqs: Vec<u64> = all.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..all.len() as u64).collect::<Vec<_>>());
    let done = &all.last().unwrap()["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
    assert_eq!(done["usage"]["output_tokens"], 4);
}

#[test]
fn a_failure_after_the_first_byte_is_response_failed() {
    let mut enc = ResponsesEncoder::new(meta());
    let mut bytes = enc.encode(&chunk(json!({"content": "par"}), Value::Null)).unwrap();
    bytes.extend(
        enc.encode(&StreamEvent::Error(crate::stream::UpstreamError::Interrupted))
            .unwrap(),
    );
    let all = events(&bytes);
    let error = &all[all.len() - 2];
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "upstream_interrupted");
    let last = all.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "upstream_interrupted");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "par");
}

/// A refusal streams as a message item with a refusal part, as OpenAI
/// sends it, and stays in the final Response.
#[test]
fn a_streamed_refusal_is_a_refusal_part() {
    let mut enc = ResponsesEncoder::new(meta());
    let evs = [
        chunk(json!({"role": "assistant", "refusal": "I can't"}), Value::Null),
        chunk(json!({"refusal": " do that"}), Value::Null),
        chunk(json!({}), json!("stop")),
        StreamEvent::Done {
            finish_reason: Some("stop".into()),
        },
    ];
    let bytes: Vec<u8> = evs.iter().filter_map(|e| enc.encode(e)).flatten().collect();
    let all = events(&bytes);
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(all[3]["part"], json!({"type": "refusal", "refusal": ""}));
    assert_eq!(all[6]["refusal"], "I can't do that");
    let done = &all.last().unwrap()["response"];
    assert_eq!(
        done["output"][0]["content"],
        json!([{"type": "refusal", "refusal": "I can't do that"}])
    );
}
