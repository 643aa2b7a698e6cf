//! Choosing upstreams: heavy-prompt routing, the nearest runner region,
//! weighted choice among equals. Pure functions; health is applied by the
//! caller as it walks the plan.

use crate::config::{Config, Location, Model, TargetRef};

/// Where the client is, as far as the platform can tell (Workers fills it
/// from `request.cf`; Spin leaves it empty and `routing.region` decides).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Geo {
    pub continent: Option<String>,
    pub colo: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// Heavy requests go to the heavy chain (by default the runner pool first).
pub fn is_heavy(model: &Model, reserved_tokens: u64) -> bool {
    reserved_tokens > u64::from(model.heavy_prompt_tokens)
}

fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// An estimated distance in km from the client to a runner. Coordinates win;
/// without them a configured region match counts as near, the same
/// continent as middling, anything else as far.
pub fn distance_km(loc: &Location, geo: Option<&Geo>, region: Option<&str>) -> f64 {
    if region.is_some_and(|r| r == loc.region) {
        return 0.0;
    }
    if let (Some(g), Some(lat), Some(lon)) = (geo, loc.latitude, loc.longitude) {
        if let (Some(glat), Some(glon)) = (g.latitude, g.longitude) {
            return haversine_km((glat, glon), (lat, lon));
        }
    }
    match (geo.and_then(|g| g.continent.as_deref()), loc.continent.as_deref()) {
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => 3000.0,
        _ => 15_000.0,
    }
}

/// Runners closer than this to each other count as one region for
/// weighted load sharing.
const SAME_REGION_KM: f64 = 500.0;

/// The ordered list of upstream indices to try for a request.
pub fn plan(
    config: &Config,
    model: &Model,
    heavy: bool,
    geo: Option<&Geo>,
    region: Option<&str>,
    mut random: impl FnMut() -> u64,
) -> Vec<usize> {
    let chain = if heavy { &model.heavy_targets } else { &model.targets };
    let mut out: Vec<usize> = Vec::new();
    for t in chain {
        match t {
            TargetRef::Upstream(i) => {
                if !out.contains(i) {
                    out.push(*i);
                }
            }
            TargetRef::Pool => {
                let mut runners: Vec<(usize, f64, f64)> = config
                    .providers
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| {
                        let r = p.runner.as_ref()?;
                        r.models.contains(&model.id).then(|| {
                            let d = distance_km(&r.location, geo, region);
                            // Efraimidis–Spirakis: u^(1/w) gives a weighted
                            // random order when sorted descending.
                            let u = (random() >> 11) as f64 / (1u64 << 53) as f64;
                            (
                                i,
                                (d / SAME_REGION_KM).floor(),
                                u.max(f64::MIN_POSITIVE).powf(1.0 / f64::from(r.weight)),
                            )
                        })
                    })
                    .collect();
                runners.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.2.total_cmp(&a.2)));
                for (i, _, _) in runners {
                    if !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
    }
    out
}

/// The names of `model`'s chain as configured (not in the order a request
/// would try it, which depends on where it comes from): the pool stands for
/// every runner that serves the model, by name. Part of the cache key.
pub fn chain_names(config: &Config, model: &Model, heavy: bool) -> Vec<String> {
    let chain = if heavy { &model.heavy_targets } else { &model.targets };
    let mut out: Vec<String> = Vec::new();
    for t in chain {
        let mut names: Vec<&str> = match t {
            TargetRef::Upstream(i) => vec![config.providers[*i].name.as_str()],
            TargetRef::Pool => config
                .providers
                .iter()
                .filter(|p| p.runner.as_ref().is_some_and(|r| r.models.contains(&model.id)))
                .map(|p| p.name.as_str())
                .collect(),
        };
        names.sort_unstable();
        for n in names {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let c = json!({
            "providers": [{"name": "cloud", "kind": "openai", "base_url": "http://cloud/v1"}],
            "runners": [
                {"name": "eu-1", "url": "http://eu1/v1", "region": "eu", "continent": "EU", "latitude": 50.1, "longitude": 8.7, "models": ["tiny"]},
                {"name": "eu-2", "url": "http://eu2/v1", "region": "eu", "continent": "EU", "latitude": 50.1, "longitude": 8.7, "weight": 3, "models": ["tiny"]},
                {"name": "us-1", "url": "http://us1/v1", "region": "us", "continent": "NA", "latitude": 39.0, "longitude": -77.5, "models": ["tiny"]}
            ],
            "models": [{"id": "tiny", "targets": ["cloud"], "heavy_prompt_tokens": 100}]
        });
        Config::from_json(&c.to_string(), &|n| {
            (n == "INFERGATE_RUNNER_SECRET").then(|| "s".into())
        })
        .unwrap()
    }

    #[test]
    fn heavy_goes_to_nearest_runners_then_provider() {
        let c = config();
        let m = &c.models["tiny"];
        assert!(!is_heavy(m, 100) && is_heavy(m, 101));
        let paris = Geo {
            continent: Some("EU".into()),
            latitude: Some(48.9),
            longitude: Some(2.35),
            ..Default::default()
        };
        let mut n = 0u64;
        let p = plan(&c, m, true, Some(&paris), None, || {
            n = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
            n
        });
        assert_eq!(p.len(), 4);
        assert!(p[..2].contains(&1) && p[..2].contains(&2), "{p:?}");
        assert_eq!(&p[2..], &[3, 0]);
        let light = plan(&c, m, false, Some(&paris), None, || 1);
        assert_eq!(light, vec![0]);
        // Spin: no geo, the configured region decides.
        let us = plan(&c, m, true, None, Some("us"), || 1);
        assert_eq!(us[0], 3);
        // The chain's names do not depend on where the client is.
        assert_eq!(chain_names(&c, m, true), ["eu-1", "eu-2", "us-1", "cloud"]);
        assert_eq!(chain_names(&c, m, false), ["cloud"]);
    }

    #[test]
    fn weights_share_load() {
        let c = config();
        let m = &c.models["tiny"];
        let mut seed = 1u64;
        let mut firsts = [0u32; 4];
        for _ in 0..4000 {
            let p = plan(&c, m, true, None, Some("eu"), || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            });
            firsts[p[0]] += 1;
        }
        // eu-2 has three times eu-1's weight.
        let ratio = f64::from(firsts[2]) / f64::from(firsts[1]);
        assert!((2.4..3.6).contains(&ratio), "{firsts:?}");
    }
}
