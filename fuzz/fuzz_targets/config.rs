//! The config parser: arbitrary text → `Config::from_json`. It must answer
//! a config or a `ConfigError` naming a path, never panic; a valid config
//! must also build a `Gateway`.
#![no_main]

use infergate::wire::error::OpenAiError;
use infergate::config::{Config, RawConfig};
use infergate::gateway::Gateway;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every secret the config names is set, except those starting with
    // "MISSING", so both paths run.
    let secret = |name: &str| (!name.starts_with("MISSING")).then(|| format!("secret-for-{name}"));
    match Config::from_json(text, &secret) {
        Ok(config) => {
            let _ = Gateway::new(config);
        }
        Err(e) => {
            assert_eq!(e.status(), 503);
            assert!(!e.to_string().is_empty());
        }
    }
    if let Ok(raw) = RawConfig::parse(text) {
        let _ = raw.secret_names();
    }
});
