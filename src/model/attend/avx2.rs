//! The kernels of `kernels.rs` on eight lanes (AVX2 with FMA, checked at run time).

use std::arch::x86_64::*;

use super::Seen;
use crate::model::expf::{avx2::exp8, exp_nonpositive};

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
