//! The query heads that share one KV head against one [`KvSlice`]: their scores, their
//! softmax and the weighted sums of the values. Each takes its AVX2 version (`avx2.rs`)
//! where the CPU has AVX2 with FMA and the head's size allows; the portable version
//! otherwise.

#[cfg(target_arch = "x86_64")]
use super::avx2;
use super::KvSlice;
use crate::model::expf::exp_nonpositive;

/// The positions one row sees in a [`KvSlice`]: a leading range or a list.
#[derive(Clone, Copy)]
pub(super) enum Seen<'a> {
    First(usize),
    Listed(&'a [u32]),
}

impl Seen<'_> {
    pub(super) fn count(&self) -> usize {
        match self {
            Seen::First(n) => *n,
            Seen::Listed(l) => l.len(),
        }
    }

    /// The `i`-th position seen.
    pub(super) fn at(&self, i: usize) -> usize {
        match self {
            Seen::First(_) => i,
            Seen::Listed(l) => l[i] as usize,
        }
    }
}

/// `out[t * ld + i] = q_t · k_(seen i)` for the query vectors `q_t` (`qs[t * hd..][..hd]`)
/// and the positions `seen` of head `g`: every key is read once for all of them.
pub(super) fn score(
    qs: &[f32],
    hd: usize,
    s: &KvSlice,
    g: usize,
    seen: Seen,
    out: &mut [f32],
    ld: usize,
) {
    let k = &s.k[g * s.head_stride..];
    let queries = qs.len() / hd.max(1);
    #[cfg(target_arch = "x86_64")]
    if hd.is_multiple_of(8) && avx2::available() {
        assert!(out.len() >= (queries.max(1) - 1) * ld + seen.count());
        // SAFETY: the CPU has AVX2 and FMA; every key read was bounds-checked by
        // `check_slice` (positions < len) and `attend` (listed positions < len); `out`
        // holds every score written (just asserted).
        return unsafe { avx2::score(qs, hd, k, s.pos_stride, seen, out.as_mut_ptr(), ld) };
    }
    for t in 0..queries {
        let q = &qs[t * hd..][..hd];
        for i in 0..seen.count() {
            let key = &k[seen.at(i) * s.pos_stride..][..hd];
            out[t * ld + i] = q.iter().zip(key).map(|(a, b)| a * b).sum::<f32>();
        }
    }
}

/// `out[t * hd..][..hd] += Σ_i p[t * ld + i] v_(seen i)` for the positions `seen` of head
/// `g`: every value row is read once for all the queries.
pub(super) fn weigh(
    p: &[f32],
    ld: usize,
    s: &KvSlice,
    g: usize,
    seen: Seen,
    out: &mut [f32],
    hd: usize,
) {
    let v = &s.v[g * s.head_stride..];
    let queries = out.len() / hd.max(1);
    #[cfg(target_arch = "x86_64")]
    if hd.is_multiple_of(8) && avx2::available() {
        assert!(p.len() >= (queries.max(1) - 1) * ld + seen.count());
        // SAFETY: as in `score`; `p` holds every weight read (just asserted).
        return unsafe { avx2::weigh(p.as_ptr(), ld, v, s.pos_stride, seen, out, hd) };
    }
    for t in 0..queries {
        let o = &mut out[t * hd..][..hd];
        for i in 0..seen.count() {
            let w = p[t * ld + i];
            let row = &v[seen.at(i) * s.pos_stride..][..hd];
            o.iter_mut().zip(row).for_each(|(o, x)| *o += w * x);
        }
    }
}

/// `x = softmax(scale * x)` in place.
pub(super) fn softmax_scaled(x: &mut [f32], scale: f32) {
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
