//! The edge's document: every route of `gateway::Gateway`.

use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, RefOr};

use crate::gateway::routes::keys::{CreateKey, RotateKey};
use crate::wire::error::ErrorBody;
use crate::wire::openai::chat::ChatCompletionRequest;
use crate::wire::openai::completions::{CompletionRequest, EmbeddingRequest, ModelList};

use super::parts::*;
use super::schemas;

fn edge_routes() -> Routes {
    let mut r = Routes::default();
    let mut cache_and_id = cache_params();
    cache_and_id.push(request_id_param());

    r.add(
        HttpMethod::Post,
        "/v1/chat/completions",
        Op::new(
            TAG_OPENAI,
            "createChatCompletion",
            "Create a chat completion",
            "OpenAI's Chat Completions API. The request is validated, authenticated, rate-limited, \
             looked up in the cache and sent along the model's fallback chain. With `stream: true` \
             the answer is relayed as server-sent events chunk by chunk; otherwise it is the fold \
             of the same stream. Fields the gateway does not model are forwarded unchanged to \
             OpenAI-compatible upstreams.",
        )
        .body("ChatCompletionRequest", true)
        .params(cache_and_id.clone())
        .ok(
            "200",
            api_success(
                "The completion (JSON), or its chunks (`stream: true`).",
                vec![
                    (JSON, json_content(schema_ref("ChatCompletion"))),
                    (SSE, sse_content("ChatCompletionChunk")),
                ],
                &[H_CACHE, H_UPSTREAM],
            ),
        )
        .errors(API_ERRORS)
        .api_key(),
    );
    r.add(
        HttpMethod::Post,
        "/v1/completions",
        Op::new(
            TAG_OPENAI,
            "createCompletion",
            "Create a completion (legacy)",
            "OpenAI's legacy Completions API, streaming or not. `prompt` is a string, strings, \
             token ids or arrays of token ids.",
        )
        .body("CompletionRequest", true)
        .params(cache_and_id.clone())
        .ok(
            "200",
            api_success(
                "The completion (JSON), or its chunks (`stream: true`).",
                vec![
                    (JSON, json_content(schema_ref("TextCompletion"))),
                    (SSE, sse_content("TextCompletion")),
                ],
                &[H_CACHE, H_UPSTREAM],
            ),
        )
        .errors(API_ERRORS)
        .api_key(),
    );
    r.add(
        HttpMethod::Post,
        "/v1/embeddings",
        Op::new(
            TAG_OPENAI,
            "createEmbedding",
            "Create embeddings",
            "OpenAI's Embeddings API: string, string-array and token inputs. The upstream's \
             answer is passed through.",
        )
        .body("EmbeddingRequest", true)
        .params(cache_and_id)
        .ok(
            "200",
            api_success(
                "The embeddings.",
                vec![(JSON, json_content(schema_ref("EmbeddingList")))],
                &[H_CACHE, H_UPSTREAM],
            ),
        )
        .errors(API_ERRORS)
        .api_key(),
    );
    r.add(
        HttpMethod::Get,
        "/v1/models",
        Op::new(
            TAG_OPENAI,
            "listModels",
            "List models",
            "The configured models this key may use.",
        )
        .params(vec![request_id_param()])
        .ok("200", plain_success("The models.", JSON, schema_ref("ModelList")))
        .errors(&["401", "503"])
        .api_key(),
    );
    let mut messages = Op::new(
        TAG_ANTHROPIC,
        "createMessage",
        "Create a message (Anthropic)",
        "Anthropic's Messages API for Anthropic SDK clients (`x-api-key` works as well as \
         `Authorization: Bearer`). The request is translated to a chat request and goes through \
         the same pipeline as `POST /v1/chat/completions` (without the response cache); the \
         answer and the errors are Anthropic-shaped. With `stream: true` the answer is \
         Anthropic's event stream (`message_start`, `content_block_delta`, ..., `message_stop`).",
    )
    .body("AnthropicMessagesRequest", true)
    .params(vec![
        request_id_param(),
        header_param(
            "anthropic-version",
            Type::String,
            "Anthropic API version, e.g. `2023-06-01`; accepted and not needed.",
        ),
    ])
    .ok(
        "200",
        api_success(
            "The message (JSON), or its events (`stream: true`).",
            vec![
                (JSON, json_content(schema_ref("AnthropicMessage"))),
                (
                    SSE,
                    sse_events(
                        "Anthropic's event sequence: `message_start`, `content_block_start`, \
                         `content_block_delta`, `content_block_stop`, `message_delta`, \
                         `message_stop`; an error after the first byte is an `error` event."
                            .to_string(),
                    ),
                ),
            ],
            &[H_UPSTREAM],
        ),
    )
    .api_key();
    for (status, _, description, retry_after) in ERRORS {
        if API_ERRORS.contains(status) {
            let upstream = matches!(*status, "502" | "503" | "504");
            let mut b = ResponseBuilder::new()
                .description(*description)
                .content(JSON, json_content(schema_ref("AnthropicError")))
                .header_ref(H_REQUEST_ID, header_ref(H_REQUEST_ID));
            if *retry_after {
                b = b.header_ref(H_RETRY_AFTER, header_ref(H_RETRY_AFTER));
            }
            if upstream {
                b = b.header_ref(H_UPSTREAM, header_ref(H_UPSTREAM));
            }
            messages = messages.ok(status, b.build());
        }
    }
    r.add(HttpMethod::Post, "/v1/messages", messages);

    r.add(
        HttpMethod::Post,
        "/v1/responses",
        Op::new(
            TAG_OPENAI,
            "createResponse",
            "Create a response",
            "OpenAI's Responses API, served over the same pipeline as chat: translated to a chat \
             request for every upstream kind, authenticated, rate-limited, routed and accounted \
             the same way. With `stream: true` the answer is the typed events (`response.created`, \
             `response.output_text.delta`, ..., `response.completed`); a failure after the first \
             byte is `response.failed`. With `store` (default) it is kept for 30 days.",
        )
        .body("ResponsesCreateRequest", true)
        .params(vec![request_id_param()])
        .ok(
            "200",
            api_success(
                "The Response (JSON), or its events (`stream: true`).",
                vec![
                    (JSON, json_content(schema_ref("ResponseObject"))),
                    (
                        SSE,
                        sse_events("Typed Responses events, each with `type` and `sequence_number`.".to_string()),
                    ),
                ],
                &[H_UPSTREAM],
            ),
        )
        .errors(API_ERRORS)
        .api_key(),
    );
    let stored = |id: &'static str, summary: &'static str, description: &'static str| {
        Op::new(TAG_OPENAI, id, summary, description)
            .params(vec![
                path_param("id", "The Response id (`resp_...`)."),
                request_id_param(),
            ])
            .errors(&["401", "404", "503"])
            .api_key()
    };
    r.add(
        HttpMethod::Get,
        "/v1/responses/{id}",
        stored(
            "getResponse",
            "Get a stored response",
            "A Response created with `store`; another tenant's id is a 404.",
        )
        .ok(
            "200",
            plain_success("The Response.", JSON, schema_ref("ResponseObject")),
        ),
    );
    r.add(
        HttpMethod::Delete,
        "/v1/responses/{id}",
        stored(
            "deleteResponse",
            "Delete a stored response",
            "Deletes a stored Response; it can no longer be read or continued.",
        )
        .ok("200", plain_success("Deleted.", JSON, schema_ref("ResponseDeleted"))),
    );
    r.add(
        HttpMethod::Get,
        "/v1/responses/{id}/input_items",
        stored(
            "listResponseInputItems",
            "List a stored response's input items",
            "The input items of a stored Response, each with an id, newest first unless \
             `order=asc`; while `has_more`, the next page is `after=<last_id>`.",
        )
        .params(vec![
            query_param("limit", false, Type::Integer, "Items per page, 1 to 100 (default 20)."),
            query_param("order", false, Type::String, "`desc` (default) or `asc`."),
            query_param("after", false, Type::String, "The `last_id` of the previous page."),
        ])
        .errors(&["400"])
        .ok("200", plain_success("The items.", JSON, schema_ref("ResponseItemList"))),
    );

    r.add(
        HttpMethod::Post,
        "/v1/tasks",
        Op::new(
            TAG_TASKS,
            "createTask",
            "Submit an async task",
            "Admits a chat completion like `POST /v1/chat/completions`, stores a `queued` task \
             and runs it after the response. Poll `GET /v1/tasks/{id}`, or pass `webhook_url` to \
             be called once with the finished task, signed with `x-infergate-signature`.",
        )
        .body("TaskRequest", true)
        .params(vec![request_id_param()])
        .ok(
            "202",
            with_id_links(
                api_success("The queued task.", vec![(JSON, json_content(schema_ref("Task")))], &[]),
                &["getTask"],
            ),
        )
        .errors(&["400", "401", "403", "404", "413", "429", "503"])
        .api_key(),
    );
    r.add(
        HttpMethod::Get,
        "/v1/tasks/{id}",
        Op::new(
            TAG_TASKS,
            "getTask",
            "Get a task",
            "The task's status and, once finished, its result or error. Only the key that \
             created a task can read it; other keys get 404.",
        )
        .params(vec![path_param("id", "The task id (`task_...`)."), request_id_param()])
        .ok("200", plain_success("The task.", JSON, schema_ref("Task")))
        .errors(&["401", "404", "503"])
        .api_key(),
    );

    r.add(
        HttpMethod::Get,
        "/health",
        Op::new(
            TAG_OPS,
            "health",
            "Liveness",
            "Answers 200 whenever the gateway runs, even with a broken configuration.",
        )
        .ok("200", plain_success("Alive.", JSON, schema_ref("Health"))),
    );
    r.add(
        HttpMethod::Get,
        "/ready",
        Op::new(
            TAG_OPS,
            "ready",
            "Readiness",
            "200 once the configuration is loaded and valid; 503 naming the config path at \
             fault otherwise.",
        )
        .ok("200", plain_success("Ready.", JSON, schema_ref("Ready")))
        .errors(&["503"]),
    );
    r.add(
        HttpMethod::Get,
        "/openapi.json",
        Op::new(
            TAG_OPS,
            "openapi",
            "This document",
            "The OpenAPI 3.1 document of the edge.",
        )
        .ok(
            "200",
            plain_success(
                "The document.",
                JSON,
                typed(Type::Object, "An OpenAPI 3.1 document.").into(),
            ),
        ),
    );
    r.add(
        HttpMethod::Get,
        "/docs",
        Op::new(
            TAG_OPS,
            "docs",
            "API reference (HTML)",
            "A self-contained page that renders this document; it loads nothing but \
             `/openapi.json`.",
        )
        .ok(
            "200",
            plain_success("The page.", "text/html", typed(Type::String, "HTML").into()),
        ),
    );

    admin_routes(&mut r);
    r
}

