//! `infergate`: the operator CLI over the edge's admin API.
//!
//! Every command is one HTTP call; the CLI holds no state. The admin token
//! comes from `--admin-token` or `INFERGATE_ADMIN_TOKEN` and is only ever
//! sent in the `Authorization` header.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "infergate",
    version,
    about = "Manage an infergate edge: API keys, usage and spend budgets"
)]
struct Cli {
    /// Base URL of the edge, e.g. https://infergate.example.workers.dev
    #[arg(long, env = "INFERGATE_URL", default_value = "http://127.0.0.1:8787", global = true)]
    url: String,
    /// Admin token (the INFERGATE_ADMIN_TOKEN secret of the edge)
    #[arg(long, env = "INFERGATE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API keys
    #[command(subcommand)]
    Keys(Keys),
    /// Token usage and cost of one key, per hour
    Usage {
        /// The key id (key_...)
        #[arg(long)]
        key_id: String,
        /// Start, Unix seconds (default: 24 hours before --to)
        #[arg(long)]
        from: Option<u64>,
        /// End, Unix seconds (default: now)
        #[arg(long)]
        to: Option<u64>,
    },
    /// USD spent this UTC day and month by a key or a tenant, with its budgets
    Spend {
        /// The key id (key_...)
        #[arg(long, conflicts_with = "tenant", required_unless_present = "tenant")]
        key_id: Option<String>,
        /// The tenant
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum Keys {
    /// Create a key; prints the plaintext key once
    Create(CreateArgs),
    /// List keys (never shows a key, only a four-character hint)
    List,
    /// Revoke a key
    Revoke {
        /// The key id (key_...)
        id: String,
    },
    /// Issue a new key for the same id; the old one works for a grace period
    Rotate {
        /// The key id (key_...)
        id: String,
        /// Seconds the old key keeps working
        #[arg(long, default_value_t = 3600)]
        grace_seconds: u64,
    },
    /// Set or remove a key's spend budgets ("none" removes one)
    Budget {
        /// The key id (key_...)
        id: String,
        /// USD per UTC day, or "none"
        #[arg(long)]
        daily_usd: Option<String>,
        /// USD per calendar month (UTC), or "none"
        #[arg(long)]
        monthly_usd: Option<String>,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// A label for the key
    #[arg(long)]
    name: String,
    /// Tenant: cache entries and usage are scoped by it
    #[arg(long)]
    tenant: String,
    /// Requests per minute
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens per minute (prompt estimate + max_tokens, corrected to real usage)
    #[arg(long)]
    tpm: Option<u32>,
    /// Tokens per calendar month
    #[arg(long)]
    monthly_token_budget: Option<u64>,
    /// Spend budget, USD per UTC day (at the model prices in the config)
    #[arg(long)]
    daily_budget_usd: Option<f64>,
    /// Spend budget, USD per calendar month (UTC)
    #[arg(long)]
    monthly_budget_usd: Option<f64>,
    /// Comma-separated model ids the key may use (default: all)
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Expiry, Unix seconds
    #[arg(long)]
    expires_at: Option<u64>,
}

fn call(cli: &Cli, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let token = cli
        .admin_token
        .as_deref()
        .context("no admin token: pass --admin-token or set INFERGATE_ADMIN_TOKEN")?;
    let url = format!("{}{}", cli.url.trim_end_matches('/'), path);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let auth = format!("Bearer {token}");
    let mut resp = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
        ("DELETE", _) => agent.delete(&url).header("authorization", &auth).call(),
        ("PATCH", Some(b)) => agent
            .patch(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(serde_json::to_vec(&b)?.as_slice()),
        (_, Some(b)) => agent
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(serde_json::to_vec(&b)?.as_slice()),
        (_, None) => agent.post(&url).header("authorization", &auth).send_empty(),
    }
    .with_context(|| format!("could not reach {}", cli.url))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status >= 400 {
        let msg = value["error"]["message"].as_str().unwrap_or("request failed");
        bail!("HTTP {status}: {msg}");
    }
    Ok(value)
}

fn run(cli: &Cli) -> Result<()> {
    let out = match &cli.command {
        Command::Keys(Keys::Create(a)) => {
            let body = json!({
                "name": a.name, "tenant": a.tenant, "requests_per_minute": a.rpm,
                "tokens_per_minute": a.tpm, "monthly_token_budget": a.monthly_token_budget,
                "models": a.models, "expires_at": a.expires_at,
                "daily_budget_usd": a.daily_budget_usd, "monthly_budget_usd": a.monthly_budget_usd,
            });
            let v = call(cli, "POST", "/admin/keys", Some(body))?;
            eprintln!("Store this key now: it is shown only once.");
            v
        }
        Command::Keys(Keys::List) => {
            // Every page, joined: the edge serves at most 500 keys a request.
            let mut data = Vec::new();
            let mut path = "/admin/keys?limit=500".to_string();
            loop {
                let page = call(cli, "GET", &path, None)?;
                data.extend(page["data"].as_array().cloned().unwrap_or_default());
                match (page["has_more"].as_bool(), page["last_id"].as_str()) {
                    (Some(true), Some(last)) => path = format!("/admin/keys?limit=500&after={last}"),
                    _ => break,
                }
            }
            json!({"object": "list", "data": data})
        }
        Command::Keys(Keys::Revoke { id }) => call(cli, "DELETE", &format!("/admin/keys/{id}"), None)?,
        Command::Keys(Keys::Rotate { id, grace_seconds }) => {
            let body = json!({ "grace_seconds": grace_seconds });
            let v = call(cli, "POST", &format!("/admin/keys/{id}/rotate"), Some(body))?;
            eprintln!("Store the new key now: it is shown only once.");
            v
        }
        Command::Keys(Keys::Budget {
            id,
            daily_usd,
            monthly_usd,
        }) => {
            let mut body = serde_json::Map::new();
            for (field, v) in [("daily_budget_usd", daily_usd), ("monthly_budget_usd", monthly_usd)] {
                match v.as_deref() {
                    None => {}
                    Some("none") => {
                        body.insert(field.into(), Value::Null);
                    }
                    Some(usd) => {
                        let n: f64 = usd
                            .parse()
                            .with_context(|| format!("{field}: `{usd}` is not a number"))?;
                        body.insert(field.into(), json!(n));
                    }
                }
            }
            if body.is_empty() {
                bail!("nothing to change: pass --daily-usd and/or --monthly-usd");
            }
            call(cli, "PATCH", &format!("/admin/keys/{id}"), Some(Value::Object(body)))?
        }
        Command::Spend { key_id, tenant } => match (key_id, tenant) {
            (Some(k), _) => call(cli, "GET", &format!("/admin/spend?key_id={k}"), None)?,
            (None, Some(t)) => call(cli, "GET", &format!("/admin/spend?tenant={t}"), None)?,
            (None, None) => bail!("pass --key-id or --tenant"),
        },
        Command::Usage { key_id, from, to } => {
            let mut q = format!("/admin/usage?key_id={key_id}");
            if let Some(f) = from {
                q += &format!("&from={f}");
            }
            if let Some(t) = to {
                q += &format!("&to={t}");
            }
            call(cli, "GET", &q, None)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
