//! Inference attention in one pass over raw f32 buffers: for each query row and head, the
//! scores against a shared prefix's keys and the row's own keys, their softmax and the
//! weighted sum of the values, written straight into the `[rows, heads * head_dim]` layout
//! the output projection reads.
//!
//! Why not candle's ops: composed from them, attention is ~15 ops per layer (transposes to
//! and from the head-major layout, the scale, the score matmuls against the prefix and the
//! own keys, a concatenation, a mask, the softmax, two slices, two weighted-sum matmuls, an
//! addition, a token tree's gather), each a pass over memory and most a parallel dispatch.
//! On SmolLM2 they took ~73 ms of a query's ~480 ms of decoding and 1.4-1.8 ms per layer of
//! a ~100-position prefill for ~30 MFLOP of work (docs/PERFORMANCE.md, "Kernels").
//! Here a row's keys are read in place (a token tree's nodes by index, never gathered),
//! the masked keys are skipped rather than scored, and each row costs one task.

use candle_core::{CpuStorage, Layout, Storage, Tensor};
use rayon::prelude::*;

use super::expf::exp_nonpositive;
use crate::error::{Error, Result};

/// Where a keys/values tensor keeps its heads and positions.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KvAxes {
    /// A [`super::KvCache`] layer: `[1, kv_heads, len, head_dim]`.
    Cache,
    /// A [`super::TreeKv`] layer: `[nodes, kv_heads, head_dim]`.
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

/// Keys and values of one sequence, read in place: element `d` of head `g` at position `j`
/// is `k[g * head_stride + j * pos_stride + d]` (and the same in `v`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct KvSlice<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    /// Positions held.
    pub len: usize,
    pub head_stride: usize,
    pub pos_stride: usize,
}

/// Which of its own keys each query row sees (after every position of the prefix).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Visible<'a> {
    /// Row `r` sees own positions `0..=past + r`: a prompt's causal prefill, whose first
    /// `past` own positions were computed before this call.
    Causal { past: usize },
    /// Row `r` sees the own positions its list (the `r`-th) names: a token tree's contexts.
    Listed(&'a [Vec<u32>]),
}

/// The attention heads' shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Attention of `rows` query rows `q` (`[rows, heads, head_dim]`, after RoPE, unscaled)
/// over every position of `prefix` and the positions of `own` that `visible` gives each
/// row, with grouped-query heads (query head `hh` reads KV head `hh / (heads / kv_heads)`).
/// Returns `[rows, heads, head_dim]`: per row and head `softmax(q·Kᵀ / √head_dim) V`.
pub(crate) fn attend(
    q: &[f32],
    rows: usize,
    shape: Heads,
    prefix: Option<KvSlice>,
    own: KvSlice,
    visible: Visible,
) -> Result<Vec<f32>> {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    if kv_heads == 0 || heads % kv_heads != 0 || hd == 0 {
        return Err(Error::invalid(format!(
            "attend: {heads} heads over {kv_heads} KV heads of {hd} dims"
        )));
    }
    let row_len = heads * hd;
    if q.len() != rows * row_len {
        return Err(Error::invalid(format!(
            "attend: {} query values for {rows} rows of {heads} heads x {hd}",
            q.len()
        )));
    }
    let prefix = prefix.filter(|p| p.len > 0);
    if let Some(p) = &prefix {
        check_slice("prefix", p, kv_heads, hd)?;
    }
    check_slice("own", &own, kv_heads, hd)?;
    match visible {
        Visible::Causal { past } => {
            if past + rows > own.len {
                return Err(Error::invalid(format!(
                    "attend: rows {past}..{} of a causal prefill, but {} own positions",
                    past + rows,
                    own.len
                )));
            }
        }
        Visible::Listed(lists) => {
            if lists.len() != rows {
                return Err(Error::invalid(format!(
                    "attend: {} context lists for {rows} rows",
                    lists.len()
                )));
            }
            for (r, list) in lists.iter().enumerate() {
                if let Some(&bad) = list.iter().find(|&&j| j as usize >= own.len) {
                    return Err(Error::invalid(format!(
                        "attend: row {r} sees own position {bad} of {}",
                        own.len
                    )));
                }
                if list.is_empty() && prefix.is_none() {
                    return Err(Error::invalid(format!("attend: row {r} sees no key")));
                }
            }
        }
    }
    let job = Job {
        q,
        shape,
        prefix,
        own,
        visible,
        scale: 1.0 / (hd as f32).sqrt(),
    };
    // Zeros: each row's heads add their weighted values into it.
    let mut out = vec![0f32; rows * row_len];
    // Flops, about: every head of every row scores and weighs at most every key.
    let keys = prefix.map_or(0, |p| p.len) + own.len;
    let work = rows * heads * keys * hd * 4;
    let threads = rayon::current_num_threads().max(1);
    if work < PARALLEL_WORK || threads == 1 || rows == 1 {
        job.rows(0, &mut out);
    } else {
        // A few blocks per thread, so that rows seeing more keys (a causal prefill's last)
        // balance out.
        let block = rows.div_ceil(threads * 4).max(1);
        out.par_chunks_mut(block * row_len)
            .enumerate()
            .for_each(|(b, chunk)| job.rows(b * block, chunk));
    }
    Ok(out)
}