fn admin_routes(r: &mut Routes) {
    let key_id = || path_param("id", "The key id (`key_...`).");
    r.add(
        HttpMethod::Post,
        "/admin/keys",
        Op::new(
            TAG_ADMIN,
            "createKey",
            "Create an API key",
            "The response holds the plaintext key; this is the only time it is shown. Only its \
             SHA-256 is stored.",
        )
        .body("CreateKey", true)
        .ok(
            "201",
            with_id_links(
                plain_success("The new key.", JSON, schema_ref("ApiKeyWithSecret")),
                &["getKey", "revokeKey", "rotateKey"],
            ),
        )
        .errors(&["400", "401", "404", "413", "503"])
        .security(&["AdminToken"]),
    );
    r.add(
        HttpMethod::Get,
        "/admin/keys",
        Op::new(
            TAG_ADMIN,
            "listKeys",
            "List API keys",
            "Metadata and a four-character hint per key, never the key; one page in id \
             order. While `has_more`, the next page is `after=<last_id>`.",
        )
        .params(vec![
            query_param("limit", false, Type::Integer, "Keys per page, 1 to 500 (default 100)."),
            query_param("after", false, Type::String, "The `last_id` of the previous page."),
        ])
        .ok("200", plain_success("The keys.", JSON, schema_ref("ApiKeyList")))
        .errors(&["400", "401", "404", "503"])
        .security(&["AdminToken"]),
    );
    r.add(
        HttpMethod::Get,
        "/admin/keys/{id}",
        Op::new(TAG_ADMIN, "getKey", "Get an API key", "One key's metadata.")
            .params(vec![key_id()])
            .ok("200", plain_success("The key.", JSON, schema_ref("ApiKey")))
            .errors(ADMIN_ERRORS)
            .security(&["AdminToken"]),
    );
    r.add(
        HttpMethod::Delete,
        "/admin/keys/{id}",
        Op::new(
            TAG_ADMIN,
            "revokeKey",
            "Revoke an API key",
            "At once in this isolate; within `auth.cache_ttl_ms` (plus KV propagation) elsewhere.",
        )
        .params(vec![key_id()])
        .ok("200", plain_success("The revoked key.", JSON, schema_ref("ApiKey")))
        .errors(ADMIN_ERRORS)
        .security(&["AdminToken"]),
    );
    r.add(
        HttpMethod::Patch,
        "/admin/keys/{id}",
        Op::new(
            TAG_ADMIN,
            "updateKey",
            "Set an API key's spend budgets",
            "`daily_budget_usd` and `monthly_budget_usd`: a number sets the budget, `null` \
             removes it. Once a budget is spent the key's requests are `429 insufficient_quota` \
             until the period ends.",
        )
        .params(vec![key_id()])
        .body("UpdateKey", true)
        .ok("200", plain_success("The key.", JSON, schema_ref("ApiKey")))
        .errors(&["400", "401", "404", "413", "503"])
        .security(&["AdminToken"]),
    );
    r.add(
        HttpMethod::Post,
        "/admin/keys/{id}/rotate",
        Op::new(
            TAG_ADMIN,
            "rotateKey",
            "Rotate an API key",
            "A new key for the same id; the old one keeps working for `grace_seconds` \
             (default 3600). An empty body takes the default.",
        )
        .params(vec![key_id()])
        .body("RotateKey", false)
        .ok(
            "200",
            plain_success("The new key.", JSON, schema_ref("ApiKeyWithSecret")),
        )
        .errors(&["400", "401", "404", "413", "503"])
        .security(&["AdminToken"]),
    );
    r.add(
        HttpMethod::Get,
        "/admin/usage",
        Op::new(
            TAG_ADMIN,
            "getUsage",
            "Usage per hour",
            "Tokens, cost, requests, cache hits and errors of one key per hour. `from` and `to` \
             are Unix seconds (default: the last 24 hours; at most 31 days).",
        )
        .params(vec![
            query_param("key_id", true, Type::String, "The key id."),
            query_param("from", false, Type::Integer, "Start, Unix seconds."),
            query_param("to", false, Type::Integer, "End, Unix seconds."),
        ])
        .ok("200", plain_success("The usage.", JSON, schema_ref("UsageReport")))
        .errors(&["400", "401", "404", "503"])
        .security(&["AdminToken"]),
    );
    r.add(
        HttpMethod::Get,
        "/admin/spend",
        Op::new(
            TAG_ADMIN,
            "getSpend",
            "Spend against budgets",
            "USD spent this UTC day and calendar month by one key (`key_id`) or one tenant \
             (`tenant`), with its budgets. Exactly one of the two.",
        )
        .params(vec![
            query_param("key_id", false, Type::String, "A key id."),
            query_param("tenant", false, Type::String, "A tenant."),
        ])
        .ok("200", plain_success("The spend.", JSON, schema_ref("SpendReport")))
        .errors(&["400", "401", "404", "503"])
        .security(&["AdminToken"]),
    );
    r.add(
        HttpMethod::Get,
        "/admin/stats",
        Op::new(
            TAG_ADMIN,
            "getStats",
            "Isolate statistics",
            "This isolate's counter and cache statistics.",
        )
        .ok("200", plain_success("The statistics.", JSON, schema_ref("Stats")))
        .errors(&["401", "404"])
        .security(&["AdminToken"]),
    );
}

