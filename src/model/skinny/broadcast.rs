//! Products with panel weights (`panels.rs`) on AVX-512: each input value broadcast
//! against 16 output columns' weights, f32 multiply-adds (`vfmadd231ps`) or bf16 pairs
//! (`vdpbf16ps`, AVX512_BF16).
//!
//! A register tile holds up to 8 input rows against 3 panels (48 output columns), or up
//! to 28 rows against one panel: the accumulators, the weight vectors and a broadcast
//! input within the 32 registers. Per step along the input width it loads the weight
//! vectors once and reuses each for every row, and the accumulators end as finished
//! outputs (no horizontal sums). The rows of a pass are split into tiles of near-equal
//! size, since a part-filled tile pays for its weight loads like a full one. The first
//! tile of rows over a set of panels prefetches the panels two sets later into L2, as the
//! other kernels do. A pass of one tile whose input rows do not fit in L1 walks the input
//! width in chunks (below).
//!
//! In bf16 the input rows are rounded to bf16 once per pass (`PanelInput`), two columns
//! per 32-bit lane, as GGML's bf16 dot products do; the sums stay f32.

use super::panels::{GROUP, PanelFormat, Panels};

/// Output columns of a full register tile (3 panels): the threads' ranges of columns
/// start at multiples of it.
pub(crate) const COLUMNS: usize = 3 * GROUP;

/// Whether this CPU runs the kernel for weights in `format`.
pub(crate) fn runs(format: PanelFormat) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && (format == PanelFormat::F32 || std::is_x86_feature_detected!("avx512bf16"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = format;
        false
    }
}

/// The input rows `[m, k]` as the kernel reads them: f32 as they are, and, for bf16
/// weights, rounded to bf16 pairs (`pairs[i * stride + q]` holds columns `2q` and `2q +
/// 1` of row `i`, the first in the low half; zero past `k`).
pub(crate) struct PanelInput<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    pairs: Vec<u32>,
    stride: usize,
}

impl<'a> PanelInput<'a> {
    /// `x` `[m, k]`, with its bf16 pairs where `bf16` asks for them (and the CPU has
    /// AVX512_BF16: only the kernel reads them).
    pub(crate) fn new(x: &'a [f32], m: usize, k: usize, bf16: bool) -> Self {
        // Whole vectors of 16 pairs per row, so the conversion needs no masked stores.
        let stride = k.div_ceil(32) * 16;
        let mut pairs = Vec::new();
        if bf16 && runs(PanelFormat::Bf16) && x.len() >= m * k {
            pairs = vec![0u32; m * stride];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `runs` found AVX-512F and AVX512_BF16; the buffers are as sized.
            unsafe {
                imp::to_pairs(&x[..m * k], k, &mut pairs, stride)
            };
        }
        PanelInput {
            x,
            m,
            k,
            pairs,
            stride,
        }
    }

    /// The bf16 pairs of row `i` as f32 again (the tests' reference).
    #[cfg(test)]
    pub(crate) fn bf16_row(&self, i: usize) -> Vec<f32> {
        (0..self.k)
            .map(|p| {
                let lane = self.pairs[i * self.stride + p / 2];
                let bits = if p % 2 == 0 { lane as u16 } else { (lane >> 16) as u16 };
                half::bf16::from_bits(bits).to_f32()
            })
            .collect()
    }
}