/// Below this many flops one thread does it all (a hand-off would cost more).
const PARALLEL_WORK: usize = 1 << 18;

/// `s`'s largest index must lie inside its buffers.
fn check_slice(what: &str, s: &KvSlice, kv_heads: usize, hd: usize) -> Result<()> {
    if s.len == 0 {
        return Ok(());
    }
    if s.len > 1 && s.pos_stride < hd {
        return Err(Error::invalid(format!(
            "attend: {what} positions overlap: {} values apart for {hd} dims",
            s.pos_stride
        )));
    }
    let need = (kv_heads - 1) * s.head_stride + (s.len - 1) * s.pos_stride + hd;
    if s.k.len() < need || s.v.len() < need {
        return Err(Error::invalid(format!(
            "attend: {what} keys ({} values) and values ({}) too short for {} positions of \
             {kv_heads} heads (stride {} per head, {} per position, {hd} dims)",
            s.k.len(),
            s.v.len(),
            s.len,
            s.head_stride,
            s.pos_stride
        )));
    }
    Ok(())
}

/// One call's inputs, shared by the row blocks.
struct Job<'a> {
    q: &'a [f32],
    shape: Heads,
    prefix: Option<KvSlice<'a>>,
    own: KvSlice<'a>,
    visible: Visible<'a>,
    scale: f32,
}

/// The positions one row sees in a [`KvSlice`]: a leading range or a list.
#[derive(Clone, Copy)]
enum Seen<'a> {
    First(usize),
    Listed(&'a [u32]),
}

impl Seen<'_> {
    fn count(&self) -> usize {
        match self {
            Seen::First(n) => *n,
            Seen::Listed(l) => l.len(),
        }
    }
}

impl Job<'_> {
    /// Rows `first..` into `out` (whole rows of `heads * head_dim`, zeroed).
    fn rows(&self, first: usize, out: &mut [f32]) {
        let Heads {
            heads,
            kv_heads,
            head_dim: hd,
        } = self.shape;
        let rep = heads / kv_heads;
        let pre_len = self.prefix.map_or(0, |p| p.len);
        let mut scores = Vec::new();
        for (i, out_row) in out.chunks_mut(heads * hd).enumerate() {
            let r = first + i;
            let own_seen = match self.visible {
                Visible::Causal { past } => Seen::First(past + r + 1),
                Visible::Listed(lists) => Seen::Listed(&lists[r]),
            };
            scores.resize(pre_len + own_seen.count(), 0.0);
            for hh in 0..heads {
                let g = hh / rep;
                let q = &self.q[(r * heads + hh) * hd..][..hd];
                let (pre_scores, own_scores) = scores.split_at_mut(pre_len);
                if let Some(p) = &self.prefix {
                    score(q, p, g, Seen::First(p.len), pre_scores);
                }
                score(q, &self.own, g, own_seen, own_scores);
                softmax_scaled(&mut scores, self.scale);
                let o = &mut out_row[hh * hd..][..hd];
                let (pre_probs, own_probs) = scores.split_at(pre_len);
                if let Some(p) = &self.prefix {
                    weigh(pre_probs, p, g, Seen::First(p.len), o);
                }
                weigh(own_probs, &self.own, g, own_seen, o);
            }
        }
    }
}

