//! The kernels of `kernels.rs` on eight lanes (AVX2 with FMA, checked at run time).

use std::arch::x86_64::*;

use super::Seen;
use crate::model::expf::{avx2::exp8, exp_nonpositive};

pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// [`super::score`] with `hd` a multiple of 8: the queries three at a time (the rest in
/// one pair or alone), so that each key vector loaded feeds up to three multiply-adds
/// (one query alone takes [`score1`]): 1.07-1.24x faster per layer than one query head at a
/// time (docs/PERFORMANCE.md, "Fused attention").
///
/// # Safety
/// AVX2 and FMA; `qs` holds whole query vectors of `hd`; `k[j * stride..][..hd]` in
/// bounds for every position seen; `out[t * ld + i]` writable for every query `t` and
/// position `i` seen.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn score(
    qs: &[f32],
    hd: usize,
    k: &[f32],
    stride: usize,
    seen: Seen,
    out: *mut f32,
    ld: usize,
) {
    for (t, n) in in_threes(qs.len() / hd) {
        let (q, o) = (qs.as_ptr().add(t * hd), out.add(t * ld));
        match n {
            1 => score1(q, hd, k, stride, seen, o),
            2 => score_n::<2>(q, hd, k, stride, seen, o, ld),
            _ => score_n::<3>(q, hd, k, stride, seen, o, ld),
        }
    }
}

/// `(first, count)` of `queries` taken three at a time, the rest as a pair or alone: three
/// queries' accumulators fill AVX2's 16 registers.
fn in_threes(queries: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..queries).step_by(3).map(move |t| (t, (queries - t).min(3)))
}

/// One query against the keys: eight keys at a time, one accumulator each, summed across
/// lanes by one transposing reduction.
#[target_feature(enable = "avx2,fma")]
unsafe fn score1(q: *const f32, hd: usize, k: &[f32], stride: usize, seen: Seen, out: *mut f32) {
    let n = seen.count();
    let kp = k.as_ptr();
    let mut i = 0;
    while i + 8 <= n {
        let ptrs: [*const f32; 8] = std::array::from_fn(|t| kp.add(seen.at(i + t) * stride));
        _mm256_storeu_ps(out.add(i), dot8(q, hd, ptrs));
        i += 8;
    }
    while i < n {
        *out.add(i) = dot1(q, hd, kp.add(seen.at(i) * stride));
        i += 1;
    }
}

/// `Q` queries (adjacent, `hd` apart) against the keys, four keys at a time: `Q x 4`
/// accumulators, `Q` query vectors and a key vector fill the 16 registers at `Q = 3`.
#[target_feature(enable = "avx2,fma")]
unsafe fn score_n<const Q: usize>(
    q: *const f32,
    hd: usize,
    k: &[f32],
    stride: usize,
    seen: Seen,
    out: *mut f32,
    ld: usize,
) {
    let n = seen.count();
    let kp = k.as_ptr();
    let mut i = 0;
    while i < n {
        let count = (n - i).min(4);
        // A last group of fewer than four keys repeats its last key (its sums dropped).
        let ptrs: [*const f32; 4] =
            std::array::from_fn(|b| kp.add(seen.at(i + b.min(count - 1)) * stride));
        let mut acc = [[_mm256_setzero_ps(); 4]; Q];
        let mut d = 0;
        while d < hd {
            let qv: [__m256; Q] = std::array::from_fn(|t| _mm256_loadu_ps(q.add(t * hd + d)));
            for (b, &p) in ptrs.iter().enumerate() {
                let kv = _mm256_loadu_ps(p.add(d));
                for (a, qv) in acc.iter_mut().zip(&qv) {
                    a[b] = _mm256_fmadd_ps(*qv, kv, a[b]);
                }
            }
            d += 8;
        }
        for (t, a) in acc.iter().enumerate() {
            // Lane sums of the four accumulators, in order (as `dot8` pairs them).
            let u = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
            let sums = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps::<1>(u));
            let o = out.add(t * ld + i);
            if count == 4 {
                _mm_storeu_ps(o, sums);
            } else {
                let mut lanes = [0f32; 4];
                _mm_storeu_ps(lanes.as_mut_ptr(), sums);
                std::ptr::copy_nonoverlapping(lanes.as_ptr(), o, count);
            }
        }
        i += 4;
    }
}

