//! Choosing the next token from logits.
//!
//! Order of operations (the one most servers use): logit bias and
//! presence/frequency penalties, then temperature, then top-k, then top-p
//! over the renormalised distribution, then one draw. Temperature 0 (or
//! top-k 1) is greedy: the first index of the maximum, with no draw, so it
//! is reproducible without a seed. Each sequence owns a portable
//! `Xoshiro256PlusPlus`, so a `seed` gives the same tokens on every
//! platform and run regardless of what else is in the batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// Per-request sampling settings, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 or `None` = no top-k filter.
    pub top_k: Option<usize>,
    /// 1.0 = no nucleus filter.
    pub top_p: f32,
    pub seed: Option<u64>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Added to the logits of the given token ids.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_k: None,
            top_p: 1.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == Some(1)
    }
}

/// A random-looking id (response ids); distinct per call.
pub fn fresh_id() -> u64 {
    fresh_seed()
}

/// A seed for requests that did not set one: distinct per request.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix64(t ^ splitmix64(n))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One sequence's sampler.
pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256PlusPlus,
    /// Generated-token counts, for the penalties.
    counts: HashMap<u32, u32>,
    scratch: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let seed = params.seed.unwrap_or_else(fresh_seed);
        Sampler {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            params,
            counts: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Pick the next token and remember it for the penalties.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let adjust = !p.logit_bias.is_empty() || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        let token = if adjust {
            let mut l = logits.to_vec();
            for &(id, bias) in &p.logit_bias {
                if let Some(x) = l.get_mut(id as usize) {
                    *x += bias;
                }
            }
            for (&id, &n) in &self.counts {
                if let Some(x) = l.get_mut(id as usize) {
                    *x -= p.presence_penalty + p.frequency_penalty * n as f32;
                }
            }
            self.pick(&l)
        } else {
            self.pick(logits)
        };
        if self.params.presence_penalty != 0.0 || self.params.frequency_penalty != 0.0 {
            *self.counts.entry(token).or_insert(0) += 1;
        }
        token
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        if p.is_greedy() {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        let c = &mut self.scratch;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &x)| (i as u32, x * inv_t)));
        if let Some(k) = p.top_k.filter(|&k| k > 0) {
            top_k_filter(c, k);
        }
        softmax_in_place(c);
        if p.top_p < 1.0 {
            top_p_filter(c, p.top_p);
        }
        let u: f32 = self.rng.random::<f32>() * c.iter().map(|x| x.1).sum::<f32>();
        let mut acc = 0.0;
        for &(id, prob) in c.iter() {
            acc += prob;
            if u < acc {
                return id;
            }
        }
        // Rounding left `u` at the very top: take the last candidate.
        c.last().map_or_else(|| argmax(logits), |x| x.0)
    }
}

/// Index of the first maximum (same tie rule as numpy's argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Keep the `k` candidates with the largest logits, sorted descending
/// (ties by lower id first).
pub fn top_k_filter(c: &mut Vec<(u32, f32)>, k: usize) {
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k < c.len() {
        c.select_nth_unstable_by(k - 1, by_logit);
        c.truncate(k);
    }
    c.sort_by(by_logit);
}

/// Turn logits into probabilities (numerically stable).
pub fn softmax_in_place(c: &mut [(u32, f32)]) {
    let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in c.iter_mut() {
        x.1 = (x.1 - max).exp();
        sum += x.1;
    }
    for x in c.iter_mut() {
        x.1 /= sum;
    }
}

/// Nucleus filter over probabilities: keep the smallest set of most likely
/// candidates whose mass reaches `p` (always at least one), renormalised.
pub fn top_p_filter(c: &mut Vec<(u32, f32)>, p: f32) {
    c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut acc = 0.0;
    let mut keep = c.len();
    for (i, x) in c.iter().enumerate() {
        acc += x.1;
        if acc >= p {
            keep = i + 1;
            break;
        }
    }
    c.truncate(keep.max(1));
    let sum: f32 = c.iter().map(|x| x.1).sum();
    for x in c.iter_mut() {
        x.1 /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(l: &[f32]) -> Vec<(u32, f32)> {
        l.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect()
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 1.0, 3.0]), 1);
        assert_eq!(argmax(&[-1.0]), 0);
    }

    #[test]
    fn top_k_keeps_the_k_largest_in_order() {
        let mut c = cands(&[0.1, 5.0, 3.0, 4.0, -2.0]);
        top_k_filter(&mut c, 3);
        assert_eq!(c.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        let mut all = cands(&[1.0, 2.0]);
        top_k_filter(&mut all, 10);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probabilities 0.5, 0.3, 0.15, 0.05
        let mut c = vec![(0, 0.15), (1, 0.5), (2, 0.05), (3, 0.3)];
        top_p_filter(&mut c, 0.8);
        assert_eq!(c.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!((c[0].1 - 0.625).abs() < 1e-6 && (c[1].1 - 0.375).abs() < 1e-6);
        // a tiny p still keeps the single most likely token
        let mut c = vec![(0, 0.2), (1, 0.8)];
        top_p_filter(&mut c, 0.0);
        assert_eq!(c, vec![(1, 1.0)]);
    }

    #[test]
    fn softmax_is_stable_and_normalised() {
        let mut c = cands(&[1000.0, 1000.0, -1000.0]);
        softmax_in_place(&mut c);
        assert!((c[0].1 - 0.5).abs() < 1e-6 && c[2].1 == 0.0);
    }

    fn draw(params: SamplingParams, n: usize) -> Vec<u32> {
        let logits: Vec<f32> = (0..64).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut s = Sampler::new(params);
        (0..n).map(|_| s.sample(&logits)).collect()
    }

    #[test]
    fn seeded_sampling_is_reproducible() {
        let p = SamplingParams {
            temperature: 1.0,
            seed: Some(42),
            ..SamplingParams::default()
        };
        let a = draw(p.clone(), 200);
        assert_eq!(a, draw(p.clone(), 200));
        let other = draw(SamplingParams { seed: Some(43), ..p }, 200);
        assert_ne!(a, other);
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 5);
    }

    #[test]
    fn filters_constrain_the_draws() {
        let logits: Vec<f32> = vec![5.0, 4.0, 3.0, 0.0, 0.0, 0.0];
        let mut s = Sampler::new(SamplingParams {
            top_k: Some(2),
            seed: Some(1),
            ..SamplingParams::default()
        });
        assert!((0..300).all(|_| s.sample(&logits) < 2));
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.5,
            seed: Some(1),
            ..SamplingParams::default()
        });
        // token 0 alone holds ~0.66 of the mass
        assert!((0..300).all(|_| s.sample(&logits) == 0));
    }

    #[test]
    fn greedy_ignores_the_seed_and_penalties_apply() {
        let logits = vec![1.0, 2.0, 1.9];
        let mut g = Sampler::new(SamplingParams::greedy());
        assert_eq!(g.sample(&logits), 1);
        let mut pen = Sampler::new(SamplingParams {
            presence_penalty: 1.0,
            ..SamplingParams::greedy()
        });
        assert_eq!(pen.sample(&logits), 1);
        assert_eq!(pen.sample(&logits), 2, "the presence penalty moves off a used token");
        let mut bias = Sampler::new(SamplingParams {
            logit_bias: vec![(0, 5.0)],
            ..SamplingParams::greedy()
        });
        assert_eq!(bias.sample(&logits), 0);
    }
}
