//! Q8_0 and Q4_0 weights times Q8_0 input rows with AVX-512 VNNI: int8 multiply-adds,
//! four per 32-bit lane, sixteen output columns per instruction.
//!
//! Why: with f32 multiply-adds over weights turned back into f32 (`blocks.rs`'s row layout),
//! a 20-row decode pass costs what an f32 pass costs, since it is bound by the multiply-adds
//! and not by the bytes read. `vpdpbusd` does 64 multiply-adds where an f32 FMA does 16.
//!
//! How: the input rows are quantized once per pass as GGML quantizes activations for its
//! Q8_0 dot products (a scale per block of 32, values rounded to -127..=127). `vpdpbusd`
//! multiplies unsigned bytes by signed ones: the weight's interleaved layout (`blocks.rs`)
//! stores `w + 128` (Q8_0) or `w + 8` (Q4_0's nibbles, spread to bytes by a mask and a
//! shift), and the input stays signed. Each input row's block keeps `Σ x`, and the i32
//! sums start from `-bias * Σ x` to take the offset back out: computed once per pass for
//! the few input rows, where the same correction on the weights' side would cost 4 bytes
//! per block of every weight row. A register tile holds the i32 sums of up to 4
//! input rows against 2 groups of 16 weight rows; each block of 32 columns ends in one
//! conversion to f32, one product of the two blocks' scales and one multiply-add. Lanes
//! are output columns, so no horizontal sums are needed.

use super::blocks::{BlockFormat, BlockWeight, BLOCK, GROUP};

/// Whether this CPU has the instructions the kernel uses.
pub(crate) fn runs() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Input rows `[m, k]` quantized to Q8_0 (`k` a multiple of 32): `values[i * k + p]` is
/// the rounded `x[i, p] / scales[i * k / 32 + p / 32]`, and `sums[i * k / 32 + p / 32]`
/// is the sum of its block's values. A block that holds a NaN or an infinity
/// gets a NaN scale, so the products it enters are NaN, as they are in f32, and the
/// model's checks see them.
pub(crate) struct QuantizedRows {
    m: usize,
    k: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
}

impl QuantizedRows {
    /// Quantizes `x` `[m, k]`; `None` when `k` is not a multiple of 32 or the CPU lacks
    /// the kernel's instructions ([`runs`]), as only the kernel reads these rows.
    pub(crate) fn new(x: &[f32], m: usize, k: usize) -> Option<Self> {
        if !k.is_multiple_of(BLOCK) || x.len() < m * k || !runs() {
            return None;
        }
        let mut values = vec![0i8; m * k];
        let mut scales = vec![0f32; m * k / BLOCK];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `runs()` includes AVX-512F.
        unsafe {
            imp::quantize(&x[..m * k], &mut values, &mut scales)
        };
        let sums = values
            .chunks_exact(BLOCK)
            .map(|b| b.iter().map(|&v| i32::from(v)).sum::<i32>())
            .collect();
        Some(QuantizedRows {
            m,
            k,
            values,
            scales,
            sums,
        })
    }

    /// Row `i` as f32 again (the tests' reference).
    #[cfg(test)]
    pub(crate) fn dequantize_row(&self, i: usize) -> Vec<f32> {
        (0..self.k)
            .map(|p| f32::from(self.values[i * self.k + p]) * self.scales[(i * self.k + p) / BLOCK])
            .collect()
    }
}