/// `q` against eight keys: `[q·k_0, ..., q·k_7]`.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot8(q: *const f32, hd: usize, k: [*const f32; 8]) -> __m256 {
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut d = 0;
    while d < hd {
        let qv = _mm256_loadu_ps(q.add(d));
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
unsafe fn dot1(q: *const f32, hd: usize, k: *const f32) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut d = 0;
    while d < hd {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(d)), _mm256_loadu_ps(k.add(d)), acc);
        d += 8;
    }
    let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// [`super::weigh`] with `hd` a multiple of 8: the queries three at a time (the rest in
/// one pair or alone), so that each value vector loaded feeds up to three multiply-adds;
/// one query alone takes [`weigh1`].
///
/// # Safety
/// AVX2 and FMA; `p[t * ld + i]` readable for every query `t` (`out.len() / hd` of them)
/// and position `i` seen; `v[j * stride..][..hd]` in bounds for every position seen.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn weigh(
    p: *const f32,
    ld: usize,
    v: &[f32],
    stride: usize,
    seen: Seen,
    out: &mut [f32],
    hd: usize,
) {
    for (t, n) in in_threes(out.len() / hd) {
        let (w, o) = (p.add(t * ld), out.as_mut_ptr().add(t * hd));
        match n {
            1 => weigh1(w, v, stride, seen, o, hd),
            2 => weigh_n::<2>(w, ld, v, stride, seen, o, hd),
            _ => weigh_n::<3>(w, ld, v, stride, seen, o, hd),
        }
    }
}

/// One query's weighted sum: 64 dims at a time in eight accumulators (one broadcast
/// weight, eight loads and eight FMAs per position), the rest 8 at a time.
#[target_feature(enable = "avx2,fma")]
unsafe fn weigh1(p: *const f32, v: &[f32], stride: usize, seen: Seen, out: *mut f32, hd: usize) {
    let n = seen.count();
    let vp = v.as_ptr();
    let mut d = 0;
    while d + 64 <= hd {
        let o = out.add(d);
        let mut acc: [__m256; 8] = std::array::from_fn(|t| _mm256_loadu_ps(o.add(8 * t)));
        for i in 0..n {
            let w = _mm256_set1_ps(*p.add(i));
            let r = vp.add(seen.at(i) * stride + d);
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(r.add(8 * t)), *a);
            }
        }
        for (t, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.add(8 * t), *a);
        }
        d += 64;
    }
    while d < hd {
        let o = out.add(d);
        let mut acc = _mm256_loadu_ps(o);
        for i in 0..n {
            let r = vp.add(seen.at(i) * stride + d);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(*p.add(i)), _mm256_loadu_ps(r), acc);
        }
        _mm256_storeu_ps(o, acc);
        d += 8;
    }
}

/// `Q` queries' weighted sums (weights `ld` apart, outputs `hd` apart), 32 dims at a
/// time: `Q x 4` accumulators, `Q` broadcast weights and a value vector fill the 16
/// registers at `Q = 3`; the rest 8 dims at a time.
#[target_feature(enable = "avx2,fma")]
unsafe fn weigh_n<const Q: usize>(
    p: *const f32,
    ld: usize,
    v: &[f32],
    stride: usize,
    seen: Seen,
    out: *mut f32,
    hd: usize,
) {
    let n = seen.count();
    let vp = v.as_ptr();
    let mut d = 0;
    while d < hd {
        let lanes = if d + 32 <= hd { 4 } else { 1 };
        let mut acc: [[__m256; 4]; Q] = std::array::from_fn(|t| {
            std::array::from_fn(|c| {
                if c < lanes {
                    _mm256_loadu_ps(out.add(t * hd + d + 8 * c))
                } else {
                    _mm256_setzero_ps()
                }
            })
        });
        for i in 0..n {
            let r = vp.add(seen.at(i) * stride + d);
            let w: [__m256; Q] = std::array::from_fn(|t| _mm256_set1_ps(*p.add(t * ld + i)));
            if lanes == 4 {
                for c in 0..4 {
                    let x = _mm256_loadu_ps(r.add(8 * c));
                    for (a, w) in acc.iter_mut().zip(&w) {
                        a[c] = _mm256_fmadd_ps(*w, x, a[c]);
                    }
                }
            } else {
                let x = _mm256_loadu_ps(r);
                for (a, w) in acc.iter_mut().zip(&w) {
                    a[0] = _mm256_fmadd_ps(*w, x, a[0]);
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            for (c, a) in a.iter().enumerate().take(lanes) {
                _mm256_storeu_ps(out.add(t * hd + d + 8 * c), *a);
            }
        }
        d += 8 * lanes;
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
        *v = exp_nonpositive((*v - max) * scale);
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
