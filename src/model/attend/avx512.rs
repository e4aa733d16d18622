//! The kernels of `blocked.rs` on sixteen lanes (AVX-512 F, checked at run time). A lane is
//! one query vector: its scores against a key come from broadcasting the key's elements
//! against the queries laid out by dimension (`qt[d * 16 + lane]`), so no score needs a
//! sum across lanes; the softmax runs down each lane; the weighted sums broadcast a lane's
//! probability against a value vector, a tile of query vectors at a time.

use std::arch::x86_64::*;

use crate::model::expf::avx512::exp16;

/// Query vectors per lane group: the lanes of one 512-bit vector of f32.
pub(super) const LANES: usize = 16;

pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// `st[i * 16 + q] = Σ_d qt[d * 16 + q] · keys[i][d]` in the lanes `q` that `seen[i]` has
/// (bit `q`), `-inf` in the others (keys that lane's row does not see). Twelve keys at a
/// time: twelve accumulators, each step one load of the queries and twelve broadcasts.
///
/// # Safety
/// AVX-512 F; `qt` holds `hd * 16` floats; `keys[i][..hd]` readable for every `i`;
/// `seen.len() >= keys.len()`; `st` writable for `keys.len() * 16` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scores(
    qt: *const f32,
    hd: usize,
    keys: &[*const f32],
    seen: &[u16],
    st: *mut f32,
) {
    let mut i = 0;
    while i < keys.len() {
        let (k, m, s) = (keys.as_ptr().add(i), seen.as_ptr().add(i), st.add(i * LANES));
        i += match keys.len() - i {
            n if n >= 12 => score_tile::<12>(qt, hd, k, m, s),
            n if n >= 4 => score_tile::<4>(qt, hd, k, m, s),
            _ => score_tile::<1>(qt, hd, k, m, s),
        };
    }
}

/// `J` keys of [`scores`]; returns `J`.
#[target_feature(enable = "avx512f")]
unsafe fn score_tile<const J: usize>(
    qt: *const f32,
    hd: usize,
    keys: *const *const f32,
    seen: *const u16,
    st: *mut f32,
) -> usize {
    let keys: [*const f32; J] = std::array::from_fn(|b| *keys.add(b));
    let mut acc = [_mm512_setzero_ps(); J];
    for d in 0..hd {
        let q = _mm512_loadu_ps(qt.add(d * LANES));
        for (a, key) in acc.iter_mut().zip(&keys) {
            *a = _mm512_fmadd_ps(q, _mm512_set1_ps(*key.add(d)), *a);
        }
    }
    let hidden = _mm512_set1_ps(f32::NEG_INFINITY);
    for (b, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(st.add(b * LANES), _mm512_mask_mov_ps(hidden, *seen.add(b), *a));
    }
    J
}

/// Down each lane of `st` (`n` rows of 16): each score replaced by `e^(score - m)` for `m`
/// the lane's largest, and returned, their sum per lane. `-inf` scores give 0; a NaN
/// makes the lane's sum NaN.
///
/// # Safety
/// AVX-512 F; `st` holds `n * 16` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn exp_down_lanes(st: *mut f32, n: usize) -> [f32; LANES] {
    let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
    for j in 0..n {
        m = _mm512_max_ps(m, _mm512_loadu_ps(st.add(j * LANES)));
    }
    let mut l = _mm512_setzero_ps();
    for j in 0..n {
        let at = st.add(j * LANES);
        let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(at), m));
        l = _mm512_add_ps(l, e);
        _mm512_storeu_ps(at, e);
    }
    let mut sum = [0f32; LANES];
    _mm512_storeu_ps(sum.as_mut_ptr(), l);
    sum
}

/// `o[q * hd + d] += Σ_i st[i * 16 + q] · values[i][d]` for all 16 lanes `q`, over the
/// values whose `seen[i]` has lane `q` (a value a lane does not see is never read into its
/// sums: its weight is 0, but 0 times an infinite or NaN value would be NaN). `hd` a
/// multiple of 16: tiles of 6 lanes x 64 dims (24 accumulators, four value loads and six
/// broadcasts per value row), the rest 16 dims at a time.
///
/// # Safety
/// AVX-512 F; `hd % 16 == 0`; `st` holds `values.len() * 16` floats; `values[i][..hd]`
/// readable for every `i`; `seen.len() >= values.len()`; `o` holds `16 * hd` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn weigh(
    st: *const f32,
    values: &[*const f32],
    seen: &[u16],
    hd: usize,
    o: *mut f32,
) {
    for q0 in [0, 6, 12] {
        let mut d = 0;
        while d < hd {
            let (s, od) = (st.add(q0), o.add(q0 * hd + d));
            d += match (q0, hd - d) {
                (12, n) if n >= 64 => weigh_tile::<4, 4>(s, values, seen, q0, d, od, hd),
                (12, _) => weigh_tile::<4, 1>(s, values, seen, q0, d, od, hd),
                (_, n) if n >= 64 => weigh_tile::<6, 4>(s, values, seen, q0, d, od, hd),
                _ => weigh_tile::<6, 1>(s, values, seen, q0, d, od, hd),
            };
        }
    }
}

/// `Q` lanes from `q0` x `C` vectors of 16 dims (from dim `d`) of [`weigh`]; returns
/// `16 * C`.
#[target_feature(enable = "avx512f")]
unsafe fn weigh_tile<const Q: usize, const C: usize>(
    st: *const f32,
    values: &[*const f32],
    seen: &[u16],
    q0: usize,
    d: usize,
    o: *mut f32,
    hd: usize,
) -> usize {
    let mut acc: [[__m512; C]; Q] =
        std::array::from_fn(|q| std::array::from_fn(|c| _mm512_loadu_ps(o.add(q * hd + c * 16))));
    let tile = ((1u32 << Q) - 1) as u16;
    for (i, &row) in values.iter().enumerate() {
        let row = row.add(d);
        let x: [__m512; C] = std::array::from_fn(|c| _mm512_loadu_ps(row.add(c * 16)));
        let p = st.add(i * LANES);
        let lanes = (seen[i] >> q0) & tile;
        for (q, acc_q) in acc.iter_mut().enumerate() {
            // Every lane sees most values (the prefix's, a prefill's earlier positions).
            if lanes != tile && lanes & (1 << q) == 0 {
                continue;
            }
            let w = _mm512_set1_ps(*p.add(q));
            for (a, x) in acc_q.iter_mut().zip(&x) {
                *a = _mm512_fmadd_ps(w, *x, *a);
            }
        }
    }
    for (q, acc_q) in acc.iter().enumerate() {
        for (c, a) in acc_q.iter().enumerate() {
            _mm512_storeu_ps(o.add(q * hd + c * 16), *a);
        }
    }
    16 * C
}
