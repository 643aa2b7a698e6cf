//! Spend budgets in USD: a key's and its tenant's, refused with OpenAI's
//! `insufficient_quota` once spent, alerts once per threshold, and the
//! admin API that sets and shows them.

mod common;

use bytes::Bytes;
use common::*;
use futures_executor::LocalPool;
use infergate::gateway::stages::auth;
use infergate::gateway::{Gateway, Request};
use infergate::platform::KvStore;
use serde_json::{json, Value};

const HOOK: &str = "http://hooks.test/budget?team=a";
const SAME_TENANT: &str = "ig-same-tenant-key";
const OTHER_TENANT: &str = "ig-other-tenant-key";

/// $1,000 per million tokens both ways: each token costs $0.001, so the
/// upstream's 7 tokens cost $0.007.
/// Every test runs on both rate-limit backends: KV counters and the
/// strict store.
const BACKENDS: [&str; 2] = ["kv", "strict"];

fn gateway(pool: &LocalPool, tenant_monthly_usd: Option<f64>, backend: &str) -> (Gateway, Fake) {
    let mut tenants = json!({});
    if let Some(usd) = tenant_monthly_usd {
        tenants["t"] = json!({"monthly_budget_usd": usd});
    }
    let (gw, fake) = setup_with(
        pool,
        json!({
            "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
            "models": [{"id": "m", "targets": ["up"], "price": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}}],
            "admin": {"token_secret": "UP"},
            "tasks": {"webhook_secret": "UP"},
            "rate_limits": {"tenants": tenants, "backend": backend},
            "budgets": {"alert_webhook_url": HOOK}
        }),
    );
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(format!("data: {chunk}\n\ndata: [DONE]\n\n"))]);
    seed_key(&fake, SAME_TENANT, "k2", "t");
    seed_key(&fake, OTHER_TENANT, "k3", "u");
    (gw, fake)
}

/// Give `KEY`'s record (k1, tenant t) a monthly spend budget.
fn budget_key(pool: &mut LocalPool, fake: &Fake, monthly_usd: f64) {
    let k = auth::storage_key(&auth::key_hash(KEY));
    let raw = pool.run_until(fake.kv.get(&k)).unwrap().unwrap();
    let mut rec: auth::KeyRecord = serde_json::from_slice(&raw).unwrap();
    rec.monthly_budget_micros = Some((monthly_usd * 1e6) as u64);
    pool.run_until(fake.kv.put(&k, serde_json::to_vec(&rec).unwrap(), None))
        .unwrap();
}

fn chat_as(key: &str, path: &str) -> Request {
    let auth = vec![("authorization".to_string(), format!("Bearer {key}"))];
    // The same body is valid on both routes.
    let body = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    Request::new("POST", path, auth, body.to_string())
}

/// An admin API request with the test token.
fn admin(method: &str, path: &str, body: Option<Value>) -> Request {
    let auth = vec![("authorization".to_string(), "Bearer sk-up".to_string())];
    Request::new(method, path, auth, body.map(|b| b.to_string()).unwrap_or_default())
}

fn call(pool: &mut LocalPool, gw: &Gateway, fake: &Fake, req: Request) -> (u16, Value, Vec<(String, String)>) {
    let (resp, body) = run(pool, gw, fake, req);
    pool.run_until_stalled(); // the account stage: spend, alerts
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (resp.status, v, resp.headers)
}

/// The alert webhooks sent so far, as their bodies.
fn alerts(fake: &Fake) -> Vec<Value> {
    fake.sent
        .borrow()
        .iter()
        .filter(|r| r.url == HOOK)
        .map(|r| {
            // Signed like task webhooks, never with the secret itself.
            assert!(
                r.headers.iter().any(|(k, _)| k.starts_with("x-infergate-signature")),
                "{:?}",
                r.headers
            );
            assert!(!r.headers.iter().any(|(_, v)| v.contains("sk-up")));
            serde_json::from_slice(&r.body).unwrap()
        })
        .collect()
}

