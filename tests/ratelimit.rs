//! Rate limits inside one isolate: requests that arrive together are
//! decided one after another, never on the same count.

mod common;

use bytes::Bytes;
use common::*;
use futures_executor::LocalPool;
use futures_util::future::join_all;
use infergate::gateway::stages::auth;

/// Ten requests at once on a key limited to 3 a minute, with KV reads that
/// take a turn of the executor: exactly 3 are admitted. Also with a
/// monthly budget, whose counter is read too.
#[test]
fn ten_at_once_on_rpm_3_admit_exactly_3() {
    // Without budgets, with a token budget, with a spend budget: each
    // adds counters read before the decision.
    for (budget, spend) in [(None, None), (Some(1_000_000), None), (None, Some(1_000_000_000))] {
        let mut pool = LocalPool::new();
        let (gw, fake) = setup(&pool);
        *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse_for_tests())]);
        let record = auth::KeyRecord {
            requests_per_minute: Some(3),
            monthly_token_budget: budget,
            daily_budget_micros: spend,
            monthly_budget_micros: spend,
            ..key_record("k1", "t")
        };
        put_record(&fake, KEY, &record);
        fake.kv_yields.set(true);
        let statuses: Vec<u16> = pool
            .run_until(join_all((0..10).map(|_| gw.handle(&fake, chat(false)))))
            .iter()
            .map(|r| r.status)
            .collect();
        pool.run_until_stalled();
        let admitted = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(admitted, 3, "budget {budget:?}: {statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7, "{statuses:?}");
    }
}

/// The strict backend: two gateways (two isolates) share one strict store
/// and nothing else in memory; ten requests at once across them on an
/// RPM-3 key admit exactly 3, with every budget kind set too. The store
/// gets one call per request, plus one correction per admitted one.
#[test]
fn strict_backend_admits_exactly_3_across_isolates() {
    let mut pool = LocalPool::new();
    let cfg = serde_json::json!({
        "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
        "models": [{"id": "m", "targets": ["up"], "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}],
        "rate_limits": {"backend": "strict", "tenants": {"t": {"tokens_per_minute": 1_000_000}}}
    });
    let (gw_a, fake) = setup_with(&pool, cfg.clone());
    let (gw_b, _) = setup_with(&pool, cfg);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse_for_tests())]);
    let record = auth::KeyRecord {
        requests_per_minute: Some(3),
        tokens_per_minute: Some(100_000),
        monthly_token_budget: Some(1_000_000),
        monthly_budget_micros: Some(1_000_000_000),
        ..key_record("k1", "t")
    };
    put_record(&fake, KEY, &record);
    fake.kv_yields.set(true);
    let gws = [&gw_a, &gw_b];
    let statuses: Vec<u16> = pool
        .run_until(join_all((0..10).map(|i| gws[i % 2].handle(&fake, chat(false)))))
        .iter()
        .map(|r| r.status)
        .collect();
    pool.run_until_stalled();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7, "{statuses:?}");
    // A limit of 3 leaves nothing to grant, so every request asked the
    // store; each answer's spend correction is one more call, while its
    // unused token reservation went back to the isolate's token grant.
    assert_eq!(fake.strict.calls.get(), 10 + 3);
    let window = 1_000 / 60_000;
    assert_eq!(fake.strict.get(&format!("v1:rl:k1:{window}:requests")), 3);
    // Nothing went to KV for the limits.
    assert!(
        !fake.kv.keys().iter().any(|k| k.starts_with("v1:rl")),
        "{:?}",
        fake.kv.keys()
    );
}

