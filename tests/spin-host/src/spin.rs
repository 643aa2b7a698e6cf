//! `spin:key-value@3.0.0` and `spin:variables@3.0.0` for the guest
//! (`wasi:keyvalue` store and atomics over the same data: `keyvalue`).
//!
//! Key-value data is one map shared by every instance (like Spin's default
//! store), optionally persisted to a JSON file after each change. Values are
//! opaque bytes: the component's TTL envelope (see `src/adapters/spin.rs`) is
//! stored as it comes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, StreamReader};
use wasmtime::error::Context as _;
use wasmtime::{bail, Result};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "host",
        imports: { default: trappable },
        with: {
            "spin:key-value/key-value.store": super::StoreHandle,
            "wasi:keyvalue/store.bucket": crate::keyvalue::BucketHandle,
            "wasi:keyvalue/atomics.cas": crate::keyvalue::CasHandle,
        },
    });
}

use bindings::spin::key_value::key_value;
use bindings::spin::variables::variables;

/// The component's view of a key-value store it opened.
pub struct StoreHandle {
    label: String,
}

/// Key-value data shared by all instances.
pub struct KvData {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
    file: Option<PathBuf>,
    /// Operations so far by kind (`get`, `set`, `delete`, `increment`,
    /// `list`), for benchmarks: what a request costs the store.
    ops: Mutex<BTreeMap<&'static str, u64>>,
}

impl KvData {
    /// Load `file` if it exists. The file is a JSON object of key → value,
    /// the value a string when it is UTF-8 and `{"base64": "…"}` otherwise.
    pub fn open(file: Option<PathBuf>, seed: &[(String, String)]) -> Result<KvData> {
        let mut map = BTreeMap::new();
        if let Some(f) = &file {
            if f.exists() {
                let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                let doc: BTreeMap<String, serde_json::Value> =
                    serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
                for (k, v) in doc {
                    let bytes = match v {
                        serde_json::Value::String(s) => s.into_bytes(),
                        serde_json::Value::Object(o) => {
                            let b64 = o.get("base64").and_then(|b| b.as_str()).unwrap_or("");
                            base64::engine::general_purpose::STANDARD
                                .decode(b64)
                                .with_context(|| format!("key `{k}`: bad base64"))?
                        }
                        _ => bail!("key `{k}`: value must be a string or {{\"base64\"}}"),
                    };
                    map.insert(k, bytes);
                }
            }
        }
        for (k, v) in seed {
            map.insert(k.clone(), v.clone().into_bytes());
        }
        let data = KvData {
            map: Mutex::new(map),
            file,
            ops: Mutex::default(),
        };
        data.persist();
        Ok(data)
    }

    fn count(&self, kind: &'static str) {
        *self.ops.lock().unwrap().entry(kind).or_default() += 1;
    }

    /// Operations so far by kind.
    pub fn ops(&self) -> BTreeMap<&'static str, u64> {
        self.ops.lock().unwrap().clone()
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.count("get");
        self.map.lock().unwrap().get(key).cloned()
    }

    pub fn set(&self, key: String, value: Vec<u8>) {
        self.count("set");
        self.map.lock().unwrap().insert(key, value);
        self.persist();
    }

    pub fn delete(&self, key: &str) {
        self.count("delete");
        self.map.lock().unwrap().remove(key);
        self.persist();
    }

    pub fn keys(&self) -> Vec<String> {
        self.count("list");
        self.map.lock().unwrap().keys().cloned().collect()
    }

    /// Add `delta` to the counter at `key` (absent counts as 0) in one
    /// step under the lock; the new value. A counter is stored as its
    /// decimal text; a value that is not one is an error, as a store that
    /// cannot increment it reports.
    pub fn increment(&self, key: &str, delta: i64) -> std::result::Result<i64, String> {
        self.count("increment");
        let mut map = self.map.lock().unwrap();
        let current = match map.get(key) {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| format!("the value at `{key}` is not a counter"))?,
        };
        let new = current.saturating_add(delta);
        map.insert(key.to_string(), new.to_string().into_bytes());
        drop(map);
        self.persist();
        Ok(new)
    }

    /// Set `key` to `value` if it still holds `expected` (`None`: absent);
    /// otherwise what it holds now.
    pub fn swap(
        &self,
        key: &str,
        expected: &Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> std::result::Result<(), Option<Vec<u8>>> {
        let mut map = self.map.lock().unwrap();
        let current = map.get(key).cloned();
        if &current != expected {
            return Err(current);
        }
        map.insert(key.to_string(), value);
        drop(map);
        self.persist();
        Ok(())
    }

    /// Write the file atomically (temp file + rename) so a reader never
    /// sees half a document.
    fn persist(&self) {
        let Some(f) = &self.file else { return };
        let doc: BTreeMap<String, serde_json::Value> = self
            .map
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = match std::str::from_utf8(v) {
                    Ok(s) => serde_json::Value::String(s.to_string()),
                    Err(_) => serde_json::json!({
                        "base64": base64::engine::general_purpose::STANDARD.encode(v)
                    }),
                };
                (k.clone(), v)
            })
            .collect();
        let tmp = f.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, f)) {
            eprintln!("spin-host: could not write {}: {e}", f.display());
        }
    }
}

