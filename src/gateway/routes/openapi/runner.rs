//! The native runner's document: its own routes only, signed by the edge.

use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, RefOr};

use crate::wire::error::ErrorBody;
use crate::wire::openai::chat::ChatCompletionRequest;
use crate::wire::openai::completions::{CompletionRequest, EmbeddingRequest, ModelList};

use super::parts::*;
use super::schemas;

fn runner_routes() -> Routes {
    let mut r = Routes::default();
    let errors: &[&str] = &["400", "401", "404", "413", "429", "503"];
    let signed = |op: Op| op.security(&["Signature"]);
    r.add(
        HttpMethod::Post,
        "/v1/completions",
        signed(
            Op::new(
                TAG_OPENAI,
                "createCompletion",
                "Create a completion",
                "Continuous-batched generation on the runner's model, streaming or not.",
            )
            .body("CompletionRequest", true)
            .ok(
                "200",
                ResponseBuilder::new()
                    .description("The completion (JSON), or its chunks (`stream: true`).")
                    .content(JSON, json_content(schema_ref("TextCompletion")))
                    .content(SSE, sse_content("TextCompletion"))
                    .build(),
            )
            .errors(errors),
        ),
    );
    r.add(
        HttpMethod::Post,
        "/v1/chat/completions",
        signed(
            Op::new(
                TAG_OPENAI,
                "createChatCompletion",
                "Create a chat completion",
                "The model folder's chat template, then generation as for completions.",
            )
            .body("ChatCompletionRequest", true)
            .ok(
                "200",
                ResponseBuilder::new()
                    .description("The completion (JSON), or its chunks (`stream: true`).")
                    .content(JSON, json_content(schema_ref("ChatCompletion")))
                    .content(SSE, sse_content("ChatCompletionChunk"))
                    .build(),
            )
            .errors(errors),
        ),
    );
    r.add(
        HttpMethod::Post,
        "/v1/embeddings",
        signed(
            Op::new(
                TAG_OPENAI,
                "createEmbedding",
                "Create embeddings",
                "The runner's encoder model (`--embedding-model-dir`), pooled and normalized as \
                 its sentence-transformers modules say. `encoding_format` `base64` is \
                 little-endian float32.",
            )
            .body("EmbeddingRequest", true)
            .ok(
                "200",
                ResponseBuilder::new()
                    .description("The embeddings, in input order.")
                    .content(JSON, json_content(schema_ref("EmbeddingList")))
                    .build(),
            )
            .errors(errors),
        ),
    );
    r.add(
        HttpMethod::Get,
        "/v1/models",
        signed(
            Op::new(
                TAG_OPENAI,
                "listModels",
                "List models",
                "The chat model this runner serves and, when configured, its embedding model.",
            )
            .ok(
                "200",
                ResponseBuilder::new()
                    .description("The models.")
                    .content(JSON, json_content(schema_ref("ModelList")))
                    .build(),
            )
            .errors(&["401"]),
        ),
    );
    let plain = |d: &str, ct: &str, s: RefOr<Schema>| {
        ResponseBuilder::new()
            .description(d)
            .content(ct, json_content(s))
            .build()
    };
    r.add(
        HttpMethod::Get,
        "/health",
        Op::new(TAG_OPS, "health", "Liveness", "The process serves HTTP.")
            .ok("200", plain("Alive.", JSON, schema_ref("Health"))),
    );
    r.add(
        HttpMethod::Get,
        "/ready",
        Op::new(
            TAG_OPS,
            "ready",
            "Readiness",
            "200 once the model is loaded and warmed up; 503 while loading, after the engine \
             stopped, or while draining for shutdown.",
        )
        .ok("200", plain("Ready.", JSON, schema_ref("RunnerReady")))
        .ok(
            "503",
            ResponseBuilder::new()
                .description("Not ready: `loading`, `stopped` or `shutting_down`.")
                .content(JSON, json_content(schema_ref("RunnerReady")))
                .header_ref(H_RETRY_AFTER, header_ref(H_RETRY_AFTER))
                .build(),
        ),
    );
    r.add(
        HttpMethod::Get,
        "/metrics",
        Op::new(
            TAG_OPS,
            "metrics",
            "Prometheus metrics",
            "Queue depth, running batch size, TTFT and per-token latency histograms, tokens/s, \
             device memory.",
        )
        .ok(
            "200",
            plain(
                "Prometheus text format 0.0.4.",
                "text/plain",
                typed(Type::String, "Prometheus exposition text.").into(),
            ),
        ),
    );
    r.add(
        HttpMethod::Get,
        "/openapi.json",
        Op::new(
            TAG_OPS,
            "openapi",
            "This document",
            "The OpenAPI 3.1 document of the runner.",
        )
        .ok(
            "200",
            plain(
                "The document.",
                JSON,
                typed(Type::Object, "An OpenAPI 3.1 document.").into(),
            ),
        ),
    );
    r
}

/// The native runner's document: its own routes only, signed by the edge.
pub fn runner_document() -> OpenApi {
    let mut s = Schemas::default();
    s.add::<ChatCompletionRequest>()
        .add::<CompletionRequest>()
        .add::<EmbeddingRequest>()
        .add::<ModelList>()
        .add::<schemas::EmbeddingList>()
        .add::<ErrorBody>()
        .add::<schemas::ChatCompletion>()
        .add::<schemas::ChatCompletionChunk>()
        .add::<schemas::ServerSentEvent>()
        .add::<schemas::TextCompletion>()
        .add::<schemas::Health>()
        .add::<schemas::RunnerReady>();
    let mut components = ComponentsBuilder::new().schemas_from_iter(s.0);
    for (status, name, description, _) in ERRORS {
        if matches!(*status, "400" | "401" | "404" | "413" | "429" | "503") {
            let retry = matches!(*status, "429" | "503");
            let mut b = ResponseBuilder::new()
                .description(*description)
                .content(JSON, json_content(schema_ref("ErrorBody")));
            if retry {
                b = b.header_ref(H_RETRY_AFTER, header_ref(H_RETRY_AFTER));
            }
            components = components.response(*name, b.build());
        }
    }
    for (name, h) in headers() {
        if name == H_RETRY_AFTER {
            components = components.header(name, h);
        }
    }
    components = components.security_scheme(
        "Signature",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-infergate-signature",
            "HMAC-SHA256 by the edge: `v1=<hex>` over `v1\\n<timestamp>\\n<METHOD>\\n<path>\\n<hex \
             SHA-256 of the body>`, with the timestamp (Unix ms) in `x-infergate-timestamp`. \
             Refused outside the replay window. Not checked in local dev mode.",
        ))),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("infergate runner")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The native ONNX Runtime runner: OpenAI-compatible generation for the edge's \
                     runner pools. Errors are OpenAI-shaped.",
                ))
                .build(),
        )
        .paths(runner_routes().paths())
        .components(Some(components.build()))
        .tags(Some([
            TagBuilder::new()
                .name(TAG_OPENAI)
                .description(Some("OpenAI-compatible generation, signed by the edge."))
                .build(),
            TagBuilder::new()
                .name(TAG_OPS)
                .description(Some("Health, readiness, metrics and this document."))
                .build(),
        ]))
        .build()
}
