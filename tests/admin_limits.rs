//! The admin API within Workers' 1,000 KV operations per invocation, at
//! the largest range and page it allows.

mod common;

use common::*;
use futures_executor::LocalPool;
use infergate::gateway::stages::{counters, usage};
use infergate::gateway::{Gateway, Request};
use infergate::platform::KvStore;
use serde_json::{json, Value};

/// Workers' limit on KV operations in one invocation.
const WORKERS_KV_OPS: u64 = 1000;
/// 2026-09-15T00:00:00Z.
const NOW_MS: u64 = 1_789_430_400_000;
const HOUR_MS: u64 = 3_600_000;

fn gateway(pool: &LocalPool) -> (Gateway, Fake) {
    let (gw, fake) = setup_with(
        pool,
        json!({
            "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
            "models": [{"id": "m", "targets": ["up"]}],
            "admin": {"token_secret": "UP"}
        }),
    );
    fake.now.set(NOW_MS);
    fake.kv.clock.set(NOW_MS);
    (gw, fake)
}

fn admin(method: &str, path: &str, body: Option<Value>) -> Request {
    let auth = vec![("authorization".to_string(), "Bearer sk-up".to_string())];
    Request::new(method, path, auth, body.map(|b| b.to_string()).unwrap_or_default())
}

fn get_json(pool: &mut LocalPool, gw: &Gateway, fake: &Fake, path: &str) -> (u16, Value, u64) {
    fake.kv.ops.set(0);
    let (resp, body) = run(pool, gw, fake, admin("GET", path, None));
    (resp.status, serde_json::from_slice(&body).unwrap(), fake.kv.ops.get())
}

/// A year of hourly usage rows; a 31-day report reads only its own month
/// listings and hours, and a 32-day one is refused.
#[test]
fn usage_at_the_largest_range_stays_within_the_limit() {
    let mut pool = LocalPool::new();
    let (gw, fake) = gateway(&pool);
    let delta = counters::encode(&[("requests".to_string(), 1i64)].into_iter().collect());
    for h in 0..365 * 24 {
        let key = usage::usage_key("k1", NOW_MS - h * HOUR_MS);
        pool.run_until(fake.kv.put(&key, delta.clone(), None)).unwrap();
    }
    let to = NOW_MS / 1000;
    let from = to - 31 * 86_400;
    let (status, v, ops) = get_json(
        &mut pool,
        &gw,
        &fake,
        &format!("/admin/usage?key_id=k1&from={from}&to={to}"),
    );
    assert_eq!(status, 200, "{v}");
    // Every hour that overlaps [from, to]: 31 days of hours, plus the one
    // that starts at `to`.
    assert_eq!(v["data"].as_array().unwrap().len(), 31 * 24 + 1);
    assert_eq!(v["total"]["requests"], 31 * 24 + 1);
    assert!(ops <= WORKERS_KV_OPS, "{ops} KV operations for the largest range");

    let (status, v, _) = get_json(
        &mut pool,
        &gw,
        &fake,
        &format!("/admin/usage?key_id=k1&from={}&to={to}", from - 86_400),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "from");
}

/// 1,200 keys: each page of at most 500 stays within the limit, and
/// following `has_more`/`last_id` lists every key exactly once.
#[test]
fn key_pages_stay_within_the_limit_and_cover_every_key() {
    let mut pool = LocalPool::new();
    let (gw, fake) = gateway(&pool);
    let mut created = Vec::new();
    for i in 0..1200 {
        let (resp, body) = run(
            &mut pool,
            &gw,
            &fake,
            admin(
                "POST",
                "/admin/keys",
                Some(json!({"name": format!("k{i}"), "tenant": "t"})),
            ),
        );
        assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        created.push(v["id"].as_str().unwrap().to_string());
    }
    let (status, first, ops) = get_json(&mut pool, &gw, &fake, "/admin/keys");
    assert_eq!(status, 200);
    assert_eq!(first["data"].as_array().unwrap().len(), 100, "the default page");
    assert_eq!(first["has_more"], true);
    assert!(ops <= WORKERS_KV_OPS, "{ops}");

    let mut seen = Vec::new();
    let mut path = "/admin/keys?limit=500".to_string();
    loop {
        let (status, page, ops) = get_json(&mut pool, &gw, &fake, &path);
        assert_eq!(status, 200, "{page}");
        assert!(ops <= WORKERS_KV_OPS, "{ops} KV operations for a page of 500");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["id"].as_str().unwrap().to_string()),
        );
        if page["has_more"] != true {
            break;
        }
        path = format!("/admin/keys?limit=500&after={}", page["last_id"].as_str().unwrap());
    }
    created.sort();
    assert_eq!(seen, created);

    let (status, v, _) = get_json(&mut pool, &gw, &fake, "/admin/keys?limit=501");
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "limit");
}