#[test]
fn a_spent_key_budget_is_insufficient_quota_and_alerts_fire_once_each() {
    for backend in BACKENDS {
        let mut pool = LocalPool::new();
        let (gw, fake) = gateway(&pool, None, backend);
        budget_key(&mut pool, &fake, 0.001);
        // The request that crosses the budget is served: its cost is known
        // only once it ends.
        let (status, _, _) = call(&mut pool, &gw, &fake, chat_as(KEY, "/v1/chat/completions"));
        assert_eq!(status, 200);
        let sent = alerts(&fake);
        let pcts: Vec<u64> = sent.iter().map(|a| a["threshold_percent"].as_u64().unwrap()).collect();
        assert_eq!(pcts, [50, 80, 100]);
        assert_eq!(sent[2]["scope"], "key");
        assert_eq!(sent[2]["key_id"], "k1");
        assert_eq!(sent[2]["period"], "monthly");
        assert_eq!(sent[2]["budget_usd"], 0.001);
        assert_eq!(sent[2]["spent_usd"], 0.007);

        let (status, err, headers) = call(&mut pool, &gw, &fake, chat_as(KEY, "/v1/chat/completions"));
        assert_eq!(status, 429);
        assert_eq!(err["error"]["type"], "insufficient_quota");
        assert_eq!(err["error"]["code"], "insufficient_quota");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("monthly budget of this API key: $0.007 of $0.001 spent"),
            "{msg}"
        );
        assert!(headers.iter().any(|(k, _)| k == "retry-after"));
        // Refused requests reach no upstream and send no more alerts.
        let upstream_calls = fake.sent.borrow().iter().filter(|r| r.url != HOOK).count();
        assert_eq!(upstream_calls, 1);
        assert_eq!(alerts(&fake).len(), 3);

        // On /v1/messages the refusal is in Anthropic's shape.
        let (status, err, _) = call(&mut pool, &gw, &fake, chat_as(KEY, "/v1/messages"));
        assert_eq!(status, 429);
        assert_eq!(err["type"], "error");
        assert!(
            err["error"]["message"].as_str().unwrap().contains("monthly budget"),
            "{err}"
        );
    }
}

#[test]
fn a_tenant_budget_is_shared_by_its_keys_only() {
    for backend in BACKENDS {
        let mut pool = LocalPool::new();
        let (gw, fake) = gateway(&pool, Some(0.01), backend);
        for _ in 0..2 {
            let (status, _, _) = call(&mut pool, &gw, &fake, chat_as(KEY, "/v1/chat/completions"));
            assert_eq!(status, 200);
        }
        // $0.014 of the tenant's $0.01: its other key is refused too.
        let (status, err, _) = call(&mut pool, &gw, &fake, chat_as(SAME_TENANT, "/v1/chat/completions"));
        assert_eq!(status, 429);
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains("of this key's tenant"), "{msg}");
        let (status, _, _) = call(&mut pool, &gw, &fake, chat_as(OTHER_TENANT, "/v1/chat/completions"));
        assert_eq!(status, 200);
        let sent = alerts(&fake);
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert!(sent.iter().all(|a| a["scope"] == "tenant" && a["tenant"] == "t"));
    }
}

#[test]
fn the_admin_api_sets_budgets_and_shows_spend() {
    for backend in BACKENDS {
        let mut pool = LocalPool::new();
        let (gw, fake) = gateway(&pool, Some(5.0), backend);
        let (status, created, _) = call(
            &mut pool,
            &gw,
            &fake,
            admin(
                "POST",
                "/admin/keys",
                Some(json!({"name": "b", "tenant": "t", "daily_budget_usd": 2.5})),
            ),
        );
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["daily_budget_usd"], 2.5);
        let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
        let (status, _, _) = call(&mut pool, &gw, &fake, chat_as(key, "/v1/chat/completions"));
        assert_eq!(status, 200);

        let patch = |body: Value| admin("PATCH", &format!("/admin/keys/{id}"), Some(body));
        let (status, v, _) = call(
            &mut pool,
            &gw,
            &fake,
            patch(json!({"monthly_budget_usd": 10, "daily_budget_usd": null})),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["monthly_budget_usd"], 10.0);
        assert_eq!(v["daily_budget_usd"], Value::Null);
        let (status, v, _) = call(&mut pool, &gw, &fake, patch(json!({"monthly_budget_usd": -1})));
        assert_eq!(
            (status, v["error"]["param"].as_str()),
            (400, Some("monthly_budget_usd"))
        );
        let (status, v, _) = call(&mut pool, &gw, &fake, patch(json!({"tenant": "x"})));
        assert_eq!((status, v["error"]["param"].as_str()), (400, Some("tenant")));

        let (status, spend, _) = call(
            &mut pool,
            &gw,
            &fake,
            admin("GET", &format!("/admin/spend?key_id={id}"), None),
        );
        assert_eq!(status, 200, "{spend}");
        // Spent while the daily budget was set: one request, $0.007.
        assert_eq!(spend["daily"]["spent_usd"], 0.007);
        assert_eq!(spend["monthly"]["budget_usd"], 10.0);
        let (_, spend, _) = call(&mut pool, &gw, &fake, admin("GET", "/admin/spend?tenant=t", None));
        assert_eq!(spend["monthly"]["spent_usd"], 0.007);
        assert_eq!(spend["monthly"]["budget_usd"], 5.0);
        assert_eq!(spend["daily"]["budget_usd"], Value::Null);
        let (status, _, _) = call(&mut pool, &gw, &fake, admin("GET", "/admin/spend", None));
        assert_eq!(status, 400);
    }
}