fn edge_schemas() -> Vec<(String, RefOr<Schema>)> {
    let mut s = Schemas::default();
    s.add::<ChatCompletionRequest>()
        .add::<CompletionRequest>()
        .add::<EmbeddingRequest>()
        .add::<ModelList>()
        .add::<ErrorBody>()
        .add::<schemas::ChatCompletion>()
        .add::<schemas::ChatCompletionChunk>()
        .add::<schemas::ServerSentEvent>()
        .add::<schemas::TextCompletion>()
        .add::<schemas::EmbeddingList>()
        .add::<schemas::AnthropicMessagesRequest>()
        .add::<schemas::AnthropicMessage>()
        .add::<schemas::AnthropicError>()
        .add::<schemas::ResponsesCreateRequest>()
        .add::<schemas::ResponseObject>()
        .add::<schemas::ResponseItemList>()
        .add::<schemas::ResponseDeleted>()
        .add::<schemas::TaskRequest>()
        .add::<schemas::Task>()
        .add::<schemas::Health>()
        .add::<schemas::Ready>()
        .add::<CreateKey>()
        .add::<RotateKey>()
        .add::<schemas::ApiKey>()
        .add::<schemas::ApiKeyWithSecret>()
        .add::<schemas::ApiKeyList>()
        .add::<schemas::UsageReport>()
        .add::<schemas::UpdateKey>()
        .add::<schemas::SpendReport>()
        .add::<schemas::SpendPeriod>()
        .add::<schemas::Stats>();
    s.0
}

