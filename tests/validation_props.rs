//! Property tests for request validation: for any otherwise valid request,
//! corrupting exactly one field yields a 400 whose `param` names that field,
//! and no byte string makes validation panic.

use infergate::wire::error::render;
use infergate::wire::openai::validate::{validate_chat, validate_completion, validate_embedding};
use infergate::wire::openai::{ModelCatalog, ModelLimits};
use proptest::prelude::*;
use serde_json::{json, Value};

struct Catalog;
impl ModelCatalog for Catalog {
    fn model_limits(&self, id: &str) -> Option<ModelLimits> {
        (id == "m").then_some(ModelLimits {
            context_window: 4096,
            max_output_tokens: 1024,
        })
    }
}

const MAX: usize = 1 << 20;

fn valid_chat() -> impl Strategy<Value = Value> {
    (
        "[a-zA-Z ]{1,40}",
        proptest::option::of(0.0f64..=2.0),
        proptest::option::of(1u32..=512),
        any::<bool>(),
        proptest::option::of(0i64..1000),
    )
        .prop_map(|(text, temp, max_tokens, stream, seed)| {
            let mut v = json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": text}]},
                ],
                "stream": stream,
            });
            if let Some(t) = temp {
                v["temperature"] = json!(t);
            }
            if let Some(m) = max_tokens {
                v["max_tokens"] = json!(m);
            }
            if let Some(s) = seed {
                v["seed"] = json!(s);
            }
            v
        })
}

/// (JSON pointer to set, the value to put there, the `param` expected).
fn corruption() -> impl Strategy<Value = (&'static str, Value, &'static str)> {
    prop_oneof![
        Just(("/model", json!(42), "model")),
        Just(("/model", json!(""), "model")),
        Just(("/messages", json!([]), "messages")),
        Just(("/messages", json!("hi"), "messages")),
        Just(("/messages/1/role", json!("wizard"), "messages[1].role")),
        Just(("/messages/1/content", json!(7), "messages[1].content")),
        Just(("/messages/1/content/0/text", json!(null), "messages[1].content[0].text")),
        (2.0001f64..1e6).prop_map(|t| ("/temperature", json!(t), "temperature")),
        (-1e6f64..-0.0001).prop_map(|t| ("/temperature", json!(t), "temperature")),
        (1.0001f64..10.0).prop_map(|t| ("/top_p", json!(t), "top_p")),
        (1025u32..100_000).prop_map(|m| ("/max_tokens", json!(m), "max_tokens")),
        Just(("/max_tokens", json!(0), "max_tokens")),
        Just(("/max_tokens", json!(-3), "max_tokens")),
        Just(("/max_tokens", json!("many"), "max_tokens")),
        (129u32..1000).prop_map(|n| ("/n", json!(n), "n")),
        Just(("/stream", json!("yes"), "stream")),
        Just(("/stop", json!(["a", "b", "c", "d", "e"]), "stop")),
        Just(("/presence_penalty", json!(2.5), "presence_penalty")),
        Just(("/frequency_penalty", json!(-2.5), "frequency_penalty")),
        Just(("/tool_choice", json!("often"), "tool_choice")),
        Just((
            "/tools",
            json!([{"type": "function", "function": {"name": "no spaces allowed"}}]),
            "tools[0].function.name"
        )),
        Just(("/response_format", json!({"type": "yaml"}), "response_format.type")),
        Just(("/seed", json!("abc"), "seed")),
    ]
}

fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let target = if parent.is_empty() {
        v
    } else {
        v.pointer_mut(parent).unwrap()
    };
    match target {
        Value::Object(m) => {
            m.insert(last.to_string(), new);
        }
        Value::Array(a) => a[last.parse::<usize>().unwrap()] = new,
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_requests_pass(req in valid_chat()) {
        let body = serde_json::to_vec(&req).unwrap();
        let v = validate_chat(&body, MAX, &Catalog);
        prop_assert!(v.is_ok(), "{:?}", v.err());
    }

    #[test]
    fn each_invalid_field_is_named(req in valid_chat(), (ptr, bad, param) in corruption()) {
        let mut req = req;
        set(&mut req, ptr, bad);
        let body = serde_json::to_vec(&req).unwrap();
        let err = validate_chat(&body, MAX, &Catalog).expect_err("corrupted request passed");
        let r = render(&err);
        prop_assert_eq!(r.status, 400, "{}", err);
        prop_assert_eq!(r.body.error.param.as_deref(), Some(param), "{}", err);
        prop_assert_eq!(r.body.error.kind.as_str(), "invalid_request_error");
        prop_assert!(!r.body.error.message.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for f in [validate_chat, validate_completion, validate_embedding] {
            if let Err(e) = f(&bytes, MAX, &Catalog) {
                let r = render(&e);
                prop_assert!((400..500).contains(&r.status));
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        for f in [validate_chat, validate_completion, validate_embedding] {
            if let Err(e) = f(&body, MAX, &Catalog) {
                prop_assert!((400..500).contains(&render(&e).status));
            }
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![Just("m".to_string()), Just("user".to_string()), "[a-z]{0,6}"].prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("model"),
        Just("messages"),
        Just("role"),
        Just("content"),
        Just("prompt"),
        Just("input"),
        Just("max_tokens"),
        Just("stream"),
        Just("tools"),
        Just("n"),
        Just("stop"),
        Just("type"),
        Just("text"),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn body_cap_is_checked_before_parsing() {
    let body = vec![b'{'; 2048];
    let e = validate_chat(&body, 1024, &Catalog).unwrap_err();
    assert_eq!(render(&e).status, 413);
}

#[test]
fn completions_and_embeddings_name_fields() {
    type Validator<'a> =
        &'a dyn Fn(&[u8]) -> Result<infergate::wire::openai::ValidRequest, infergate::wire::openai::ValidationError>;
    let cases: [(Validator, Value, &str); 6] = [
        (
            &|b| validate_completion(b, MAX, &Catalog),
            json!({"model": "m"}),
            "prompt",
        ),
        (
            &|b| validate_completion(b, MAX, &Catalog),
            json!({"model": "m", "prompt": ["a", ""]}),
            "prompt[1]",
        ),
        (
            &|b| validate_completion(b, MAX, &Catalog),
            json!({"model": "m", "prompt": "a", "best_of": 50}),
            "best_of",
        ),
        (
            &|b| validate_embedding(b, MAX, &Catalog),
            json!({"model": "m", "input": []}),
            "input",
        ),
        (
            &|b| validate_embedding(b, MAX, &Catalog),
            json!({"model": "m", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (
            &|b| validate_embedding(b, MAX, &Catalog),
            json!({"model": "m", "input": {"a": 1}}),
            "input",
        ),
    ];
    for (f, body, param) in cases {
        let e = f(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(render(&e).body.error.param.as_deref(), Some(param), "{body}: {e}");
    }
}
