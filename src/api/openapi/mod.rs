//! The OpenAPI 3.1 documents of the edge and of the native runner, built
//! from the wire types' `ToSchema` derives.
//!
//! # Layout
//! - `mod.rs` (this file): routes, parameters, shared responses, security.
//! - `schemas`: response shapes that exist only as JSON values in the code.
//!
//! This module is compiled for the unit tests and with the `openapi`
//! feature only. The wasm builds serve the committed output
//! ([`crate::api::OPENAPI_JSON`], `src/api/openapi.json`) so they carry
//! no utoipa; the unit test `committed_documents_are_fresh` regenerates
//! both documents and fails when a committed file differs, and
//! `make openapi` rewrites them.

mod schemas;

use serde_json::{json, Map, Value};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ComponentsBuilder, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{Content, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required};
use utoipa::ToSchema;

use crate::api::chat::ChatCompletionRequest;
use crate::api::completions::{CompletionRequest, EmbeddingRequest, ModelList};
use crate::api::error::ErrorBody;
use crate::gateway::keys::{CreateKey, RotateKey};

const TAG_OPENAI: &str = "OpenAI API";
const TAG_ANTHROPIC: &str = "Anthropic API";
const TAG_TASKS: &str = "Tasks";
const TAG_ADMIN: &str = "Admin";
const TAG_OPS: &str = "Operations";

const JSON: &str = "application/json";
const SSE: &str = "text/event-stream";

/// Headers every edge response carries or may carry, by component name.
const H_REQUEST_ID: &str = "x-request-id";
const H_CACHE: &str = "x-infergate-cache";
const H_UPSTREAM: &str = "x-infergate-upstream";
const H_RETRY_AFTER: &str = "Retry-After";
const RATE_LIMIT_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// Collects a type's schema and every schema it refers to.
#[derive(Default)]
struct Schemas(Vec<(String, RefOr<Schema>)>);

impl Schemas {
    fn add<T: ToSchema>(&mut self) -> &mut Self {
        self.0.push((T::name().into_owned(), T::schema()));
        T::schemas(&mut self.0);
        self
    }
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    Ref::from_schema_name(name).into()
}

fn typed(t: Type, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(t)
        .description(Some(description))
        .build()
}

fn header_ref(name: &str) -> Ref {
    Ref::new(format!("#/components/headers/{name}"))
}

fn response_ref(name: &str) -> RefOr<Response> {
    Ref::from_response_name(name).into()
}

fn json_content(schema: RefOr<Schema>) -> Content {
    Content::new(Some(schema))
}

/// A `text/event-stream` body: OpenAPI 3.1 gives the schema of one event.
fn sse_events(description: String) -> Content {
    let event = utoipa::openapi::schema::RefBuilder::new()
        .ref_location_from_schema_name("ServerSentEvent")
        .description(Some(description))
        .build();
    Content::new(Some(RefOr::<Schema>::Ref(event)))
}

/// An OpenAI-shaped stream of `chunk_schema` objects.
fn sse_content(chunk_schema: &str) -> Content {
    sse_events(format!(
        "One `data: <{chunk_schema}>` event per upstream chunk as it arrives, then `data: [DONE]`. \
         An error after the first byte is one `data: <ErrorBody>` event, then the stream closes."
    ))
}

/// What a request header parameter is for.
fn header_param(name: &str, t: Type, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(t)))
        .build()
}

fn path_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn query_param(name: &str, required: bool, t: Type, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(t)))
        .build()
}

fn request_id_param() -> utoipa::openapi::path::Parameter {
    header_param(
        H_REQUEST_ID,
        Type::String,
        "Your request id, echoed back and logged when it is 1 to 128 characters of \
         `A-Z a-z 0-9 - _ . :`; otherwise the gateway mints one.",
    )
}

fn cache_params() -> Vec<utoipa::openapi::path::Parameter> {
    vec![
        header_param(
            H_CACHE,
            Type::String,
            "`no-store` bypasses the response cache (no read, no write).",
        ),
        header_param(
            "x-infergate-cache-ttl",
            Type::Integer,
            "Cache this request's answer for this many seconds even though it is not \
             deterministic (deterministic requests, `temperature: 0` or a `seed`, are cached \
             by default). At least 60 on Workers KV.",
        ),
    ]
}

/// A success response with the headers the API routes add: the request
/// id, `extra`, and the rate-limit headers.
fn api_success(description: &str, content: Vec<(&str, Content)>, extra: &[&str]) -> Response {
    let mut b = ResponseBuilder::new().description(description);
    for (ct, c) in content {
        b = b.content(ct, c);
    }
    for h in [H_REQUEST_ID].iter().chain(extra).chain(RATE_LIMIT_HEADERS.iter()) {
        b = b.header_ref(*h, header_ref(h));
    }
    b.build()
}

