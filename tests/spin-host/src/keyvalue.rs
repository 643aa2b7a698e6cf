//! `wasi:keyvalue/store` and `wasi:keyvalue/atomics` (the 2024-10-17
//! draft spin-sdk 7 ships) over the same shared data as `spin:key-value`,
//! as Spin backs both with one store. `increment` is one step under the
//! data's lock, so concurrent instances never lose an increment; that is
//! what the gateway's strict rate-limit backend relies on.

use wasmtime::component::Resource;

use crate::spin::bindings::wasi::keyvalue::{atomics, store};
use crate::spin::SpinParts;

/// A bucket the guest opened (only `default` exists).
pub struct BucketHandle;

/// A compare-and-swap in progress: the key and the value it was read at.
pub struct CasHandle {
    key: String,
    seen: Option<Vec<u8>>,
}

impl store::Host for SpinParts<'_> {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<BucketHandle>, store::Error>> {
        if !self.ctx.allowed_stores.contains(&identifier) {
            return Ok(Err(store::Error::AccessDenied));
        }
        if identifier != "default" {
            return Ok(Err(store::Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(BucketHandle)?))
    }
}

impl store::HostBucket for SpinParts<'_> {
    fn get(
        &mut self,
        _: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.ctx.kv.get(&key)))
    }

    fn set(
        &mut self,
        _: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        self.ctx.kv.set(key, value);
        Ok(Ok(()))
    }

    fn delete(&mut self, _: Resource<BucketHandle>, key: String) -> wasmtime::Result<Result<(), store::Error>> {
        self.ctx.kv.delete(&key);
        Ok(Ok(()))
    }

    fn exists(&mut self, _: Resource<BucketHandle>, key: String) -> wasmtime::Result<Result<bool, store::Error>> {
        Ok(Ok(self.ctx.kv.get(&key).is_some()))
    }

    /// One page with every key: the store is small and in memory.
    fn list_keys(
        &mut self,
        _: Resource<BucketHandle>,
        _cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        Ok(Ok(store::KeyResponse {
            keys: self.ctx.kv.keys(),
            cursor: None,
        }))
    }

    fn drop(&mut self, rep: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl atomics::Host for SpinParts<'_> {
    fn increment(
        &mut self,
        _: Resource<BucketHandle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        Ok(self.ctx.kv.increment(&key, delta).map_err(store::Error::Other))
    }

    fn swap(&mut self, cas: Resource<CasHandle>, value: Vec<u8>) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        Ok(match self.ctx.kv.swap(&cas.key, &cas.seen, value) {
            Ok(()) => Ok(()),
            Err(now) => {
                let retry = self.table.push(CasHandle {
                    key: cas.key,
                    seen: now,
                })?;
                Err(atomics::CasError::CasFailed(retry))
            }
        })
    }
}

impl atomics::HostCas for SpinParts<'_> {
    fn new(
        &mut self,
        _: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CasHandle>, store::Error>> {
        let seen = self.ctx.kv.get(&key);
        Ok(Ok(self.table.push(CasHandle { key, seen })?))
    }

    fn current(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    fn drop(&mut self, rep: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
