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
//!
//! `tensors.rs` takes candle tensors and reads their storage in place (or declines them);
//! this file checks the shapes and splits the rows between threads; `kernels.rs` holds the
//! scores, softmax and weighted sums of one row's query heads that share a KV head, and
//! `avx2.rs` their AVX2 versions; `blocked.rs` takes many rows at once, their query
//! vectors as the lanes of a vector, where the CPU has AVX-512 (`avx512.rs` its kernels).

use rayon::prelude::*;

use crate::error::{Error, Result};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod blocked;
mod kernels;
mod tensors;
#[cfg(test)]
mod tests;

use kernels::{score, softmax_scaled, weigh, Seen};
pub(crate) use tensors::{attend_tensors, KvAxes};

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
    /// Row `r` sees the own positions its list (the `r`-th) names, each once (a list holds
    /// no repeats): a token tree's contexts.
    Listed(&'a [Vec<u32>]),
}

/// The attention heads' shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    /// `(heads, query heads per KV head, head_dim)`, once the shape was checked.
    fn per_kv(&self) -> (usize, usize, usize) {
        (self.heads, self.heads / self.kv_heads, self.head_dim)
    }
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
    attend_by(q, rows, shape, prefix, own, visible, Path::Blocked)
}

/// How [`attend_by`] walks the rows; [`attend`] takes `Blocked`, the bench compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// A row at a time, each query head reading its KV head's keys and values.
    OneHead,
    /// A row at a time, the query heads of a KV head reading its keys and values together.
    Grouped,
    /// Rows that share keys as the lanes of a vector (`blocked.rs`) where the CPU and the
    /// shapes allow, else `Grouped`.
    Blocked,
}

/// [`attend`] along `path`.
fn attend_by(
    q: &[f32],
    rows: usize,
    shape: Heads,
    prefix: Option<KvSlice>,
    own: KvSlice,
    visible: Visible,
    path: Path,
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
        group: if path == Path::OneHead { 1 } else { heads / kv_heads },
    };
    #[cfg(target_arch = "x86_64")]
    if path == Path::Blocked && blocked::takes(&job, rows) {
        return Ok(blocked::attend(&job, rows));
    }
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
    /// Query heads that read a KV head's keys and values together: all of them, or one.
    group: usize,
}

impl Job<'_> {
    /// Rows `first..` into `out` (whole rows of `heads * head_dim`, zeroed).
    fn rows(&self, first: usize, out: &mut [f32]) {
        let (heads, rep, hd) = self.shape.per_kv();
        let kv_heads = self.shape.kv_heads;
        let pre_len = self.prefix.map_or(0, |p| p.len);
        let mut scores = Vec::new();
        for (i, out_row) in out.chunks_mut(heads * hd).enumerate() {
            let r = first + i;
            let own_seen = match self.visible {
                Visible::Causal { past } => Seen::First(past + r + 1),
                Visible::Listed(lists) => Seen::Listed(&lists[r]),
            };
            // A row of scores per query head of a KV head's group (`n` apart): the group
            // reads each key and value once (`kernels.rs`).
            let n = pre_len + own_seen.count();
            scores.resize(self.group * n, 0.0);
            for g in 0..kv_heads {
                for h0 in (0..rep).step_by(self.group) {
                    // The group's query heads are adjacent in `q` and in `out`.
                    let heads_here = self.group.min(rep - h0);
                    let first_head = r * heads + g * rep + h0;
                    let qs = &self.q[first_head * hd..][..heads_here * hd];
                    let scores = &mut scores[..heads_here * n];
                    if let Some(p) = &self.prefix {
                        score(qs, hd, p, g, Seen::First(p.len), scores, n);
                    }
                    score(qs, hd, &self.own, g, own_seen, &mut scores[pre_len..], n);
                    for row in scores.chunks_mut(n) {
                        softmax_scaled(row, self.scale);
                    }
                    let o = &mut out_row[(g * rep + h0) * hd..][..heads_here * hd];
                    if let Some(p) = &self.prefix {
                        weigh(scores, n, p, g, Seen::First(p.len), o, hd);
                    }
                    weigh(&scores[pre_len..], n, &self.own, g, own_seen, o, hd);
                }
            }
        }
    }
}

/// Microseconds per call of attention at SmolLM2's heads (9 over 3 KV heads of 64): `rows`
/// query rows after a `prefix`-position prompt, as a causal prefill (`nodes` 0) or as a
/// decode pass over a token tree of `nodes` positions (row `r` seeing up to 6 of them),
/// along `path`, best of `repeats`. For `cargo bench --bench skinny`.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn bench_us(
    rows: usize,
    prefix: usize,
    nodes: usize,
    path: Path,
    repeats: usize,
) -> Result<f64> {
    let shape = Heads {
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
    };
    let values = |n: usize, seed: usize| -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 0.5).collect()
    };
    let own_len = if nodes == 0 { rows } else { nodes };
    let (pk, pv) = (values(3 * prefix * 64, 1), values(3 * prefix * 64, 2));
    let (ok, ov) = (values(3 * own_len * 64, 3), values(3 * own_len * 64, 4));
    // Head-major, as a prompt's cache holds them.
    let pre = KvSlice {
        k: &pk,
        v: &pv,
        len: prefix,
        head_stride: prefix * 64,
        pos_stride: 64,
    };
    let own = KvSlice {
        k: &ok,
        v: &ov,
        len: own_len,
        head_stride: own_len * 64,
        pos_stride: 64,
    };
    let q = values(rows * 9 * 64, 5);
    let lists: Vec<Vec<u32>> = (0..rows)
        .map(|r| (0..(r % 6 + 1).min(own_len)).map(|i| ((r + i * 5) % own_len) as u32).collect())
        .collect();
    let visible = if nodes == 0 {
        Visible::Causal { past: 0 }
    } else {
        Visible::Listed(&lists)
    };
    let prefix = (prefix > 0).then_some(pre);
    let run = || attend_by(&q, rows, shape, prefix, own, visible, path);
    std::hint::black_box(run()?);
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let started = std::time::Instant::now();
        std::hint::black_box(run()?);
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best * 1e6)
}