/// `{id}` of the operations in `targets` comes from this response's `id`
/// (OpenAPI links, which stateful testing follows).
fn with_id_links(mut r: Response, targets: &[&str]) -> Response {
    for op in targets {
        let link = utoipa::openapi::link::LinkBuilder::new()
            .operation_id(*op)
            .parameter("id", "$response.body#/id")
            .description(format!("`id` is the `{{id}}` of `{op}`."))
            .build();
        r.links.insert((*op).to_string(), link.into());
    }
    r
}

fn plain_success(description: &str, ct: &str, schema: RefOr<Schema>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(ct, json_content(schema))
        .header_ref(H_REQUEST_ID, header_ref(H_REQUEST_ID))
        .build()
}

/// Shared error responses, by status.
const ERRORS: &[(&str, &str, &str, bool)] = &[
    (
        "400",
        "BadRequest",
        "Invalid request: malformed JSON, a wrong type or an out-of-range value. `param` names the field \
         (`messages[0].role`).",
        false,
    ),
    (
        "401",
        "Unauthorized",
        "No key, an unknown, revoked or expired key (`code: invalid_api_key`), or a wrong admin token.",
        false,
    ),
    (
        "403",
        "Forbidden",
        "The key may not use this model (`code: model_not_allowed`).",
        false,
    ),
    (
        "404",
        "NotFound",
        "Unknown model (`code: model_not_found`), task, key or URL; the admin API when it is not enabled.",
        false,
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body is over `limits.max_body_bytes` (`code: request_too_large`).",
        false,
    ),
    (
        "429",
        "RateLimited",
        "Over the key's requests or tokens per minute, its monthly budget, or the upstream's own limit. \
         Wait `Retry-After` seconds.",
        true,
    ),
    (
        "502",
        "BadGateway",
        "The upstream failed before the first byte, answered an error, or ended its stream early.",
        false,
    ),
    (
        "503",
        "Unavailable",
        "No upstream is available (open circuits), the key-value store is down, or the gateway's \
         configuration is invalid (`code: gateway_misconfigured`). Retry after `Retry-After` seconds.",
        true,
    ),
    (
        "504",
        "GatewayTimeout",
        "The upstream did not start answering within `limits.first_byte_timeout_ms`.",
        false,
    ),
];

fn error_response(description: &str, retry_after: bool, upstream: bool) -> Response {
    let mut b = ResponseBuilder::new()
        .description(description)
        .content(JSON, json_content(schema_ref("ErrorBody")))
        .header_ref(H_REQUEST_ID, header_ref(H_REQUEST_ID));
    if retry_after {
        b = b.header_ref(H_RETRY_AFTER, header_ref(H_RETRY_AFTER));
    }
    if upstream {
        b = b.header_ref(H_UPSTREAM, header_ref(H_UPSTREAM));
    }
    b.build()
}

/// An operation with its shared parts filled in.
struct Op {
    b: OperationBuilder,
}

impl Op {
    fn new(tag: &str, id: &str, summary: &str, description: &str) -> Op {
        Op {
            b: OperationBuilder::new()
                .tag(tag)
                .operation_id(Some(id))
                .summary(Some(summary))
                .description(Some(description)),
        }
    }

    fn body(mut self, schema: &str, required: bool) -> Op {
        let body = RequestBodyBuilder::new()
            .required(Some(if required { Required::True } else { Required::False }))
            .content(JSON, json_content(schema_ref(schema)))
            .build();
        self.b = self.b.request_body(Some(body));
        self
    }

    fn params(mut self, params: Vec<utoipa::openapi::path::Parameter>) -> Op {
        for p in params {
            self.b = self.b.parameter(p);
        }
        self
    }

    fn ok(mut self, status: &str, response: Response) -> Op {
        self.b = self.b.response(status, response);
        self
    }

    /// Shared (OpenAI-shaped) error responses by status.
    fn errors(mut self, statuses: &[&str]) -> Op {
        for s in statuses {
            if let Some((_, name, _, _)) = ERRORS.iter().find(|e| e.0 == *s) {
                self.b = self.b.response(*s, response_ref(name));
            }
        }
        self
    }

    fn security(mut self, schemes: &[&str]) -> Op {
        for s in schemes {
            self.b = self
                .b
                .security(SecurityRequirement::new::<&str, [&str; 0], &str>(s, []));
        }
        self
    }

    fn api_key(self) -> Op {
        self.security(&["ApiKey", "ApiKeyHeader"])
    }

    fn build(self) -> Operation {
        self.b.build()
    }
}

/// `PathItem`s keyed by path, several methods per path.
#[derive(Default)]
struct Routes(Vec<(String, HttpMethod, Operation)>);

impl Routes {
    fn add(&mut self, method: HttpMethod, path: &str, op: Op) {
        self.0.push((path.to_string(), method, op.build()));
    }

    fn paths(self) -> Paths {
        let mut paths = Paths::new();
        for (path, method, op) in self.0 {
            paths.add_path_operation(path, vec![method], op);
        }
        paths
    }
}