/// Grants: with room under the limit the store hands an isolate units to
/// admit later requests without a round trip. Two gateways, 400 requests
/// in rounds of 10 at once: on a key limited to 1000 a minute all pass with
/// far fewer than 400 store calls; on one limited to 300 at most 300 pass
/// (granted units are counted when granted) and at most 8 per gateway are
/// lost to grants left unused.
#[test]
fn grants_save_round_trips_and_never_overshoot() {
    for (limit, want_min, max_calls) in [(1000, 400, 100), (300, 300 - 16, 400)] {
        let mut pool = LocalPool::new();
        let cfg = serde_json::json!({
            "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
            "models": [{"id": "m", "targets": ["up"]}],
            "rate_limits": {"backend": "strict"}
        });
        let (gw_a, fake) = setup_with(&pool, cfg.clone());
        let (gw_b, _) = setup_with(&pool, cfg);
        *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse_for_tests())]);
        let record = auth::KeyRecord {
            requests_per_minute: Some(limit),
            ..key_record("k1", "t")
        };
        put_record(&fake, KEY, &record);
        fake.kv_yields.set(true);
        let gws = [&gw_a, &gw_b];
        let mut admitted = 0;
        for round in 0..40 {
            let statuses: Vec<u16> = pool
                .run_until(join_all(
                    (0..10).map(|i| gws[(i + round) % 2].handle(&fake, chat(false))),
                ))
                .iter()
                .map(|r| r.status)
                .collect();
            admitted += statuses.iter().filter(|s| **s == 200).count();
        }
        pool.run_until_stalled();
        assert!(admitted <= limit as usize, "limit {limit}: {admitted}");
        assert!(admitted >= want_min, "limit {limit}: only {admitted}");
        let calls = fake.strict.calls.get();
        assert!(calls < max_calls, "limit {limit}: {calls} store calls for 400 requests");
    }
}

/// A key with a spend budget and a request limit gets its whole request
/// limit on the strict backend, counted down one by one in the headers
/// (grants it could never use must not be taken from the limit).
#[test]
fn a_spend_budget_leaves_the_request_limit_whole() {
    let mut pool = LocalPool::new();
    let cfg = serde_json::json!({
        "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
        "models": [{"id": "m", "targets": ["up"]}],
        "rate_limits": {"backend": "strict"}
    });
    let (gw, fake) = setup_with(&pool, cfg);
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse_for_tests())]);
    let record = auth::KeyRecord {
        requests_per_minute: Some(200),
        monthly_budget_micros: Some(100_000_000),
        ..key_record("k1", "t")
    };
    put_record(&fake, KEY, &record);
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let resp = pool.run_until(gw.handle(&fake, chat(false)));
        assert_eq!(resp.status, 200);
        remaining.push(resp.header("x-ratelimit-remaining-requests").unwrap().to_string());
        pool.run_until_stalled();
    }
    assert_eq!(remaining, ["199", "198", "197", "196", "195"]);
}

fn upstream_sse_for_tests() -> String {
    let c = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    c(r#"{"role":"assistant","content":"hi"}"#, "null")
        + &c("{}", r#""stop""#)
        + "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\ndata: [DONE]\n\n"
}

/// A tenant limit holds across its keys: two keys of tenant "t" share
/// 3 requests a minute. The 429 says it was the tenant's limit, with
/// OpenAI's `x-ratelimit-*` headers for it and `Retry-After`; a key of
/// another tenant is not affected.
#[test]
fn tenant_limits_hold_across_the_tenants_keys() {
    let mut pool = LocalPool::new();
    let (gw, fake) = setup_with(
        &pool,
        serde_json::json!({
            "providers": [{"name": "up", "kind": "openai", "base_url": "http://up/v1", "api_key_secret": "UP"}],
            "models": [{"id": "m", "targets": ["up"]}],
            "rate_limits": {"tenants": {"t": {"requests_per_minute": 3}}}
        }),
    );
    *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse_for_tests())]);
    seed_key(&fake, "ig-second-key", "k2", "t");
    seed_key(&fake, "ig-other-tenant", "k3", "u");
    let with_key = |key: &str| {
        let mut r = chat(false);
        r.headers = vec![("authorization".into(), format!("Bearer {key}"))];
        r
    };
    let mut admitted = Vec::new();
    for key in [KEY, "ig-second-key", KEY] {
        admitted.push(run(&mut pool, &gw, &fake, with_key(key)).0);
    }
    assert!(admitted.iter().all(|r| r.status == 200));
    // An admitted request's headers are the tenant's: it is the tighter
    // limit (the keys have none of their own).
    let remaining: Vec<_> = admitted
        .iter()
        .map(|r| r.header("x-ratelimit-remaining-requests"))
        .collect();
    assert_eq!(remaining, [Some("2"), Some("1"), Some("0")]);
    let (resp, body) = run(&mut pool, &gw, &fake, with_key("ig-second-key"));
    assert_eq!(resp.status, 429);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("of this key's tenant"),
        "{v}"
    );
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(resp.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(resp.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(resp.header("retry-after").is_some());
    let (other, _) = run(&mut pool, &gw, &fake, with_key("ig-other-tenant"));
    assert_eq!(other.status, 200, "another tenant is not limited");
}
