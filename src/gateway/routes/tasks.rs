//! Async tasks: submit a chat completion, poll for the result.
//!
//! `POST /v1/tasks` takes a chat-completion body (plus an optional
//! `webhook_url`), admits it like any request, stores a `queued` record and
//! runs it in the background; `GET /v1/tasks/{id}` returns the record, to
//! the key that created it only. On completion the webhook, if any, is
//! called once with the task as JSON, signed like edge → runner requests
//! (`x-infergate-timestamp`, `x-infergate-signature: v1=<hmac>` over
//! timestamp, method, path and body hash). Delivery is retried only when it
//! fails, at most three times.
//!
//! The background work runs under the platform's `waitUntil`, which bounds
//! a task to the platform's post-response time limit; queues are the
//! production answer for longer jobs.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Decoded;
use crate::gateway::respond::{fold, ClientFormat, Failure};
use crate::gateway::stages::account::{self, Outcome, OutcomeSender, Settle};
use crate::gateway::upstream::attempt::{self, Opened};
use crate::gateway::webhook;
use crate::gateway::{Gateway, GatewayError, Request, RequestCtx, Response};
use crate::platform::{KvStore, Platform};
use crate::wire::error::render;
use crate::wire::openai::validate::{validate_chat, ValidRequest};
use crate::wire::openai::ValidationError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub v: u32,
    pub id: String,
    pub key_id: String,
    /// `queued`, `running`, `completed` or `failed`.
    pub status: String,
    pub created_at: u64,
    #[serde(default)]
    pub completed_at: Option<u64>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub webhook_url: Option<String>,
}

impl TaskRecord {
    /// The client's view: no key id.
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "object": "task",
            "status": self.status,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "result": self.result,
            "error": self.error,
        })
    }
}

pub fn task_key(id: &str) -> String {
    format!("v1:task:{id}")
}

fn invalid(param: &str, reason: &str) -> GatewayError {
    ValidationError::Invalid {
        param: param.into(),
        reason: reason.into(),
    }
    .into()
}

/// Stage 2 for `POST /v1/tasks`: split `webhook_url` off the body and
/// validate the rest as a chat request. `max` is the body cap in bytes.
pub(crate) fn decode(body: &[u8], max: usize, gw: &Gateway) -> Result<Decoded, GatewayError> {
    let mut map: serde_json::Map<String, Value> = crate::wire::openai::validate::parse_json(body, max)?;
    let webhook = match map.remove("webhook_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if u.starts_with("https://") || u.starts_with("http://") => Some(u),
        Some(_) => return Err(invalid("webhook_url", "must be an http:// or https:// URL")),
    };
    if map.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            "stream",
            "tasks return their result when polled; 'stream' must be false",
        ));
    }
    let bytes = serde_json::to_vec(&Value::Object(map)).unwrap_or_default();
    let valid = validate_chat(&bytes, max, &*gw.config)?;
    if webhook.is_some() && gw.config.tasks.webhook_secret.is_none() {
        return Err(invalid(
            "webhook_url",
            "webhooks are not enabled on this gateway (no webhook secret is set)",
        ));
    }
    Ok(Decoded {
        valid,
        format: ClientFormat::Task { webhook_url: webhook },
    })
}