fn security_schemes() -> Vec<(&'static str, SecurityScheme)> {
    vec![
        (
            "ApiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An infergate API key (`POST /admin/keys`): `Authorization: Bearer <key>`.",
                    ))
                    .build(),
            ),
        ),
        (
            "ApiKeyHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "The same API key in `x-api-key`, as Anthropic-style clients send it.",
            ))),
        ),
        (
            "AdminToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token: the secret named by `admin.token_secret` (default \
                         `INFERGATE_ADMIN_TOKEN`). Without it the admin API answers 404.",
                    ))
                    .build(),
            ),
        ),
    ]
}

/// The edge's document (every route of `gateway::Gateway`).
pub fn edge_document() -> OpenApi {
    let mut components = ComponentsBuilder::new().schemas_from_iter(edge_schemas());
    for (status, name, description, retry_after) in ERRORS {
        let upstream = matches!(*status, "502" | "503" | "504");
        components = components.response(*name, error_response(description, *retry_after, upstream));
    }
    for (name, h) in headers() {
        components = components.header(name, h);
    }
    for (name, s) in security_schemes() {
        components = components.security_scheme(name, s);
    }
    let tags = [
        (
            TAG_OPENAI,
            "OpenAI-compatible routes: point an OpenAI SDK at `<edge>/v1`.",
        ),
        (TAG_ANTHROPIC, "Anthropic-compatible routes for Anthropic SDKs."),
        (TAG_TASKS, "Submit-then-poll jobs with optional signed webhooks."),
        (TAG_ADMIN, "Keys, usage and statistics; admin token only."),
        (TAG_OPS, "Health, readiness and this documentation."),
    ];
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("infergate edge")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "An edge inference proxy: OpenAI- and Anthropic-compatible routes in front of \
                     upstream providers and regional runner pools. Errors are OpenAI-shaped: \
                     `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`; every response \
                     carries `x-request-id`.",
                ))
                .build(),
        )
        .paths(edge_routes().paths())
        .components(Some(components.build()))
        .tags(Some(
            tags.map(|(n, d)| TagBuilder::new().name(n).description(Some(d)).build()),
        ))
        .build()
}
