//! Prometheus metrics, hand-formatted in the text exposition format.
//!
//! A handful of gauges, counters and two histograms do not justify a
//! metrics framework: they are atomics written by the engine thread and the
//! handlers and read by `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Bucket upper bounds in seconds.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A fixed-bucket histogram.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Everything `/metrics` reports.
pub struct Metrics {
    /// Sequences accepted but not yet running.
    pub queue_depth: AtomicUsize,
    pub running: AtomicUsize,
    pub kv_cache_bytes: AtomicUsize,
    pub ready: AtomicBool,
    pub ttft: Histogram,
    pub inter_token: Histogram,
    pub generated_tokens: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub finished_stop: AtomicU64,
    pub finished_length: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    pub rejected_queue_full: AtomicU64,
    pub rejected_unavailable: AtomicU64,
    pub unauthorized: AtomicU64,
    pub steps: AtomicU64,
    device: OnceLock<&'static str>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            queue_depth: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            kv_cache_bytes: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            ttft: Histogram::new(TTFT_BUCKETS),
            inter_token: Histogram::new(ITL_BUCKETS),
            generated_tokens: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            finished_stop: AtomicU64::new(0),
            finished_length: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected_queue_full: AtomicU64::new(0),
            rejected_unavailable: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            device: OnceLock::new(),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        add(c, 1);
    }

    /// The device the session actually runs on, set once after loading.
    pub fn set_device(&self, device: &'static str) {
        let _ = self.device.set(device);
    }

    pub fn device(&self) -> Option<&'static str> {
        self.device.get().copied()
    }

    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let g = |o: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        g(
            &mut o,
            "infergate_runner_ready",
            "1 once the model is loaded and warmed up.",
            "gauge",
            u8::from(self.ready.load(Ordering::Relaxed)).to_string(),
        );
        let device = self.device().unwrap_or("none");
        let _ = writeln!(
            o,
            "# HELP infergate_runner_device_info The device inference runs on.\n# TYPE infergate_runner_device_info gauge\ninfergate_runner_device_info{{device=\"{device}\"}} 1"
        );
        g(
            &mut o,
            "infergate_runner_queue_depth",
            "Sequences accepted and waiting to join the batch.",
            "gauge",
            self.queue_depth.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "infergate_runner_running_batch_size",
            "Sequences in the running batch.",
            "gauge",
            self.running.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "infergate_runner_kv_cache_bytes",
            "Bytes held by the running batch's KV cache.",
            "gauge",
            self.kv_cache_bytes.load(Ordering::Relaxed).to_string(),
        );
        if let Some(rss) = resident_bytes() {
            g(
                &mut o,
                "infergate_runner_resident_memory_bytes",
                "Resident memory of the process.",
                "gauge",
                rss.to_string(),
            );
        }
        self.ttft.render(
            &mut o,
            "infergate_runner_time_to_first_token_seconds",
            "Time from admission to the queue to the first generated token.",
        );
        self.inter_token.render(
            &mut o,
            "infergate_runner_inter_token_latency_seconds",
            "Time between consecutive tokens of a sequence.",
        );
        g(
            &mut o,
            "infergate_runner_generated_tokens_total",
            "Tokens generated (rate() gives tokens/s).",
            "counter",
            load(&self.generated_tokens),
        );
        g(
            &mut o,
            "infergate_runner_prompt_tokens_total",
            "Prompt tokens prefilled.",
            "counter",
            load(&self.prompt_tokens),
        );
        g(
            &mut o,
            "infergate_runner_engine_steps_total",
            "Engine steps run.",
            "counter",
            load(&self.steps),
        );
        let _ = writeln!(o, "# HELP infergate_runner_sequences_total Sequences that ended, by outcome.\n# TYPE infergate_runner_sequences_total counter");
        for (label, c) in [
            ("stop", &self.finished_stop),
            ("length", &self.finished_length),
            ("cancelled", &self.cancelled),
            ("error", &self.failed),
        ] {
            let _ = writeln!(o, "infergate_runner_sequences_total{{outcome=\"{label}\"}} {}", load(c));
        }
        let _ = writeln!(o, "# HELP infergate_runner_rejected_total Requests refused before queueing, by reason.\n# TYPE infergate_runner_rejected_total counter");
        for (label, c) in [
            ("queue_full", &self.rejected_queue_full),
            ("unavailable", &self.rejected_unavailable),
            ("unauthorized", &self.unauthorized),
        ] {
            let _ = writeln!(o, "infergate_runner_rejected_total{{reason=\"{label}\"}} {}", load(c));
        }
        o
    }
}

/// Resident set size from /proc (Linux only; absent elsewhere).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.set_device("cpu");
        m.ttft.observe(Duration::from_millis(3));
        m.ttft.observe(Duration::from_secs(60));
        Metrics::inc(&m.generated_tokens);
        let t = m.render();
        assert!(t.contains("infergate_runner_device_info{device=\"cpu\"} 1"));
        assert!(t.contains("infergate_runner_time_to_first_token_seconds_bucket{le=\"0.005\"} 1"));
        assert!(t.contains("infergate_runner_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(t.contains("infergate_runner_generated_tokens_total 1"));
        assert!(t.contains("# TYPE infergate_runner_queue_depth gauge"));
    }
}
