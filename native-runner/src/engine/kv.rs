//! The running batch's KV cache.
//!
//! Layout: for each layer a key and a value tensor of shape
//! `[rows, heads, width, head_dim]`. Every row is *left-padded*: its `len`
//! real positions are the last `len` columns and the columns before them
//! are padding that the attention mask hides. That one invariant keeps
//! everything simple: the last input position is always a real token, a
//! decode step just appends a column to every row, and rows of different
//! lengths can share a tensor.
//!
//! Between steps the tensors are the `present.*` outputs of the previous
//! run, fed back as `past_key_values.*` without a copy, in the memory of the
//! device that runs the model (the GPU's under CUDA, through IoBinding). Only when the batch
//! changes (a sequence joins or leaves) are rows gathered into fresh
//! tensors, trimmed to the longest remaining row.

use anyhow::{anyhow, Result};
use ort::memory::AllocationDevice;
use ort::value::{DynTensorValueType, DynValue, Tensor};

/// Model dimensions the cache needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvDims {
    pub layers: usize,
    /// KV heads (`num_key_value_heads`: fewer than the query heads under
    /// grouped-query attention).
    pub heads: usize,
    pub head_dim: usize,
}

impl KvDims {
    /// Bytes one token occupies in the cache: a key and a value vector of
    /// `kv_heads * head_dim` f32 per layer.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.layers * self.heads * self.head_dim * 4
    }
}

/// A batch of per-row KV caches, one ORT value per layer and key/value.
pub struct KvBatch {
    dims: KvDims,
    /// Real length of each row (tokens already in the cache).
    lens: Vec<usize>,
    /// Columns of the tensors (`>=` every `lens[i]`).
    width: usize,
    /// `2 * layers` tensors: layer 0 key, layer 0 value, layer 1 key, ...
    tensors: Vec<DynValue>,
}

