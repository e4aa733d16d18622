//! One query head against one [`KvSlice`]: its scores, their softmax and the weighted sum
//! of the values. Each takes its AVX2 version (`avx2.rs`) where the CPU has AVX2 with FMA
//! and the head's size allows; the portable version otherwise.

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
}

/// `out[j] = q · k_j` for the positions `seen` of head `g`.
pub(super) fn score(q: &[f32], s: &KvSlice, g: usize, seen: Seen, out: &mut [f32]) {
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
pub(super) fn weigh(p: &[f32], s: &KvSlice, g: usize, seen: Seen, out: &mut [f32]) {
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