/// The same counters hold tokens per minute: a reservation corrected
/// downwards to the real usage frees the window in this isolate at once,
/// not only once a read of the store happens to be lower.
#[test]
fn a_correction_downwards_lowers_the_window() {
    for backend in BACKENDS {
        let mut pool = LocalPool::new();
        let (gw, fake) = gateway(&pool, None, backend);
        let k = auth::storage_key(&auth::key_hash(KEY));
        let raw = pool.run_until(fake.kv.get(&k)).unwrap().unwrap();
        let mut rec: auth::KeyRecord = serde_json::from_slice(&raw).unwrap();
        rec.tokens_per_minute = Some(100);
        pool.run_until(fake.kv.put(&k, serde_json::to_vec(&rec).unwrap(), None))
            .unwrap();
        let remaining = |h: &[(String, String)]| -> i64 {
            h.iter()
                .find(|(k, _)| k == "x-ratelimit-remaining-tokens")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap()
        };
        let (_, _, first) = call(&mut pool, &gw, &fake, chat_as(KEY, "/v1/chat/completions"));
        let (_, _, second) = call(&mut pool, &gw, &fake, chat_as(KEY, "/v1/chat/completions"));
        // Each reserves the same; the first then used 7 tokens.
        let reserved = 100 - remaining(&first);
        assert!(reserved > 7, "{reserved}");
        assert_eq!(remaining(&second), 100 - 7 - reserved);
    }
}

/// Requests in flight hold their reservations: once those reach the budget
/// the next request is refused with a short `Retry-After` (a rate limit,
/// not `insufficient_quota`, since nothing is spent yet), and once they
/// have finished their real cost is what counts.
#[test]
fn reservations_in_flight_are_not_spend() {
    for backend in BACKENDS {
        let mut pool = LocalPool::new();
        let (gw, fake) = gateway(&pool, None, backend);
        // Each request reserves about $0.013 (its prompt and 10 tokens) and
        // costs $0.007.
        let body = json!({"name": "b", "tenant": "t", "monthly_budget_usd": 0.03});
        let (_, created, _) = call(&mut pool, &gw, &fake, admin("POST", "/admin/keys", Some(body)));
        let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
        fake.kv_yields.set(true);
        let responses = pool.run_until(futures_util::future::join_all(
            (0..6).map(|_| gw.handle(&fake, chat_as(key, "/v1/chat/completions"))),
        ));
        pool.run_until_stalled();
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        let admitted = statuses.iter().filter(|s| **s == 200).count();
        assert!((1..6).contains(&admitted), "{backend}: {statuses:?}");
        let refused = responses.iter().find(|r| r.status == 429).unwrap();
        assert_eq!(refused.header("retry-after"), Some("2"), "{backend}");
        fake.kv_yields.set(false);
        // Finished: $0.007 each is settled, under the budget, so the next
        // request passes, and the admin API shows what was spent.
        let (status, _, _) = call(&mut pool, &gw, &fake, chat_as(key, "/v1/chat/completions"));
        assert_eq!(status, 200, "{backend}");
        let (_, spend, _) = call(
            &mut pool,
            &gw,
            &fake,
            admin("GET", &format!("/admin/spend?key_id={id}"), None),
        );
        let spent = spend["monthly"]["spent_usd"].as_f64().unwrap();
        assert!(
            (spent - 0.007 * (admitted + 1) as f64).abs() < 1e-9,
            "{backend}: {spend}"
        );
    }
}