/// `out[i * ld + j - lo] = x[i] · w[j]` for every row `i` of `x` and the weight rows
/// `lo..hi`.
///
/// # Safety
/// [`runs`] is true; `w` is interleaved with `w.cols() == x`'s `k`; `lo <= hi <=
/// w.rows()`; `out[i * ld + c]` is writable for `i < x.rows()`, `c < hi - lo`, and no
/// other thread writes those elements meanwhile.
pub(crate) unsafe fn columns(
    x: &QuantizedRows,
    w: &BlockWeight,
    lo: usize,
    hi: usize,
    out: *mut f32,
    ld: usize,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    unsafe {
        imp::columns(x, w, lo, hi, out, ld)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, w, lo, hi, out, ld);
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{BlockFormat, BlockWeight, QuantizedRows, BLOCK, GROUP};

    /// A block's scale and its inverse, from the largest magnitude in it: GGML's
    /// `quantize_row_q8_0`, with the scale kept in f32 and ties rounded to even (as the
    /// vector conversion does; GGML rounds them away from zero).
    fn block_scale(amax: f32) -> (f32, f32) {
        let d = amax / 127.0;
        (d, if d > 0.0 { 1.0 / d } else { 0.0 })
    }

    /// [`QuantizedRows::new`]'s values and scales for `x`, a block of 32 at a time.
    /// Why vectorized: rounding through `f32::round` calls libm for each element, and
    /// that took as long as the products themselves.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn quantize(x: &[f32], values: &mut [i8], scales: &mut [f32]) {
        for ((v, s), x) in values
            .chunks_exact_mut(BLOCK)
            .zip(scales.iter_mut())
            .zip(x.chunks_exact(BLOCK))
        {
            unsafe {
                let (a, b) = (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16)));
                let (a_abs, b_abs) = (_mm512_abs_ps(a), _mm512_abs_ps(b));
                let (d, inv) = block_scale(_mm512_reduce_max_ps(_mm512_max_ps(a_abs, b_abs)));
                let inf = _mm512_set1_ps(f32::INFINITY);
                let finite = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a_abs, inf)
                    & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(b_abs, inf);
                *s = if finite == 0xFFFF { d } else { f32::NAN };
                let inv = _mm512_set1_ps(inv);
                for (half, x) in [a, b].into_iter().enumerate() {
                    // Rounded to the nearest, ties to even (the default rounding mode).
                    let q = _mm512_cvtps_epi32(_mm512_mul_ps(x, inv));
                    _mm_storeu_si128(v.as_mut_ptr().add(half * 16).cast(), _mm512_cvtepi32_epi8(q));
                }
            }
        }
    }

    /// Input rows per register tile: `MR x 2` accumulators of i32 and as many of f32, two
    /// weight vectors (four from Q4_0's nibbles) and a broadcast input stay within the 32
    /// registers.
    const MR: usize = 4;

    /// As [`super::columns`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn columns(
        x: &QuantizedRows,
        w: &BlockWeight,
        lo: usize,
        hi: usize,
        out: *mut f32,
        ld: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            match w.format() {
                BlockFormat::Q8_0 => walk::<false>(x, w, lo, hi, out, ld),
                BlockFormat::Q4_0 => walk::<true>(x, w, lo, hi, out, ld),
            }
        }
    }

    /// [`columns`] for a weight whose values are bytes (`NIBBLES: false`, Q8_0) or
    /// nibbles (Q4_0).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn walk<const NIBBLES: bool>(
        x: &QuantizedRows,
        w: &BlockWeight,
        lo: usize,
        hi: usize,
        out: *mut f32,
        ld: usize,
    ) {
        let Some((values, scales)) = w.groups() else {
            return;
        };
        if lo >= hi || x.m == 0 {
            return;
        }
        let blocks = x.k / BLOCK;
        let group_bytes = blocks * w.format().group_block_bytes();
        let (g_first, g_last) = (lo / GROUP, (hi - 1) / GROUP);
        let mut g = g_first;
        while g <= g_last {
            let pair = g < g_last;
            // Output columns of groups `g` (and `g + 1`) that lie in `lo..hi`, as masks.
            let mask = |g: usize| super::super::group_mask(g * GROUP, lo, hi);
            let gs = [g, (g + 1).min(g_last)];
            // The pair after next, which the first tile of rows pulls towards the core
            // while it computes (the tiles that follow read this pair from L1 and would
            // leave the memory bus idle): without it a pass streamed its weights at a
            // fifth of the read bandwidth.
            let ahead = g + 2 * AHEAD;
            let t = Tile {
                ahead: (ahead < g_last)
                    .then(|| [ahead, ahead + 1].map(|g| values.as_ptr().add(g * group_bytes))),
                w: gs.map(|g| values.as_ptr().add(g * group_bytes)),
                scales: gs.map(|g| scales.as_ptr().add(g * blocks * GROUP)),
                masks: [mask(g), mask(g + 1)],
                // Column `g * GROUP` of the weight is column `g * GROUP - lo` of `out`,
                // which may lie before `out` (masked off): offsets, not pointers.
                col: g as isize * GROUP as isize - lo as isize,
                blocks,
                bias: w.format().bias(),
                k: x.k,
                ld,
            };
            let mut i = 0;
            while i < x.m {
                let r = (x.m - i).min(MR);
                let xv = x.values.as_ptr().add(i * x.k);
                let xs = x.scales.as_ptr().add(i * blocks);
                let xo = x.sums.as_ptr().add(i * blocks);
                let o = out.wrapping_add(i * ld);
                let rows = (xv, xs, xo);
                match (r, pair, i == 0 && t.ahead.is_some()) {
                    (4, true, true) => tile::<4, 2, true, NIBBLES>(&t, rows, o),
                    (4, true, false) => tile::<4, 2, false, NIBBLES>(&t, rows, o),
                    (3, true, true) => tile::<3, 2, true, NIBBLES>(&t, rows, o),
                    (3, true, false) => tile::<3, 2, false, NIBBLES>(&t, rows, o),
                    (2, true, true) => tile::<2, 2, true, NIBBLES>(&t, rows, o),
                    (2, true, false) => tile::<2, 2, false, NIBBLES>(&t, rows, o),
                    (1, true, true) => tile::<1, 2, true, NIBBLES>(&t, rows, o),
                    (1, true, false) => tile::<1, 2, false, NIBBLES>(&t, rows, o),
                    (4, false, _) => tile::<4, 1, false, NIBBLES>(&t, rows, o),
                    (3, false, _) => tile::<3, 1, false, NIBBLES>(&t, rows, o),
                    (2, false, _) => tile::<2, 1, false, NIBBLES>(&t, rows, o),
                    _ => tile::<1, 1, false, NIBBLES>(&t, rows, o),
                }
                i += r;
            }
            g += if pair { 2 } else { 1 };
        }
    }

    /// Pairs of groups ahead that the first tile of rows prefetches. One pair ahead left
    /// the first pass waiting on memory; see the bench in docs/PERFORMANCE.md.
    const AHEAD: usize = 2;

    /// One or two groups of weight rows, as a tile reads them.
    struct Tile {
        /// The groups to prefetch, where they exist.
        ahead: Option<[*const u8; 2]>,
        w: [*const u8; 2],
        scales: [*const f32; 2],
        masks: [__mmask16; 2],
        col: isize,
        blocks: usize,
        /// What the unsigned values add to the weights.
        bias: i32,
        k: usize,
        ld: usize,
    }

    /// `R` quantized input rows (values, scales and sums; `k` apart) against `G` groups
    /// of `t`, written to `o[r * ld + col + c]` where the group's mask has column `c`.
    /// With `PREFETCH`, `t.ahead`'s groups are prefetched into L2, a cache line of each
    /// per load. `NIBBLES`: each 64 bytes of a group hold two quads' values (Q4_0), the
    /// low nibbles quad `q`'s and the high ones quad `q + 4`'s.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn tile<const R: usize, const G: usize, const PREFETCH: bool, const NIBBLES: bool>(
        t: &Tile,
        (xv, xs, xo): (*const i8, *const f32, *const i32),
        o: *mut f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); G]; R];
        // 64-byte loads per group and block (`BlockFormat::group_block_bytes` / 64).
        let loads = if NIBBLES { BLOCK / 8 } else { BLOCK / 4 };
        unsafe {
            let low = _mm512_set1_epi8(0x0F);
            for b in 0..t.blocks {
                // The i32 sums start from `-bias * Σ x`, which takes out what reading the
                // weights as unsigned values adds.
                let mut dot: [[__m512i; G]; R] = std::array::from_fn(|r| {
                    [_mm512_set1_epi32(-t.bias * *xo.add(r * t.blocks + b)); G]
                });
                for q in 0..loads {
                    let at = (b * loads + q) * 64;
                    let wv: [__m512i; G] =
                        std::array::from_fn(|g| _mm512_loadu_si512(t.w[g].add(at).cast()));
                    if PREFETCH {
                        if let Some(ahead) = t.ahead {
                            for p in ahead {
                                _mm_prefetch::<_MM_HINT_T1>(p.add(at).cast());
                            }
                        }
                    }
                    // The input's quad `q` (and `q + 4` for nibbles), as one i32 each.
                    let quad = |r: usize, q: usize| {
                        let four = xv.add(r * t.k + b * BLOCK + q * 4).cast::<i32>();
                        _mm512_set1_epi32(four.read_unaligned())
                    };
                    if NIBBLES {
                        let lo = wv.map(|v| _mm512_and_si512(v, low));
                        let hi = wv.map(|v| _mm512_and_si512(_mm512_srli_epi16::<4>(v), low));
                        for (r, dot_r) in dot.iter_mut().enumerate() {
                            let (xl, xh) = (quad(r, q), quad(r, q + loads));
                            for ((d, l), h) in dot_r.iter_mut().zip(&lo).zip(&hi) {
                                *d = _mm512_dpbusd_epi32(*d, *l, xl);
                                *d = _mm512_dpbusd_epi32(*d, *h, xh);
                            }
                        }
                    } else {
                        for (r, dot_r) in dot.iter_mut().enumerate() {
                            let xb = quad(r, q);
                            for (d, wg) in dot_r.iter_mut().zip(&wv) {
                                *d = _mm512_dpbusd_epi32(*d, *wg, xb);
                            }
                        }
                    }
                }
                for g in 0..G {
                    let sw = _mm512_loadu_ps(t.scales[g].add(b * GROUP));
                    for r in 0..R {
                        let s = _mm512_mul_ps(sw, _mm512_set1_ps(*xs.add(r * t.blocks + b)));
                        acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][g]), s, acc[r][g]);
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (g, a) in acc_r.iter().enumerate() {
                    // The first unmasked column lies inside `out`; the masked ones are
                    // never touched, so the offset may point before it.
                    let offset = r as isize * t.ld as isize + t.col + (g * GROUP) as isize;
                    let at = o.wrapping_offset(offset);
                    _mm512_mask_storeu_ps(at, t.masks[g], *a);
                }
            }
        }
    }
}