/// `out[i * ld + j - lo] = x[i] · w[j]` for every row `i` of `x` and the weight rows
/// `lo..hi`.
///
/// # Safety
/// [`runs`] is true for `w`'s format; `x` was made with `bf16` where `w` is bf16; `w.cols()`
/// equals `x`'s `k`; `lo <= hi <= w.rows()`; `out[i * ld + c]` is writable for `i <
/// x.rows()`, `c < hi - lo`, and no other thread writes those elements meanwhile.
pub(crate) unsafe fn columns(
    x: &PanelInput,
    w: &Panels,
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

    use super::{COLUMNS, GROUP, PanelFormat, PanelInput, Panels};

    /// Most panels per register tile.
    const G: usize = COLUMNS / GROUP;
    /// Most input rows of a tile of [`G`] panels, and of a tile of one panel: the
    /// accumulators, the weight vectors and a broadcast input within 32 registers.
    const ROWS_OF_WIDE: usize = 8;
    const ROWS_OF_NARROW: usize = 28;
    /// Bytes of input rows a chunk of the input width may take (of L1's 32-48 KiB; the
    /// weights streaming past need the rest).
    const L1_INPUT_BYTES: usize = 16 * 1024;
    /// Steps a chunk keeps at least.
    const MIN_CHUNK: usize = 64;
    /// Sets of panels ahead that the first tile of rows prefetches.
    const AHEAD: usize = 2;
    /// Bytes of one panel per step along the input width (16 f32, or 16 bf16 pairs).
    const STEP: usize = 64;

    /// Rounds `x` `[m, k]` to bf16 pairs, 32 columns at a time.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn to_pairs(x: &[f32], k: usize, pairs: &mut [u32], stride: usize) {
        for (row, dst) in x.chunks_exact(k).zip(pairs.chunks_exact_mut(stride)) {
            let mut c = 0;
            while c < k {
                let mask = |from: usize| -> __mmask16 {
                    let n = k.saturating_sub(from).min(16);
                    ((1u32 << n) - 1) as __mmask16
                };
                // SAFETY: the masks keep the loads inside `row`; `dst` holds whole vectors
                // of 16 lanes (`stride` is a multiple of 16) and `c / 2` is a multiple of
                // 16.
                unsafe {
                    let at = row.as_ptr().wrapping_add(c);
                    let lo = _mm512_maskz_loadu_ps(mask(c), at);
                    let hi = _mm512_maskz_loadu_ps(mask(c + 16), at.wrapping_add(16));
                    // Elements 0..16 of the result are `lo`'s, 16..32 `hi`'s: 32
                    // consecutive columns, two per 32-bit lane.
                    let v = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
                    _mm512_storeu_si512(dst.as_mut_ptr().add(c / 2).cast(), v);
                }
                c += 32;
            }
        }
    }

    /// Calls `$tile::<R, C>` for `R = $r` rows and `C = $c` panels: up to 28 rows of one
    /// panel, 12 of two, 8 of three (what the 32 registers hold).
    macro_rules! by_shape {
        ($tile:ident, $r:expr, $c:expr, $args:tt) => {
            match $c {
                1 => by_shape!(@rows $tile, $r, 1, $args,
                    [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28]),
                2 => by_shape!(@rows $tile, $r, 2, $args, [1 2 3 4 5 6 7 8 9 10 11 12]),
                _ => by_shape!(@rows $tile, $r, 3, $args, [1 2 3 4 5 6 7 8]),
            }
        };
        (@rows $tile:ident, $r:expr, $c:literal, $args:tt, [$($n:literal)*]) => {
            match $r {
                $($n => $tile::<$n, $c> $args,)*
                r => unreachable!("a tile of {r} rows and {} panels", $c),
            }
        };
    }

    /// Up to [`G`] panels as a tile reads them.
    struct Tile {
        /// Each panel's first byte (unused entries repeat the last panel).
        w: [*const u8; G],
        /// The panels to prefetch, where they exist.
        ahead: Option<[*const u8; G]>,
        /// Which columns of each panel lie in `lo..hi`.
        masks: [__mmask16; G],
        /// Column of `out` that the first panel's column 0 is (may be before `out`:
        /// masked off).
        col: isize,
        /// Steps along the input width (columns, or column pairs).
        depth: usize,
        /// 32-bit elements between input rows.
        x_stride: usize,
        ld: usize,
        /// Add to the output (a later chunk of the input width) rather than write it.
        add: bool,
    }

    /// As [`super::columns`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn columns(
        x: &PanelInput,
        w: &Panels,
        lo: usize,
        hi: usize,
        out: *mut f32,
        ld: usize,
    ) {
        if lo >= hi || x.m == 0 {
            return;
        }
        let format = w.format();
        // The panels' bytes, the steps along the input width (columns, or column pairs),
        // and the input rows as 32-bit elements.
        let (base, depth, x_ptr, x_stride): (*const u8, usize, *const i32, usize) = match format {
            PanelFormat::F32 => {
                let Some(v) = w.f32_values() else { return };
                (v.as_ptr().cast(), x.k, x.x.as_ptr().cast(), x.k)
            }
            PanelFormat::Bf16 => {
                let Some(v) = w.bf16_values() else { return };
                if x.pairs.is_empty() {
                    return;
                }
                let pairs = x.pairs.as_ptr().cast();
                (v.as_ptr().cast(), x.k.div_ceil(2), pairs, x.stride)
            }
        };
        // Up to 8 rows: one tile of 3 panels. More: tiles of one panel and up to 28 rows,
        // so that each panel is read once per 28 rows; of near-equal size (20 rows: one
        // tile; 32: two of 16). Against 3 panels of up to 8 rows (7, 7, 6) and 2 of up to
        // 12, 30 layers' projections streamed from memory at 20 and 32 rows were within
        // the run-to-run spread in f32 and 0-15 % faster in bf16 (docs/PERFORMANCE.md).
        let (width, mr) = if x.m <= ROWS_OF_WIDE {
            (G, ROWS_OF_WIDE)
        } else {
            (1, ROWS_OF_NARROW)
        };
        let tiles = x.m.div_ceil(mr);
        let tile_rows = x.m.div_ceil(tiles);
        // One tile of rows whose input does not fit in L1 beside the streaming weights
        // (20 f32 rows of 576 columns are 46 KB): the input width is walked in chunks
        // whose rows stay in L1 while every panel's piece of that chunk streams past,
        // each chunk's sums added to the output. Several tiles (prefill) keep the walk
        // over whole panels, so that a panel is read from memory once for all of them.
        let chunk = if tiles == 1 && tile_rows * depth * 4 > L1_INPUT_BYTES {
            (L1_INPUT_BYTES / (4 * tile_rows) / 16 * 16).max(MIN_CHUNK)
        } else {
            depth
        };
        let pass = Pass {
            format,
            base,
            depth,
            x: x_ptr,
            x_stride,
            m: x.m,
            width,
            tile_rows,
            lo,
            hi,
            out,
            ld,
        };
        let mut d0 = 0;
        while d0 < depth {
            let len = chunk.min(depth - d0);
            // SAFETY: the caller's contract.
            unsafe { pass.chunk(d0, len) };
            d0 += len;
        }
    }

    /// What stays the same over the chunks of one call of [`columns`].
    struct Pass {
        format: PanelFormat,
        /// The panels' first byte; panel `g` starts `g * depth * STEP` bytes on.
        base: *const u8,
        depth: usize,
        /// The input rows' first 32-bit element, rows `x_stride` apart.
        x: *const i32,
        x_stride: usize,
        m: usize,
        /// Panels per tile, and input rows per tile (the last may have fewer).
        width: usize,
        tile_rows: usize,
        lo: usize,
        hi: usize,
        out: *mut f32,
        ld: usize,
    }

    impl Pass {
        /// Steps `d0..d0 + len` of the input width for every panel in `lo..hi` and every
        /// tile of rows, written to the output (`d0 == 0`) or added to it.
        ///
        /// # Safety
        /// As [`columns`], whose arguments `self` holds.
        #[target_feature(enable = "avx512f")]
        unsafe fn chunk(&self, d0: usize, len: usize) {
            let panel = |g: usize| self.base.wrapping_add((g * self.depth + d0) * STEP);
            let (g_first, g_last) = (self.lo / GROUP, (self.hi - 1) / GROUP);
            let width = self.width;
            let mut g = g_first;
            while g <= g_last {
                let count = (g_last + 1 - g).min(width);
                let mask = |g: usize| super::super::group_mask(g * GROUP, self.lo, self.hi);
                let ahead = g + AHEAD * width;
                let t = Tile {
                    w: std::array::from_fn(|i| panel(g + i.min(count - 1))),
                    ahead: (ahead + width <= g_last + 1)
                        .then(|| std::array::from_fn(|i| panel(ahead + i.min(width - 1)))),
                    masks: std::array::from_fn(|i| if i < count { mask(g + i) } else { 0 }),
                    col: g as isize * GROUP as isize - self.lo as isize,
                    depth: len,
                    x_stride: self.x_stride,
                    ld: self.ld,
                    add: d0 > 0,
                };
                let mut i = 0;
                while i < self.m {
                    let r = (self.m - i).min(self.tile_rows);
                    let xi = self.x.wrapping_add(i * self.x_stride + d0);
                    let o = self.out.wrapping_add(i * self.ld);
                    let prefetch = i == 0 && t.ahead.is_some();
                    // SAFETY: the caller's contract; `runs(format)` covers each tile's
                    // features.
                    unsafe {
                        match self.format {
                            PanelFormat::F32 => {
                                by_shape!(tile_f32, r, count, (&t, xi, o, prefetch))
                            }
                            PanelFormat::Bf16 => {
                                by_shape!(tile_bf16, r, count, (&t, xi, o, prefetch))
                            }
                        }
                    }
                    i += r;
                }
                g += count;
            }
        }
    }

    /// Defines a tile: `R` input rows (32-bit elements `t.x_stride` apart from `x`)
    /// against `C` panels of `t`, written to `o[r * ld + col + c]` where the panel's mask
    /// has column `c`; `$mac(acc, weights, broadcast input)` is one step's multiply-add.
    /// With `prefetch`, `t.ahead`'s panels are pulled into L2, a cache line each per step.
    macro_rules! tile {
        ($name:ident, $features:literal, |$acc:ident, $w:ident, $x:ident| $mac:expr) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<const R: usize, const C: usize>(
                t: &Tile,
                x: *const i32,
                o: *mut f32,
                prefetch: bool,
            ) {
                let mut acc = [[_mm512_setzero_ps(); C]; R];
                unsafe {
                    for d in 0..t.depth {
                        let wv: [__m512i; C] = std::array::from_fn(|c| {
                            _mm512_loadu_si512(t.w[c].add(d * STEP).cast())
                        });
                        if prefetch {
                            if let Some(ahead) = t.ahead {
                                for p in &ahead[..C] {
                                    _mm_prefetch::<_MM_HINT_T1>(p.add(d * STEP).cast());
                                }
                            }
                        }
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            let $x = _mm512_set1_epi32(*x.add(r * t.x_stride + d));
                            for (a, &$w) in acc_r.iter_mut().zip(&wv) {
                                let $acc = *a;
                                *a = $mac;
                            }
                        }
                    }
                    for (r, acc_r) in acc.iter().enumerate() {
                        for (c, a) in acc_r.iter().enumerate() {
                            // The first unmasked column lies inside `out`; masked ones are
                            // never touched, so the offset may point before it.
                            let at = o.wrapping_offset(
                                r as isize * t.ld as isize + t.col + (c * GROUP) as isize,
                            );
                            let sum = if t.add {
                                _mm512_add_ps(_mm512_maskz_loadu_ps(t.masks[c], at), *a)
                            } else {
                                *a
                            };
                            _mm512_mask_storeu_ps(at, t.masks[c], sum);
                        }
                    }
                }
            }
        };
    }

    tile!(tile_f32, "avx512f", |acc, w, x| _mm512_fmadd_ps(
        _mm512_castsi512_ps(x),
        _mm512_castsi512_ps(w),
        acc
    ));
    tile!(tile_bf16, "avx512f,avx512bf16", |acc, w, x| _mm512_dpbf16_ps(
        acc,
        std::mem::transmute::<__m512i, __m512bh>(w),
        std::mem::transmute::<__m512i, __m512bh>(x)
    ));
}