const API_ERRORS: &[&str] = &["400", "401", "403", "404", "413", "429", "502", "503", "504"];
const ADMIN_ERRORS: &[&str] = &["401", "404", "503"];

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
            "Metadata and a four-character hint per key, never the key.",
        )
        .ok("200", plain_success("The keys.", JSON, schema_ref("ApiKeyList")))
        .errors(ADMIN_ERRORS)
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
             are Unix seconds (default: the last 24 hours; at most 92 days).",
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
        .add::<schemas::Stats>();
    s.0
}

fn headers() -> Vec<(&'static str, Header)> {
    let h = |t: Type, d: &str| {
        let mut h = Header::new(ObjectBuilder::new().schema_type(t));
        h.description = Some(d.to_string());
        h
    };
    vec![
        (
            H_REQUEST_ID,
            h(
                Type::String,
                "The request id (yours if it was sane, else minted); in every log line.",
            ),
        ),
        (
            H_CACHE,
            h(Type::String, "`HIT`, `MISS` or `BYPASS`: what the response cache did."),
        ),
        (
            H_UPSTREAM,
            h(
                Type::String,
                "The upstream that served the request, or that failed last.",
            ),
        ),
        (H_RETRY_AFTER, h(Type::Integer, "Seconds to wait before retrying.")),
        (
            "x-ratelimit-limit-requests",
            h(Type::Integer, "The key's requests per minute (when it has a limit)."),
        ),
        (
            "x-ratelimit-remaining-requests",
            h(Type::Integer, "Requests left in this minute."),
        ),
        (
            "x-ratelimit-reset-requests",
            h(Type::String, "Until the request window resets, e.g. `45s`."),
        ),
        (
            "x-ratelimit-limit-tokens",
            h(Type::Integer, "The key's tokens per minute (when it has a limit)."),
        ),
        (
            "x-ratelimit-remaining-tokens",
            h(
                Type::Integer,
                "Tokens left in this minute after this request's reservation.",
            ),
        ),
        (
            "x-ratelimit-reset-tokens",
            h(Type::String, "Until the token window resets, e.g. `45s`."),
        ),
    ]
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
        HttpMethod::Get,
        "/v1/models",
        signed(
            Op::new(
                TAG_OPENAI,
                "listModels",
                "List models",
                "The one model this runner serves.",
            )
            .ok(
                "200",
                ResponseBuilder::new()
                    .description("The model.")
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
        .add::<ModelList>()
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

/// Serialise with object keys sorted at every level and two-space
/// indentation, so the output is byte-stable whatever serde_json features
/// the build unifies (`preserve_order` keeps insertion order otherwise).
pub fn to_canonical_json(doc: &OpenApi) -> String {
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(String, Value)> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let mut out = Map::new();
                for (k, v) in entries {
                    out.insert(k, sorted(v));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    let value = serde_json::to_value(doc).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let mut s = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, committed: &str, generated: String) {
        if std::env::var_os("INFERGATE_UPDATE_OPENAPI").is_some() {
            let full = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/");
            std::fs::write(format!("{full}{path}"), &generated).expect("write the document");
            return;
        }
        assert!(
            committed == generated,
            "src/api/{path} is stale: run `make openapi` and commit the result"
        );
    }

    #[test]
    fn committed_documents_are_fresh() {
        check(
            "openapi.json",
            crate::api::OPENAPI_JSON,
            to_canonical_json(&edge_document()),
        );
        check(
            "openapi-runner.json",
            crate::api::RUNNER_OPENAPI_JSON,
            to_canonical_json(&runner_document()),
        );
    }

    #[test]
    fn every_reference_resolves() {
        for doc in [edge_document(), runner_document()] {
            let v = serde_json::to_value(&doc).unwrap();
            let mut refs = Vec::new();
            collect_refs(&v, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                let pointer = r.trim_start_matches('#');
                assert!(v.pointer(pointer).is_some(), "dangling $ref {r}");
            }
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn documents_every_edge_route() {
        let v = serde_json::to_value(edge_document()).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        for (path, method) in [
            ("/v1/chat/completions", "post"),
            ("/v1/completions", "post"),
            ("/v1/embeddings", "post"),
            ("/v1/models", "get"),
            ("/v1/messages", "post"),
            ("/v1/tasks", "post"),
            ("/v1/tasks/{id}", "get"),
            ("/health", "get"),
            ("/ready", "get"),
            ("/openapi.json", "get"),
            ("/docs", "get"),
            ("/admin/keys", "post"),
            ("/admin/keys", "get"),
            ("/admin/keys/{id}", "get"),
            ("/admin/keys/{id}", "delete"),
            ("/admin/keys/{id}/rotate", "post"),
            ("/admin/usage", "get"),
            ("/admin/stats", "get"),
        ] {
            assert!(
                v["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
        let err = &v["components"]["schemas"]["ErrorDetail"];
        for field in ["message", "type", "param", "code"] {
            assert!(err["properties"][field].is_object(), "ErrorDetail lacks {field}");
            assert!(err["required"].as_array().unwrap().iter().any(|r| r == field));
        }
        let rate_limited = &v["components"]["responses"]["RateLimited"];
        assert!(rate_limited["headers"]["Retry-After"].is_object());
    }
}