impl KvBatch {
    /// `rows` empty caches (`[rows, heads, 0, head_dim]`).
    pub fn empty(dims: KvDims, rows: usize) -> Result<KvBatch> {
        let tensors = (0..2 * dims.layers)
            .map(|_| f32_tensor([rows, dims.heads, 0, dims.head_dim], Vec::new()))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvBatch {
            dims,
            lens: vec![0; rows],
            width: 0,
            tensors,
        })
    }

    /// Wrap the `present.*` outputs of a run.
    pub(crate) fn from_outputs(dims: KvDims, lens: Vec<usize>, width: usize, tensors: Vec<DynValue>) -> KvBatch {
        debug_assert_eq!(tensors.len(), 2 * dims.layers);
        debug_assert!(lens.iter().all(|&l| l <= width));
        KvBatch {
            dims,
            lens,
            width,
            tensors,
        }
    }

    pub fn rows(&self) -> usize {
        self.lens.len()
    }

    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn dims(&self) -> KvDims {
        self.dims
    }

    pub(crate) fn tensors(&self) -> &[DynValue] {
        &self.tensors
    }

    /// Bytes held by the cache tensors (padding included).
    pub fn bytes(&self) -> usize {
        self.rows() * self.width * self.dims.bytes_per_token()
    }

    /// A new batch made of the given `(source, row)` pairs, in order, trimmed
    /// to the longest of them. Used both to drop finished rows (one source)
    /// and to merge newly prefilled rows into the running batch (two).
    pub fn gather(parts: &[(&KvBatch, usize)]) -> Result<KvBatch> {
        let first = parts.first().ok_or_else(|| anyhow!("gather needs at least one row"))?.0;
        let dims = first.dims;
        if parts.iter().any(|(b, _)| b.dims != dims) {
            return Err(anyhow!("gather over caches of different shapes"));
        }
        let lens: Vec<usize> = parts.iter().map(|(b, r)| b.lens[*r]).collect();
        let width = lens.iter().copied().max().unwrap_or(0);
        let (h, d) = (dims.heads, dims.head_dim);
        let rows = parts.len();
        let mut tensors = Vec::with_capacity(2 * dims.layers);
        for t in 0..2 * dims.layers {
            // Rows come from at most two batches: copy each distinct source
            // to the host once (device memory), not once per row.
            let mut batches: Vec<(&KvBatch, Option<DynValue>)> = Vec::new();
            for (b, _) in parts {
                if !batches.iter().any(|(seen, _)| std::ptr::eq(*seen, *b)) {
                    batches.push((b, on_host(&b.tensors[t])?));
                }
            }
            let host = batches
                .iter()
                .map(|(b, copy)| {
                    copy.as_ref()
                        .unwrap_or(&b.tensors[t])
                        .try_extract_tensor::<f32>()
                        .map(|(_, data)| (*b, data))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!("reading a KV tensor: {e}"))?;
            let sources: Vec<&[f32]> = parts
                .iter()
                .map(|(b, _)| {
                    host.iter()
                        .find(|(seen, _)| std::ptr::eq(*seen, *b))
                        .map_or(&[][..], |(_, d)| *d)
                })
                .collect();
            let mut out = vec![0f32; rows * h * width * d];
            for (j, ((src_batch, r), src)) in parts.iter().zip(&sources).enumerate() {
                let len = src_batch.lens[*r];
                let sw = src_batch.width;
                for head in 0..h {
                    let s0 = ((r * h + head) * sw + (sw - len)) * d;
                    let d0 = ((j * h + head) * width + (width - len)) * d;
                    out[d0..d0 + len * d].copy_from_slice(&src[s0..s0 + len * d]);
                }
            }
            tensors.push(f32_tensor([rows, h, width, d], out)?);
        }
        Ok(KvBatch {
            dims,
            lens,
            width,
            tensors,
        })
    }

    /// Keep only the listed rows, in order.
    pub fn select(self, keep: &[usize]) -> Result<KvBatch> {
        if keep.len() == self.rows() && keep.iter().enumerate().all(|(i, &k)| i == k) {
            return Ok(self); // nothing leaves: no copy
        }
        if keep.is_empty() {
            return KvBatch::empty(self.dims, 0);
        }
        let parts: Vec<(&KvBatch, usize)> = keep.iter().map(|&r| (&self, r)).collect();
        KvBatch::gather(&parts)
    }

    /// This batch followed by `other`'s rows.
    pub fn append(self, other: KvBatch) -> Result<KvBatch> {
        if self.rows() == 0 {
            return Ok(other);
        }
        if other.rows() == 0 {
            return Ok(self);
        }
        let parts: Vec<(&KvBatch, usize)> = (0..self.rows())
            .map(|r| (&self, r))
            .chain((0..other.rows()).map(|r| (&other, r)))
            .collect();
        KvBatch::gather(&parts)
    }

    /// One row's cache as plain vectors (`2 * layers` of `[heads, len, head_dim]`),
    /// for tests and debugging.
    pub fn row_data(&self, row: usize) -> Result<Vec<Vec<f32>>> {
        let (h, d, w, len) = (self.dims.heads, self.dims.head_dim, self.width, self.lens[row]);
        self.tensors
            .iter()
            .map(|t| {
                let copy = on_host(t)?;
                let (_, src) = copy
                    .as_ref()
                    .unwrap_or(t)
                    .try_extract_tensor::<f32>()
                    .map_err(|e| anyhow!("{e}"))?;
                let mut out = Vec::with_capacity(h * len * d);
                for head in 0..h {
                    let s0 = ((row * h + head) * w + (w - len)) * d;
                    out.extend_from_slice(&src[s0..s0 + len * d]);
                }
                Ok(out)
            })
            .collect()
    }
}

/// A host copy of `v` when it lives in device memory (`None` when it is
/// already readable from the host). A device-resident cache is copied only
/// when the batch changes, never on a plain decode step.
fn on_host(v: &DynValue) -> Result<Option<DynValue>> {
    let t = v
        .view()
        .downcast::<DynTensorValueType>()
        .map_err(|e| anyhow!("a KV value is not a tensor: {e}"))?;
    if t.memory_info().is_cpu_accessible() {
        return Ok(None);
    }
    t.to(AllocationDevice::CPU, 0)
        .map(|h| Some(h.into_dyn()))
        .map_err(|e| anyhow!("copying a KV tensor to the host: {e}"))
}

pub(crate) fn f32_tensor(shape: [usize; 4], data: Vec<f32>) -> Result<DynValue> {
    let shape: Vec<i64> = shape.iter().map(|&x| x as i64).collect();
    Tensor::from_array((shape, data))
        .map(|t| t.into_dyn())
        .map_err(|e| anyhow!("creating a tensor: {e}"))
}
