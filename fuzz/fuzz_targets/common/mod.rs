//! Shared fixtures for the fuzz targets.
#![allow(dead_code)]

use infergate::wire::openai::validate::{ModelCatalog, ModelLimits};
use infergate::config::{Credential, Location, ProviderKind, RunnerInfo, Secret, Upstream};
use infergate::gateway::upstream::target::Target;
use infergate::sse::{SseDecoder, SseError, SseEvent};

/// The body cap the targets validate under.
pub const MAX_BODY: usize = 64 * 1024;

/// Two models with a small context, so the context checks trigger.
pub struct Catalog;

impl ModelCatalog for Catalog {
    fn model_limits(&self, id: &str) -> Option<ModelLimits> {
        match id {
            "m" | "gpt-4o-mini" => Some(ModelLimits {
                context_window: 4096,
                max_output_tokens: 1024,
            }),
            "e" => Some(ModelLimits {
                context_window: 8191,
                max_output_tokens: 1,
            }),
            _ => None,
        }
    }
}

pub fn provider(kind: ProviderKind, runner: bool) -> Target {
    Target::for_config(&Upstream {
        name: "p".into(),
        kind,
        base_url: "http://127.0.0.1:9/v1".into(),
        credential: if runner {
            Credential::SigningSecret(Secret::new("fuzz-secret"))
        } else {
            Credential::ApiKey(Secret::new("fuzz-secret"))
        },
        runner: runner.then(|| RunnerInfo {
            location: Location::default(),
            weight: 1,
            models: vec!["m".into()],
        }),
    })
}

/// Every provider kind: OpenAI-compatible, Anthropic, signed runner.
pub fn providers() -> Vec<Target> {
    vec![
        provider(ProviderKind::Openai, false),
        provider(ProviderKind::Anthropic, false),
        provider(ProviderKind::Openai, true),
    ]
}

/// Decode `chunks` in order; the events, and the error that stopped it.
pub fn decode(chunks: &[&[u8]], limit: usize) -> (Vec<SseEvent>, Option<SseError>) {
    let mut d = SseDecoder::new(limit);
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        loop {
            match d.next_event() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// Split `bytes` into pieces whose lengths cycle through `seed`-derived
/// sizes (1 to 16 bytes), like an upstream that flushes anywhere.
pub fn split(bytes: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut s = u32::from(seed) | 1;
    while !rest.is_empty() {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((s >> 16) as usize % 16 + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}
