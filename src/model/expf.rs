//! `e^x` for `x <= 0` in f32, scalar, on eight AVX2 lanes and on sixteen AVX-512 lanes:
//! the exponentials of log-softmax (`logprobs`), of SiLU (`swiglu`) and of attention.
//!
//! Why our own: the standard library's `exp` is a call per element that the compiler does
//! not vectorise (the crate is built for baseline x86-64); at a beam step's 20 x 49,152
//! logits that was most of candle's 11-13 ms log-softmax (docs/PERFORMANCE.md, "Kernels").

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial: `e^r ≈ 1 + r + r² P(r)`, highest power first.
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
];

/// `e^x` for `x <= 0` to within 2 ulp (the standard library's `exp` is a call per
/// element; [`avx2::exp8`] is the same on eight lanes). Cephes' `expf`: `x = n ln 2 + r`
/// with `|r| <= ln 2 / 2` (ln 2 split in two for exactness), a degree-7 polynomial for
/// `e^r`, and `2^n` built in the exponent bits. Below -87 (where `e^x` leaves f32's normal
/// range) it returns 0; `-inf` gives 0.
#[inline]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    if x < -87.0 {
        return 0.0;
    }
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = P[1..].iter().fold(P[0], |p, &q| p * r + q);
    let e_r = p * r * r + r + 1.0;
    // n is in [-126, 0]: a normal power of two.
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `row[i] = scale * e^(row[i] - shift)` for a `shift` no smaller than any element: a
/// row of softmax probabilities from its log-sum-exp, scaled. Eight lanes at a time where
/// the CPU has AVX2.
pub(crate) fn scaled_exp_in_place(row: &mut [f32], shift: f32, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { avx2::scaled_exp_in_place(row, shift, scale) };
    }
    for x in row {
        *x = scale * exp_nonpositive(*x - shift);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::exp_nonpositive`] on eight lanes (with fused multiply-adds).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp8(x: __m256) -> __m256 {
        let c = _mm256_set1_ps;
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, c(-87.0));
        // `max` returns its second operand when either is NaN: a NaN stays NaN.
        let x = _mm256_max_ps(c(-87.0), x);
        let n = _mm256_floor_ps(_mm256_fmadd_ps(x, c(super::LOG2_E), c(0.5)));
        let r = _mm256_fnmadd_ps(n, c(super::LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, c(super::LN2_LO), r);
        let mut p = c(super::P[0]);
        for &q in &super::P[1..] {
            p = _mm256_fmadd_ps(p, r, c(q));
        }
        let e_r = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, c(1.0)));
        let biased = _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127));
        let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
        _mm256_andnot_ps(under, _mm256_mul_ps(e_r, two_n))
    }

    /// [`super::scaled_exp_in_place`] on eight lanes.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn scaled_exp_in_place(row: &mut [f32], shift: f32, scale: f32) {
        let (vshift, vscale) = (_mm256_set1_ps(shift), _mm256_set1_ps(scale));
        let mut chunks = row.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: each chunk holds 8 floats.
            unsafe {
                let x = _mm256_loadu_ps(c.as_ptr());
                let e = exp8(_mm256_sub_ps(x, vshift));
                _mm256_storeu_ps(c.as_mut_ptr(), _mm256_mul_ps(e, vscale));
            }
        }
        for x in chunks.into_remainder() {
            *x = scale * super::exp_nonpositive(*x - shift);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::exp_nonpositive`] on sixteen lanes, the steps of [`super::avx2::exp8`].
    #[target_feature(enable = "avx512f")]
    pub(crate) fn exp16(x: __m512) -> __m512 {
        let c = _mm512_set1_ps;
        let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, c(-87.0));
        // `max` returns its second operand when either is NaN: a NaN stays NaN.
        let x = _mm512_max_ps(c(-87.0), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
            _mm512_fmadd_ps(x, c(super::LOG2_E), c(0.5)),
        );
        let r = _mm512_fnmadd_ps(n, c(super::LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, c(super::LN2_LO), r);
        let mut p = c(super::P[0]);
        for &q in &super::P[1..] {
            p = _mm512_fmadd_ps(p, r, c(q));
        }
        let e_r = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, c(1.0)));
        let biased = _mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127));
        let two_n = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased));
        _mm512_maskz_mul_ps(!under, e_r, two_n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp` of `xs` through a vector version `N` lanes at a time (the last chunk padded
    /// with `-inf`).
    #[cfg(target_arch = "x86_64")]
    fn in_lanes<const N: usize>(xs: &[f32], exp: impl Fn([f32; N]) -> [f32; N]) -> Vec<f32> {
        let mut out = Vec::with_capacity(xs.len() + N);
        for x in xs.chunks(N) {
            let mut lanes = [f32::NEG_INFINITY; N];
            lanes[..x.len()].copy_from_slice(x);
            out.extend_from_slice(&exp(lanes)[..x.len()]);
        }
        out
    }

    /// Scalar and (where the CPU has AVX2, AVX-512) vector `exp` against f64 over `[-87, 0]`.
    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let xs: Vec<f32> = (0..=2_000_000)
            .map(|i| -87.0 * i as f32 / 2_000_000.0)
            .collect();
        let worst = |got: &[f32]| {
            xs.iter().zip(got).fold(0f64, |w, (&x, &g)| {
                let want = (x as f64).exp();
                w.max((g as f64 - want).abs() / want)
            })
        };
        let scalar: Vec<f32> = xs.iter().map(|&x| exp_nonpositive(x)).collect();
        // 2 ulp of f32 is 2.4e-7 relative.
        assert!(worst(&scalar) < 2.4e-7, "scalar: {:e}", worst(&scalar));
        assert_eq!(exp_nonpositive(0.0), 1.0);
        // Subnormal results are flushed: 0, as for -inf.
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            use std::arch::x86_64::*;
            let exp8 = |x: [f32; 8]| {
                let mut e = [0f32; 8];
                // SAFETY: the CPU has AVX2 and FMA; `x` and `e` hold 8 floats.
                unsafe { _mm256_storeu_ps(e.as_mut_ptr(), avx2::exp8(_mm256_loadu_ps(x.as_ptr()))) };
                e
            };
            let vector = in_lanes(&xs, exp8);
            assert!(worst(&vector) < 2.4e-7, "AVX2: {:e}", worst(&vector));
            // NaN stays NaN (a NaN logit must not turn into a probability of 0).
            let nan = exp8([f32::NAN; 8]);
            assert!(nan.iter().all(|x| x.is_nan()), "{nan:?}");
            let mut row = [0.0, f32::NAN, -1.0];
            scaled_exp_in_place(&mut row, 0.0, 1.0);
            assert!(row[1].is_nan() && row[0] == 1.0, "{row:?}");
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            use std::arch::x86_64::*;
            let exp16 = |x: [f32; 16]| {
                let mut e = [0f32; 16];
                // SAFETY: the CPU has AVX-512 F; `x` and `e` hold 16 floats.
                unsafe { _mm512_storeu_ps(e.as_mut_ptr(), avx512::exp16(_mm512_loadu_ps(x.as_ptr()))) };
                e
            };
            let vector = in_lanes(&xs, exp16);
            assert!(worst(&vector) < 2.4e-7, "AVX-512: {:e}", worst(&vector));
            let lanes = [
                f32::NAN,
                f32::NEG_INFINITY,
                -100.0,
                0.0,
                -1.0,
                -87.5,
                -86.9,
                -0.5,
                f32::NAN,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
            ];
            let odd = exp16(lanes);
            assert!(odd[0].is_nan() && odd[8].is_nan(), "{odd:?}");
            assert_eq!(&odd[1..4], &[0.0, 0.0, 1.0]);
            assert_eq!(odd[5], 0.0);
            for i in [4, 6, 7] {
                let want = (lanes[i] as f64).exp();
                assert!(((odd[i] as f64) - want).abs() / want < 2.4e-7, "lane {i}");
            }
        }
    }
}