impl Gateway {
    /// `GET /v1/tasks/{id}`; `POST /v1/tasks` runs the pipeline instead.
    pub(crate) async fn tasks<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
    ) -> Result<Response, GatewayError> {
        let path = crate::gateway::path_without_query(&req.path);
        match (req.method.as_str(), path.strip_prefix("/v1/tasks").unwrap_or("")) {
            ("GET", id) if id.len() > 1 && !id[1..].contains('/') => self.get_task(p, req, ctx, &id[1..]).await,
            (m, rest) if matches!(rest, "" | "/") || !rest[1..].contains('/') => Err(GatewayError::MethodNotAllowed {
                method: m.into(),
                path: path.chars().take(200).collect(),
                // The `allow` header's value: what this path supports.
                allowed: if matches!(rest, "" | "/") { "POST" } else { "GET" },
            }),
            (m, _) => Err(GatewayError::NotFound {
                method: m.into(),
                path: path.chars().take(200).collect(),
            }),
        }
    }

    /// Stages 5–8 for a task: store it as `queued`, answer `202`, and run
    /// it in the background; its outcome reaches the account stage when
    /// it has run.
    pub(crate) async fn submit_task<P: Platform>(
        &self,
        p: &P,
        ctx: &RequestCtx,
        key_id: &str,
        valid: &ValidRequest,
        webhook_url: Option<String>,
    ) -> Result<(Response, Settle), GatewayError> {
        let record = TaskRecord {
            v: 1,
            id: format!("task_{:016x}{:016x}", p.random_u64(), p.random_u64()),
            key_id: key_id.to_string(),
            status: "queued".into(),
            created_at: p.now_ms() / 1000,
            completed_at: None,
            result: None,
            error: None,
            webhook_url,
        };
        let ttl = Some(self.config.tasks.ttl_secs);
        KvStore::put(
            p,
            &task_key(&record.id),
            serde_json::to_vec(&record).unwrap_or_default(),
            ttl,
        )
        .await?;
        let resp = Response::json(202, &record.view());
        let (tx, settle) = account::later();
        let (gw, p2, mut tctx, valid) = (self.clone(), p.clone(), ctx.clone(), valid.clone());
        p.spawn(Box::pin(async move {
            gw.run_task(&p2, &mut tctx, valid, record, tx).await;
        }));
        Ok((resp, settle))
    }

    async fn run_task<P: Platform>(
        &self,
        p: &P,
        ctx: &mut RequestCtx,
        valid: ValidRequest,
        mut record: TaskRecord,
        outcome_tx: OutcomeSender,
    ) {
        let ttl = Some(self.config.tasks.ttl_secs);
        let key = task_key(&record.id);
        record.status = "running".into();
        let _ = KvStore::put(p, &key, serde_json::to_vec(&record).unwrap_or_default(), ttl).await;
        let result = match attempt::open_upstream(self, p, ctx, &valid, None, attempt::Caller::Background).await {
            Ok(Opened::Stream { events, first }) => fold::fold_stream(events, first, &mut None)
                .await
                .map(|f| (f.body, f.usage)),
            Ok(Opened::Json(v)) => Ok((v, None)),
            Ok(Opened::Answer(a)) => Ok((a.body, a.usage)),
            Err(e) => Err(e.into()),
        };
        let mut outcome = Outcome {
            status: 200,
            label: "task_completed",
            upstream: ctx.upstream.clone(),
            ..Default::default()
        };
        match result {
            Ok((body, usage)) => {
                record.status = "completed".into();
                record.result = Some(body);
                outcome.usage = usage;
            }
            Err(Failure { error, output_seen }) => {
                record.status = "failed".into();
                record.error = serde_json::to_value(render(&error).body).ok();
                outcome = Outcome {
                    upstream: outcome.upstream,
                    output_seen,
                    ..Outcome::failed(&error)
                };
            }
        }
        record.completed_at = Some(p.now_ms() / 1000);
        if let Err(e) = KvStore::put(p, &key, serde_json::to_vec(&record).unwrap_or_default(), ttl).await {
            tracing::error!(task_id = %record.id, error = %e, "could not store task result");
        }
        let _ = outcome_tx.send(outcome);
        if let Some(url) = record.webhook_url.clone() {
            self.deliver_webhook(p, &url, &record).await;
        }
    }

    async fn deliver_webhook<P: Platform>(&self, p: &P, url: &str, record: &TaskRecord) {
        let Some(secret) = &self.config.tasks.webhook_secret else {
            return;
        };
        let body = serde_json::to_vec(&record.view()).unwrap_or_default();
        webhook::deliver(p, url, secret.expose().as_bytes(), body, "task").await;
    }

    async fn get_task<P: Platform>(
        &self,
        p: &P,
        req: &Request,
        ctx: &mut RequestCtx,
        id: &str,
    ) -> Result<Response, GatewayError> {
        let principal = self.authenticate(p, req).await?;
        ctx.key_id = Some(principal.key_id.clone());
        let unknown = || GatewayError::UnknownResource {
            what: "task",
            id: id.chars().take(64).collect(),
        };
        let raw = KvStore::get(p, &task_key(id)).await?.ok_or_else(unknown)?;
        let record: TaskRecord = serde_json::from_slice(&raw).map_err(|_| unknown())?;
        // Another key's task is indistinguishable from a missing one.
        if record.key_id != principal.key_id {
            return Err(unknown());
        }
        ctx.log(200, p.monotonic_ms(), "ok", None);
        Ok(Response::json(200, &record.view()))
    }
}