/// `out[j] = q · k_j` for the positions `seen` of head `g`.
fn score(q: &[f32], s: &KvSlice, g: usize, seen: Seen, out: &mut [f32]) {
    let k = &s.k[g * s.head_stride..];
    #[cfg(target_arch = "x86_64")]
    if q.len().is_multiple_of(8) && avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA; every index read was bounds-checked by
        // `check_slice` (positions < len) and `attend` (listed positions < len).
        return unsafe { avx2::score(q, k, s.pos_stride, seen, out) };
    }
    let key = |j: usize| &k[j * s.pos_stride..][..q.len()];
    let dot = |j: usize| q.iter().zip(key(j)).map(|(a, b)| a * b).sum::<f32>();
    match seen {
        Seen::First(n) => (0..n).for_each(|j| out[j] = dot(j)),
        Seen::Listed(l) => l.iter().zip(out).for_each(|(&j, o)| *o = dot(j as usize)),
    }
}

/// `out += Σ_j p[j] v_j` over the positions `seen` of head `g`.
fn weigh(p: &[f32], s: &KvSlice, g: usize, seen: Seen, out: &mut [f32]) {
    let v = &s.v[g * s.head_stride..];
    #[cfg(target_arch = "x86_64")]
    if out.len().is_multiple_of(8) && avx2::available() {
        // SAFETY: as in `score`.
        return unsafe { avx2::weigh(p, v, s.pos_stride, seen, out) };
    }
    let mut add = |w: f32, j: usize| {
        let row = &v[j * s.pos_stride..][..out.len()];
        out.iter_mut().zip(row).for_each(|(o, x)| *o += w * x);
    };
    match seen {
        Seen::First(n) => (0..n).for_each(|j| add(p[j], j)),
        Seen::Listed(l) => l.iter().zip(p).for_each(|(&j, &w)| add(w, j as usize)),
    }
}

