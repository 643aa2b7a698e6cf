//! The building blocks both documents share: tags, media types, headers,
//! parameters, the shared error responses, and small builders for
//! operations and paths.

use utoipa::openapi::header::Header;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, Paths, Ref, RefOr, Required};
use utoipa::ToSchema;

pub(super) const TAG_OPENAI: &str = "OpenAI API";
pub(super) const TAG_ANTHROPIC: &str = "Anthropic API";
pub(super) const TAG_TASKS: &str = "Tasks";
pub(super) const TAG_ADMIN: &str = "Admin";
pub(super) const TAG_OPS: &str = "Operations";

pub(super) const JSON: &str = "application/json";
pub(super) const SSE: &str = "text/event-stream";

/// Headers every edge response carries or may carry, by component name.
pub(super) const H_REQUEST_ID: &str = "x-request-id";
pub(super) const H_CACHE: &str = "x-infergate-cache";
pub(super) const H_UPSTREAM: &str = "x-infergate-upstream";
pub(super) const H_RETRY_AFTER: &str = "Retry-After";
pub(super) const RATE_LIMIT_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// Collects a type's schema and every schema it refers to.
#[derive(Default)]
pub(super) struct Schemas(pub(super) Vec<(String, RefOr<Schema>)>);

impl Schemas {
    pub(super) fn add<T: ToSchema>(&mut self) -> &mut Self {
        self.0.push((T::name().into_owned(), T::schema()));
        T::schemas(&mut self.0);
        self
    }
}

pub(super) fn schema_ref(name: &str) -> RefOr<Schema> {
    Ref::from_schema_name(name).into()
}

pub(super) fn typed(t: Type, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(t)
        .description(Some(description))
        .build()
}

pub(super) fn header_ref(name: &str) -> Ref {
    Ref::new(format!("#/components/headers/{name}"))
}

pub(super) fn response_ref(name: &str) -> RefOr<Response> {
    Ref::from_response_name(name).into()
}

pub(super) fn json_content(schema: RefOr<Schema>) -> Content {
    Content::new(Some(schema))
}

/// A `text/event-stream` body: OpenAPI 3.1 gives the schema of one event.
pub(super) fn sse_events(description: String) -> Content {
    let event = utoipa::openapi::schema::RefBuilder::new()
        .ref_location_from_schema_name("ServerSentEvent")
        .description(Some(description))
        .build();
    Content::new(Some(RefOr::<Schema>::Ref(event)))
}

/// An OpenAI-shaped stream of `chunk_schema` objects.
pub(super) fn sse_content(chunk_schema: &str) -> Content {
    sse_events(format!(
        "One `data: <{chunk_schema}>` event per upstream chunk as it arrives, then `data: [DONE]`. \
         An error after the first byte is one `data: <ErrorBody>` event, then the stream closes."
    ))
}

/// What a request header parameter is for.
pub(super) fn header_param(name: &str, t: Type, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(t)))
        .build()
}

pub(super) fn path_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

pub(super) fn query_param(name: &str, required: bool, t: Type, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(t)))
        .build()
}

pub(super) fn request_id_param() -> utoipa::openapi::path::Parameter {
    header_param(
        H_REQUEST_ID,
        Type::String,
        "Your request id, echoed back and logged when it is 1 to 128 characters of \
         `A-Z a-z 0-9 - _ . :`; otherwise the gateway mints one.",
    )
}

pub(super) fn cache_params() -> Vec<utoipa::openapi::path::Parameter> {
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
pub(super) fn api_success(description: &str, content: Vec<(&str, Content)>, extra: &[&str]) -> Response {
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
pub(super) fn with_id_links(mut r: Response, targets: &[&str]) -> Response {
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

pub(super) fn plain_success(description: &str, ct: &str, schema: RefOr<Schema>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(ct, json_content(schema))
        .header_ref(H_REQUEST_ID, header_ref(H_REQUEST_ID))
        .build()
}

/// Shared error responses, by status.
pub(super) const ERRORS: &[(&str, &str, &str, bool)] = &[
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
        "The upstream did not start answering within `limits.first_byte_timeout_ms` (a streamed \
         answer), or its whole JSON answer did not arrive within `limits.json_timeout_ms`.",
        false,
    ),
];

pub(super) fn error_response(description: &str, retry_after: bool, upstream: bool) -> Response {
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
pub(super) struct Op {
    b: OperationBuilder,
}

impl Op {
    pub(super) fn new(tag: &str, id: &str, summary: &str, description: &str) -> Op {
        Op {
            b: OperationBuilder::new()
                .tag(tag)
                .operation_id(Some(id))
                .summary(Some(summary))
                .description(Some(description)),
        }
    }

    pub(super) fn body(mut self, schema: &str, required: bool) -> Op {
        let body = RequestBodyBuilder::new()
            .required(Some(if required { Required::True } else { Required::False }))
            .content(JSON, json_content(schema_ref(schema)))
            .build();
        self.b = self.b.request_body(Some(body));
        self
    }

    pub(super) fn params(mut self, params: Vec<utoipa::openapi::path::Parameter>) -> Op {
        for p in params {
            self.b = self.b.parameter(p);
        }
        self
    }

    pub(super) fn ok(mut self, status: &str, response: Response) -> Op {
        self.b = self.b.response(status, response);
        self
    }

    /// Shared (OpenAI-shaped) error responses by status.
    pub(super) fn errors(mut self, statuses: &[&str]) -> Op {
        for s in statuses {
            if let Some((_, name, _, _)) = ERRORS.iter().find(|e| e.0 == *s) {
                self.b = self.b.response(*s, response_ref(name));
            }
        }
        self
    }

    pub(super) fn security(mut self, schemes: &[&str]) -> Op {
        for s in schemes {
            self.b = self
                .b
                .security(SecurityRequirement::new::<&str, [&str; 0], &str>(s, []));
        }
        self
    }

    pub(super) fn api_key(self) -> Op {
        self.security(&["ApiKey", "ApiKeyHeader"])
    }

    pub(super) fn build(self) -> Operation {
        self.b.build()
    }
}

/// `PathItem`s keyed by path, several methods per path.
#[derive(Default)]
pub(super) struct Routes(Vec<(String, HttpMethod, Operation)>);

impl Routes {
    pub(super) fn add(&mut self, method: HttpMethod, path: &str, op: Op) {
        self.0.push((path.to_string(), method, op.build()));
    }

    pub(super) fn paths(self) -> Paths {
        let mut paths = Paths::new();
        for (path, method, op) in self.0 {
            paths.add_path_operation(path, vec![method], op);
        }
        paths
    }
}

pub(super) const API_ERRORS: &[&str] = &["400", "401", "403", "404", "413", "429", "502", "503", "504"];
pub(super) const ADMIN_ERRORS: &[&str] = &["401", "404", "503"];

pub(super) fn headers() -> Vec<(&'static str, Header)> {
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
