//! The part of `spin.toml` (manifest version 2) this host honours: the
//! application variables, one component's `source`, `variables`,
//! `key_value_stores` and `allowed_outbound_hosts`, with `{{ name }}`
//! templates resolved the way Spin resolves them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wasmtime::error::Context as _;
use wasmtime::{bail, format_err, Result};

#[derive(Debug, Deserialize)]
struct RawManifest {
    spin_manifest_version: u32,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Default, Deserialize)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
}

#[derive(Debug, Deserialize)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

/// One component of the manifest, with every template resolved.
#[derive(Debug)]
pub struct Component {
    pub id: String,
    pub source: PathBuf,
    /// Component variables, as `spin:variables` hands them to the guest.
    pub variables: BTreeMap<String, String>,
    pub key_value_stores: Vec<String>,
    pub allowed_outbound_hosts: Vec<HostPattern>,
    /// Names of application variables marked `secret`, so their values are
    /// never printed.
    pub secrets: Vec<String>,
}

/// Application variable values, in Spin's order of precedence: `--var`
/// flags, then `SPIN_VARIABLE_<NAME>` environment variables, then the
/// manifest's `default`.
pub fn load(manifest_path: &Path, component_id: Option<&str>, flags: &BTreeMap<String, String>) -> Result<Component> {
    let text =
        std::fs::read_to_string(manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let raw: RawManifest = toml::from_str(&text).with_context(|| format!("parsing {}", manifest_path.display()))?;
    if raw.spin_manifest_version != 2 {
        bail!("only spin_manifest_version = 2 is supported");
    }
    for name in flags.keys() {
        if !raw.variables.contains_key(name) {
            bail!("--var {name}: no such variable in [variables]");
        }
    }
    let mut app = BTreeMap::new();
    for (name, decl) in &raw.variables {
        let env = std::env::var(format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())).ok();
        let value = flags.get(name).cloned().or(env).or(decl.default.clone());
        match value {
            Some(v) => {
                app.insert(name.clone(), v);
            }
            None if decl.required => bail!("variable `{name}` is required but has no value"),
            None => {}
        }
    }
    let (id, comp) = match component_id {
        Some(id) => raw
            .component
            .get_key_value(id)
            .ok_or_else(|| format_err!("no component `{id}` in the manifest"))?,
        None if raw.component.len() == 1 => raw.component.iter().next().expect("one component"),
        None => bail!("the manifest has several components; pick one with --component"),
    };
    let source = match &comp.source {
        toml::Value::String(s) => s.clone(),
        _ => bail!("component `{id}`: only a local file `source` is supported"),
    };
    let base = manifest_path.parent().unwrap_or(Path::new("."));
    let mut variables = BTreeMap::new();
    for (name, template) in &comp.variables {
        let value = render(template, &app).with_context(|| format!("component `{id}` variable `{name}`"))?;
        variables.insert(name.clone(), value);
    }
    let mut allowed_outbound_hosts = Vec::new();
    for entry in &comp.allowed_outbound_hosts {
        let rendered = render(entry, &app).with_context(|| format!("allowed_outbound_hosts entry `{entry}`"))?;
        allowed_outbound_hosts
            .push(HostPattern::parse(&rendered).with_context(|| format!("allowed_outbound_hosts entry `{entry}`"))?);
    }
    Ok(Component {
        id: id.clone(),
        source: base.join(source),
        variables,
        key_value_stores: comp.key_value_stores.clone(),
        allowed_outbound_hosts,
        secrets: raw
            .variables
            .iter()
            .filter(|(_, d)| d.secret)
            .map(|(n, _)| n.clone())
            .collect(),
    })
}

/// Replace each `{{ name }}` with the application variable's value.
fn render(template: &str, app: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format_err!("unterminated `{{{{` in `{template}`"))?;
        let name = after[..end].trim();
        let value = app
            .get(name)
            .ok_or_else(|| format_err!("refers to variable `{name}`, which has no value"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// An `allowed_outbound_hosts` entry: `scheme://host[:port]`, where each
/// part may be `*` and the host may be `*.suffix`. A missing port means the
/// scheme's default one, as in Spin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Suffix(String),
    Exact(String),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format_err!("`{s}` has no scheme (write e.g. https://{s})"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            bail!("`{s}` has a path; only scheme://host[:port] is allowed");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
            _ => (rest, None),
        };
        let scheme = (scheme != "*").then(|| scheme.to_ascii_lowercase());
        let port = match port {
            Some("*") => None,
            Some(p) => Some(p.parse::<u16>().with_context(|| format!("`{s}`: bad port"))?),
            None => match &scheme {
                Some(sc) => Some(default_port(sc).ok_or_else(|| format_err!("`{s}`: give a port"))?),
                None => bail!("`{s}`: a `*` scheme needs an explicit port or `:*`"),
            },
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostMatch::Suffix(format!(".{suffix}"))
        } else if host.is_empty() {
            bail!("`{s}` has no host");
        } else {
            HostMatch::Exact(host)
        };
        Ok(HostPattern { scheme, host, port })
    }

    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(scheme) = uri.scheme_str() else {
            return false;
        };
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let Some(port) = uri.port_u16().or_else(|| default_port(scheme)) else {
            return false;
        };
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && match &self.host {
                HostMatch::Any => true,
                HostMatch::Suffix(s) => host.ends_with(s.as_str()),
                HostMatch::Exact(h) => *h == host,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, url: &str) -> bool {
        HostPattern::parse(pattern).unwrap().allows(&url.parse().unwrap())
    }

    #[test]
    fn patterns() {
        assert!(allows("https://api.openai.com", "https://api.openai.com/v1/x"));
        assert!(!allows("https://api.openai.com", "http://api.openai.com/v1/x"));
        assert!(!allows("https://api.openai.com", "https://api.openai.com:8443/"));
        assert!(allows("http://127.0.0.1:9100", "http://127.0.0.1:9100/v1"));
        assert!(!allows("http://127.0.0.1:9100", "http://127.0.0.1:9101/v1"));
        assert!(allows("http://127.0.0.1:*", "http://127.0.0.1:9101/v1"));
        assert!(allows("https://*.example.com", "https://a.example.com/"));
        assert!(!allows("https://*.example.com", "https://example.com.evil/"));
        assert!(allows("*://localhost:*", "http://localhost:1/"));
        assert!(HostPattern::parse("api.openai.com").is_err());
        assert!(HostPattern::parse("https://x/y").is_err());
    }

    #[test]
    fn templates() {
        let app = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(render("x{{ a }}y{{a}}", &app).unwrap(), "x1y1");
        assert!(render("{{ b }}", &app).is_err());
        assert!(render("{{ a", &app).is_err());
    }
}