/// What one instance may see: the shared data, its allowed store labels and
/// its component variables.
pub struct SpinCtx {
    pub kv: Arc<KvData>,
    pub allowed_stores: Arc<Vec<String>>,
    pub variables: Arc<BTreeMap<String, String>>,
}

pub trait SpinView: Send {
    fn spin(&mut self) -> (&mut SpinCtx, &mut wasmtime::component::ResourceTable);
}

/// The `HasData` marker for these bindings.
pub struct Spin;

impl HasData for Spin {
    type Data<'a> = SpinParts<'a>;
}

pub struct SpinParts<'a> {
    pub(crate) ctx: &'a mut SpinCtx,
    pub(crate) table: &'a mut wasmtime::component::ResourceTable,
}

pub fn add_to_linker<T: SpinView + 'static>(linker: &mut wasmtime::component::Linker<T>) -> Result<()> {
    fn get<T: SpinView>(t: &mut T) -> SpinParts<'_> {
        let (ctx, table) = t.spin();
        SpinParts { ctx, table }
    }
    bindings::Host_::add_to_linker::<T, Spin>(linker, get::<T>)?;
    Ok(())
}

/// The store this handle refers to, checked against the allowed labels.
fn with_kv<T, R>(
    store: &Accessor<T, Spin>,
    handle: &Resource<StoreHandle>,
    f: impl FnOnce(&KvData) -> R,
) -> wasmtime::Result<R> {
    store.with(|mut access| {
        let parts = access.get();
        let _label = &parts.table.get(handle)?.label;
        Ok(f(&parts.ctx.kv))
    })
}

impl key_value::Host for SpinParts<'_> {}

impl key_value::HostStore for SpinParts<'_> {
    fn drop(&mut self, rep: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl<T> key_value::HostStoreWithStore<T> for Spin {
    async fn open(
        store: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<StoreHandle>, key_value::Error>> {
        store.with(|mut access| {
            let parts = access.get();
            if !parts.ctx.allowed_stores.contains(&label) {
                return Ok(Err(key_value::Error::AccessDenied));
            }
            if label != "default" {
                return Ok(Err(key_value::Error::NoSuchStore));
            }
            Ok(Ok(parts.table.push(StoreHandle { label })?))
        })
    }

    async fn get(
        store: &Accessor<T, Self>,
        self_: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        with_kv(store, &self_, |kv| Ok(kv.get(&key)))
    }

    async fn set(
        store: &Accessor<T, Self>,
        self_: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        with_kv(store, &self_, |kv| {
            kv.set(key, value);
            Ok(())
        })
    }

    async fn delete(
        store: &Accessor<T, Self>,
        self_: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        with_kv(store, &self_, |kv| {
            kv.delete(&key);
            Ok(())
        })
    }

    async fn exists(
        store: &Accessor<T, Self>,
        self_: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        with_kv(store, &self_, |kv| Ok(kv.get(&key).is_some()))
    }

    async fn get_keys(
        store: &Accessor<T, Self>,
        self_: Resource<StoreHandle>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), key_value::Error>>)> {
        let keys = with_kv(store, &self_, |kv| kv.keys())?;
        store.with(|mut access| {
            let stream = StreamReader::new(&mut access, keys)?;
            let done = FutureReader::new(&mut access, async {
                wasmtime::error::Ok(Ok::<(), key_value::Error>(()))
            })?;
            Ok((stream, done))
        })
    }
}

impl variables::Host for SpinParts<'_> {}

impl<T> variables::HostWithStore<T> for Spin {
    async fn get(store: &Accessor<T, Self>, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        store.with(|mut access| {
            let parts = access.get();
            Ok(match parts.ctx.variables.get(&name) {
                Some(v) => Ok(v.clone()),
                None => Err(variables::Error::Undefined(format!(
                    "no variable `{name}` for this component"
                ))),
            })
        })
    }
}