/// `x = softmax(scale * x)` in place.
fn softmax_scaled(x: &mut [f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::softmax_scaled(x, scale) };
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = exp_nonpositive((*v - max) * scale);
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Seen;
    use crate::model::expf::avx2::exp8;

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    /// [`super::score`] with `q.len()` a multiple of 8: eight keys at a time, one
    /// accumulator each, summed across lanes by one transposing reduction.
    ///
    /// # Safety
    /// AVX2 and FMA; `k[j * stride..][..q.len()]` in bounds for every position seen.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn score(q: &[f32], k: &[f32], stride: usize, seen: Seen, out: &mut [f32]) {
        let n = seen.count();
        let pos = |i: usize| match seen {
            Seen::First(_) => i,
            Seen::Listed(l) => l[i] as usize,
        };
        let kp = k.as_ptr();
        let mut i = 0;
        while i + 8 <= n {
            let ptrs: [*const f32; 8] = std::array::from_fn(|t| kp.add(pos(i + t) * stride));
            let sums = dot8(q, ptrs);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), sums);
            i += 8;
        }
        while i < n {
            out[i] = dot1(q, kp.add(pos(i) * stride));
            i += 1;
        }
    }

    /// `q` against eight keys: `[q·k_0, ..., q·k_7]`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot8(q: &[f32], k: [*const f32; 8]) -> __m256 {
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut d = 0;
        while d < q.len() {
            let qv = _mm256_loadu_ps(q.as_ptr().add(d));
            for t in 0..8 {
                acc[t] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[t].add(d)), acc[t]);
            }
            d += 8;
        }
        // Lane sums of the eight accumulators, in order, in one vector.
        let t0 = _mm256_hadd_ps(acc[0], acc[1]);
        let t1 = _mm256_hadd_ps(acc[2], acc[3]);
        let t2 = _mm256_hadd_ps(acc[4], acc[5]);
        let t3 = _mm256_hadd_ps(acc[6], acc[7]);
        let u0 = _mm256_hadd_ps(t0, t1);
        let u1 = _mm256_hadd_ps(t2, t3);
        let lo = _mm256_permute2f128_ps::<0x20>(u0, u1);
        let hi = _mm256_permute2f128_ps::<0x31>(u0, u1);
        _mm256_add_ps(lo, hi)
    }

    /// `q · k` for one key.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot1(q: &[f32], k: *const f32) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut d = 0;
        while d < q.len() {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(q.as_ptr().add(d)),
                _mm256_loadu_ps(k.add(d)),
                acc,
            );
            d += 8;
        }
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// [`super::weigh`] with `out.len()` a multiple of 8: 64 dims at a time in eight
    /// accumulators (one broadcast weight, eight loads and eight FMAs per position), the
    /// rest 8 at a time.
    ///
    /// # Safety
    /// AVX2 and FMA; `v[j * stride..][..out.len()]` in bounds for every position seen.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weigh(p: &[f32], v: &[f32], stride: usize, seen: Seen, out: &mut [f32]) {
        let n = seen.count();
        let vp = v.as_ptr();
        let row = |i: usize| match seen {
            Seen::First(_) => vp.add(i * stride),
            Seen::Listed(l) => vp.add(l[i] as usize * stride),
        };
        let mut d = 0;
        while d + 64 <= out.len() {
            let o = out.as_mut_ptr().add(d);
            let mut acc: [__m256; 8] = std::array::from_fn(|t| _mm256_loadu_ps(o.add(8 * t)));
            for (i, &w) in p.iter().enumerate().take(n) {
                let w = _mm256_set1_ps(w);
                let r = row(i).add(d);
                for (t, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(r.add(8 * t)), *a);
                }
            }
            for (t, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(8 * t), *a);
            }
            d += 64;
        }
        while d < out.len() {
            let o = out.as_mut_ptr().add(d);
            let mut acc = _mm256_loadu_ps(o);
            for (i, &w) in p.iter().enumerate().take(n) {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(w), _mm256_loadu_ps(row(i).add(d)), acc);
            }
            _mm256_storeu_ps(o, acc);
            d += 8;
        }
    }

    /// [`super::softmax_scaled`] on eight lanes: a max pass, an exp-and-sum pass, a scale
    /// pass (the exponentials dominate: a scalar `exp` per score cost as much as the
    /// products).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_scaled(x: &mut [f32], scale: f32) {
        let n = x.len();
        let body = n - n % 8;
        let (head, tail) = x.split_at_mut(body);
        let mut max = tail.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        if body > 0 {
            let mut m = _mm256_set1_ps(max);
            for c in head.chunks_exact(8) {
                // SAFETY: `c` holds eight floats.
                m = _mm256_max_ps(m, unsafe { _mm256_loadu_ps(c.as_ptr()) });
            }
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` holds eight floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
            max = lanes.iter().fold(max, |a, &b| a.max(b));
        }
        let (vmax, vscale) = (_mm256_set1_ps(max), _mm256_set1_ps(scale));
        let mut acc = _mm256_setzero_ps();
        for c in head.chunks_exact_mut(8) {
            // SAFETY: `c` holds eight floats.
            unsafe {
                let e = exp8(_mm256_mul_ps(
                    _mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), vmax),
                    vscale,
                ));
                acc = _mm256_add_ps(acc, e);
                _mm256_storeu_ps(c.as_mut_ptr(), e);
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds eight floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut sum: f32 = lanes.iter().sum();
        for v in tail.iter_mut() {
            *v = super::exp_nonpositive((*v - max) * scale);
            sum += *v;
        }
        let inv = _mm256_set1_ps(1.0 / sum);
        for c in head.chunks_exact_mut(8) {
            // SAFETY: `c` holds eight floats.
            unsafe {
                _mm256_storeu_ps(
                    c.as_mut_ptr(),
                    _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), inv),
                )
            };
        }
        for v in tail.iter_mut() {
            *v *= 1.0 / sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads_of(heads: usize, kv_heads: usize, head_dim: usize) -> Heads {
        Heads {
            heads,
            kv_heads,
            head_dim,
        }
    }

    /// Deterministic values in [-2, 2).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    /// The definition, in f64: per row and head, the scores against the keys the row sees
    /// (all of the prefix, then its own), their softmax and the weighted values.
    fn reference(
        q: &[f32],
        rows: usize,
        shape: Heads,
        prefix: Option<KvSlice>,
        own: KvSlice,
        seen: &[Vec<usize>],
    ) -> Vec<f32> {
        let Heads {
            heads,
            kv_heads,
            head_dim: hd,
        } = shape;
        let mut out = vec![0f32; rows * heads * hd];
        for r in 0..rows {
            for hh in 0..heads {
                let g = hh / (heads / kv_heads);
                let qr = &q[(r * heads + hh) * hd..][..hd];
                let mut keys: Vec<(&[f32], &[f32])> = Vec::new();
                let at = |s: &KvSlice<'_>, j: usize| g * s.head_stride + j * s.pos_stride;
                if let Some(p) = &prefix {
                    for j in 0..p.len {
                        keys.push((&p.k[at(p, j)..][..hd], &p.v[at(p, j)..][..hd]));
                    }
                }
                for &j in &seen[r] {
                    keys.push((&own.k[at(&own, j)..][..hd], &own.v[at(&own, j)..][..hd]));
                }
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|(k, _)| {
                        qr.iter()
                            .zip(*k)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let o: f64 = e.iter().zip(&keys).map(|(w, (_, v))| w * v[d] as f64).sum();
                    out[(r * heads + hh) * hd + d] = (o / sum) as f32;
                }
            }
        }
        out
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// A cache-shaped slice `[kv_heads, len, hd]` inside a buffer that holds `cap`
    /// positions per head (as a truncated cache's view does).
    fn cache_slice(k: &[f32], v: &[f32], len: usize, cap: usize, hd: usize) -> KvSlice<'static> {
        KvSlice {
            k: k.to_vec().leak(),
            v: v.to_vec().leak(),
            len,
            head_stride: cap * hd,
            pos_stride: hd,
        }
    }

    /// Causal prefill after `past` own positions, with and without a prefix, at head
    /// sizes taking the vector path (64, 16) and the scalar one (12), row counts below and
    /// above the parallel split, and prefix lengths that leave a tail of fewer than eight
    /// keys.
    #[test]
    fn causal_rows_match_the_definition() -> Result<()> {
        for &(heads, kv_heads, hd) in &[(9, 3, 64), (4, 2, 16), (2, 1, 12), (4, 4, 8)] {
            let shape = heads_of(heads, kv_heads, hd);
            for &(rows, past, pre_len) in
                &[(1, 0, 0), (3, 5, 0), (37, 11, 23), (101, 23, 0), (5, 0, 9)]
            {
                let cap = past + rows + 3;
                let q = values(rows * heads * hd, 1 + rows as u64);
                let own_k = values(kv_heads * cap * hd, 2);
                let own_v = values(kv_heads * cap * hd, 3);
                let own = cache_slice(&own_k, &own_v, past + rows, cap, hd);
                let pk = values(kv_heads * pre_len * hd, 4);
                let pv = values(kv_heads * pre_len * hd, 5);
                let prefix = (pre_len > 0).then(|| cache_slice(&pk, &pv, pre_len, pre_len, hd));
                let got = attend(&q, rows, shape, prefix, own, Visible::Causal { past })?;
                let seen: Vec<Vec<usize>> = (0..rows).map(|r| (0..=past + r).collect()).collect();
                let want = reference(&q, rows, shape, prefix, own, &seen);
                let d = max_diff(&got, &want);
                assert!(
                    d < 1e-5,
                    "{heads}/{kv_heads}x{hd}, rows {rows}, past {past}, prefix {pre_len}: {d}"
                );
            }
        }
        Ok(())
    }

    /// A token tree's rows: own keys in a `[nodes, kv_heads, hd]` buffer, each row seeing
    /// the nodes its list names (any order, depths from 1 to 19), after a prefix.
    #[test]
    fn listed_rows_match_the_definition() -> Result<()> {
        for &(heads, kv_heads, hd, pre_len) in &[(9, 3, 64, 124), (4, 2, 16, 7), (2, 1, 12, 0)] {
            let shape = heads_of(heads, kv_heads, hd);
            let nodes = 40;
            let rows = 32;
            let tk = values(nodes * kv_heads * hd, 6);
            let tv = values(nodes * kv_heads * hd, 7);
            let own = KvSlice {
                k: &tk,
                v: &tv,
                len: nodes,
                head_stride: hd,
                pos_stride: kv_heads * hd,
            };
            let lists: Vec<Vec<u32>> = (0..rows)
                .map(|r| {
                    (0..=(r % 19))
                        .map(|i| ((r * 7 + i * 3) % nodes) as u32)
                        .collect()
                })
                .collect();
            let pk = values(kv_heads * pre_len * hd, 8);
            let pv = values(kv_heads * pre_len * hd, 9);
            let prefix = (pre_len > 0).then(|| cache_slice(&pk, &pv, pre_len, pre_len, hd));
            let q = values(rows * heads * hd, 10);
            let got = attend(&q, rows, shape, prefix, own, Visible::Listed(&lists))?;
            let seen: Vec<Vec<usize>> = lists
                .iter()
                .map(|l| l.iter().map(|&j| j as usize).collect())
                .collect();
            let want = reference(&q, rows, shape, prefix, own, &seen);
            let d = max_diff(&got, &want);
            assert!(d < 1e-5, "{heads}/{kv_heads}x{hd}, prefix {pre_len}: {d}");
        }
        Ok(())
    }

    /// Large scores (a softmax that overflows without its max shift) stay finite and exact.
    #[test]
    fn large_scores_are_shifted_before_the_exponential() -> Result<()> {
        let shape = heads_of(1, 1, 8);
        let q: Vec<f32> = vec![30.0; 8];
        let k: Vec<f32> = (0..10 * 8).map(|i| (i / 8) as f32).collect();
        let v = values(10 * 8, 11);
        let own = cache_slice(&k, &v, 10, 10, 8);
        let got = attend(&q, 1, shape, None, own, Visible::Causal { past: 9 })?;
        let want = reference(&q, 1, shape, None, own, &[(0..10).collect()]);
        assert!(got.iter().all(|x| x.is_finite()));
        assert!(max_diff(&got, &want) < 1e-5);
        Ok(())
    }

    /// The tensor entry reads a truncated cache's view (a stride per head longer than its
    /// positions) and a tree layer in place, as the copies would give, and declines
    /// tensors it cannot read (not f32, heads that do not match), leaving them to candle.
    #[test]
    fn tensor_entry_reads_views_in_place_and_declines_the_rest() -> Result<()> {
        use candle_core::{DType, Device};
        let shape = heads_of(4, 2, 8);
        let dev = Device::Cpu;
        let t = |n: usize, seed: u64, dims: &[usize]| {
            Tensor::from_vec(values(n, seed), dims.to_vec(), &dev).unwrap()
        };
        // Own cache: 10 positions held, the first 7 kept (a view), 3 rows after 4 cached.
        let k = t(2 * 10 * 8, 20, &[1, 2, 10, 8]).narrow(2, 0, 7)?;
        let v = t(2 * 10 * 8, 21, &[1, 2, 10, 8]).narrow(2, 0, 7)?;
        assert!(!k.is_contiguous());
        let q = t(3 * 4 * 8, 22, &[3, 32]);
        let pre = (
            t(2 * 5 * 8, 23, &[1, 2, 5, 8]),
            t(2 * 5 * 8, 24, &[1, 2, 5, 8]),
        );
        let visible = Visible::Causal { past: 4 };
        let got = attend_tensors(&q, shape, Some(&pre), (&k, &v), KvAxes::Cache, visible)?
            .expect("f32 views are taken");
        let (kc, vc) = (k.contiguous()?, v.contiguous()?);
        let want = attend_tensors(&q, shape, Some(&pre), (&kc, &vc), KvAxes::Cache, visible)?
            .expect("contiguous tensors are taken");
        assert_eq!(got.dims(), &[3, 32]);
        assert_eq!(got.to_vec2::<f32>()?, want.to_vec2::<f32>()?);
        // A tree layer [nodes, kv_heads, head_dim].
        let (tk, tv) = (t(6 * 2 * 8, 25, &[6, 2, 8]), t(6 * 2 * 8, 26, &[6, 2, 8]));
        let lists = vec![vec![0u32, 3], vec![5], vec![1, 2, 4]];
        let tree = attend_tensors(
            &q,
            shape,
            Some(&pre),
            (&tk, &tv),
            KvAxes::Tree,
            Visible::Listed(&lists),
        )?;
        assert_eq!(tree.expect("a tree layer is taken").dims(), &[3, 32]);
        // Declined: f64 keys; a cache of 3 KV heads where the model has 2.
        let (k64, v64) = (kc.to_dtype(DType::F64)?, vc.to_dtype(DType::F64)?);
        assert!(attend_tensors(&q, shape, None, (&k64, &v64), KvAxes::Cache, visible)?.is_none());
        let (k3, v3) = (
            t(3 * 7 * 8, 27, &[1, 3, 7, 8]),
            t(3 * 7 * 8, 28, &[1, 3, 7, 8]),
        );
        assert!(attend_tensors(&q, shape, None, (&k3, &v3), KvAxes::Cache, visible)?.is_none());
        Ok(())
    }

    /// Bad shapes and positions are refused with what was wrong, never read out of bounds.
    #[test]
    fn refuses_what_does_not_fit() {
        let shape = heads_of(2, 1, 8);
        let kv = values(4 * 8, 12);
        let own = cache_slice(&kv, &kv, 4, 4, 8);
        let q = values(2 * 2 * 8, 13);
        let err = |r: Result<Vec<f32>>| r.unwrap_err().to_string();
        assert!(
            err(attend(&q, 3, shape, None, own, Visible::Causal { past: 0 }))
                .contains("query values")
        );
        assert!(
            err(attend(&q, 2, shape, None, own, Visible::Causal { past: 3 }))
                .contains("own positions")
        );
        let lists = vec![vec![0u32], vec![4u32]];
        assert!(
            err(attend(&q, 2, shape, None, own, Visible::Listed(&lists)))
                .contains("own position 4")
        );
        let lists = vec![vec![0u32], vec![]];
        assert!(err(attend(&q, 2, shape, None, own, Visible::Listed(&lists))).contains("no key"));
        let overlapping = KvSlice {
            pos_stride: 4,
            ..own
        };
        let visible = Visible::Causal { past: 0 };
        assert!(err(attend(&q, 2, shape, None, overlapping, visible)).contains("overlap"));
        let short = KvSlice { len: 5, ..own };
        assert!(err(attend(
            &q,
            2,
            shape,
            None,
            short,
            Visible::Causal { past: 0 }
        ))
        .contains("too short"));
        let odd = heads_of(3, 2, 8);
        assert!(
            err(attend(&q, 2, odd, None, own, Visible::Causal { past: 0 })).contains("KV heads")
        );
    }
}
