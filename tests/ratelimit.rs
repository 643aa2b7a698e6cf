//! Rate limits inside one isolate: requests that arrive together are
//! decided one after another, never on the same count.

mod common;

use bytes::Bytes;
use common::*;
use futures_executor::LocalPool;
use futures_util::future::join_all;
use infergate::gateway::stages::auth;
use infergate::platform::KvStore;

/// Ten requests at once on a key limited to 3 a minute, with KV reads that
/// take a turn of the executor: exactly 3 are admitted. Also with a
/// monthly budget, whose counter is read too.
#[test]
fn ten_at_once_on_rpm_3_admit_exactly_3() {
    for budget in [None, Some(1_000_000)] {
        let mut pool = LocalPool::new();
        let (gw, fake) = setup(&pool);
        *fake.upstream.borrow_mut() = (200, vec![Bytes::from(upstream_sse_for_tests())]);
        let record = auth::KeyRecord {
            v: 1,
            id: "k1".into(),
            tenant: "t".into(),
            name: String::new(),
            revoked: false,
            expires_at_ms: None,
            models: None,
            requests_per_minute: Some(3),
            tokens_per_minute: None,
            monthly_token_budget: budget,
        };
        let key = auth::storage_key(&auth::key_hash(KEY));
        pool.run_until(fake.kv.put(&key, serde_json::to_vec(&record).unwrap(), None))
            .unwrap();
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
