//! The entry from candle tensors: their storage is read in place when it holds f32 on the
//! CPU in a layout [`attend`] can walk; anything else is declined, for candle's ops.

use candle_core::{CpuStorage, Layout, Storage, Tensor};

use super::{attend, Heads, KvSlice, Visible};
use crate::error::Result;

/// Where a keys/values tensor keeps its heads and positions.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KvAxes {
    /// A [`crate::model::KvCache`] layer: `[1, kv_heads, len, head_dim]`.
    Cache,
    /// A [`crate::model::TreeKv`] layer: `[nodes, kv_heads, head_dim]`.
    Tree,
}

/// [`attend`] on tensors: `q` `[rows, ..]` holding `heads * head_dim` values per row,
/// contiguous; `prefix` and `own` keys and values as `axes` says (a prefix is always a
/// cache layer). Returns `[rows, heads * head_dim]`, or `None` when the tensors are not
/// f32 on the CPU with rows of `head_dim` contiguous values, or a prefix holds more than
/// one sequence: the caller then composes candle's ops.
pub(crate) fn attend_tensors(
    q: &Tensor,
    shape: Heads,
    prefix: Option<&(Tensor, Tensor)>,
    own: (&Tensor, &Tensor),
    axes: KvAxes,
    visible: Visible,
) -> Result<Option<Tensor>> {
    let rows = q.dim(0)?;
    let (qs, ql) = q.storage_and_layout();
    let Some(qv) = f32_from(&qs, ql).filter(|_| ql.is_contiguous()) else {
        return Ok(None);
    };
    let qv = &qv[..q.elem_count()];
    let pre = prefix.map(|(k, v)| (k.storage_and_layout(), v.storage_and_layout()));
    let prefix = match &pre {
        None => None,
        Some(((ks, kl), (vs, vl))) => match kv_slice(ks, kl, vs, vl, KvAxes::Cache, shape) {
            None => return Ok(None),
            some => some,
        },
    };
    let ((ks, kl), (vs, vl)) = (own.0.storage_and_layout(), own.1.storage_and_layout());
    let Some(own) = kv_slice(&ks, kl, &vs, vl, axes, shape) else {
        return Ok(None);
    };
    let out = attend(qv, rows, shape, prefix, own, visible)?;
    Ok(Some(Tensor::from_vec(
        out,
        (rows, shape.heads * shape.head_dim),
        q.device(),
    )?))
}

/// The f32 elements of a CPU storage from the layout's first one on.
fn f32_from<'a>(s: &'a Storage, l: &Layout) -> Option<&'a [f32]> {
    match s {
        Storage::Cpu(CpuStorage::F32(v)) => v.get(l.start_offset()..),
        _ => None,
    }
}

/// Keys and values read in place, when both are f32 on the CPU with the same strides, one
/// sequence of `shape`'s KV heads, and each head's row of `head_dim` values contiguous.
fn kv_slice<'a>(
    ks: &'a Storage,
    kl: &Layout,
    vs: &'a Storage,
    vl: &Layout,
    axes: KvAxes,
    shape: Heads,
) -> Option<KvSlice<'a>> {
    let (k, v) = (f32_from(ks, kl)?, f32_from(vs, vl)?);
    let (dims, strides) = (kl.dims(), kl.stride());
    if strides != vl.stride() || dims != vl.dims() || strides.last() != Some(&1) {
        return None;
    }
    let (kvh, hd) = (shape.kv_heads, shape.head_dim);
    let (len, head_stride, pos_stride) = match (axes, dims) {
        (KvAxes::Cache, &[1, h, len, d]) if (h, d) == (kvh, hd) => (len, strides[1], strides[2]),
        (KvAxes::Tree, &[len, h, d]) if (h, d) == (kvh, hd) => (len, strides[1], strides[0]),
        _ => return None,
    };
    Some(KvSlice {
        k,
        v,
        len,
        head_stride,
        pos_stride,
    })
}
