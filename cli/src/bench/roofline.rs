//! The machine's limits for a pass of products, measured on all of rayon's threads: the
//! read bandwidth from memory, the f32 FMA rate and the int8 multiply-add rate
//! (`vpdpbusd`). A pass can go no faster than its weight bytes over the bandwidth, nor
//! than its multiply-adds over the rate of the instructions it uses; the benchmarks print
//! the larger of the two beside each pass they time.

use std::time::Instant;

use rayon::prelude::*;

/// What [`measure`] found.
#[derive(Debug, Clone, Copy)]
pub struct Roofline {
    /// Bytes per second read from a buffer far larger than the caches, in GB/s.
    pub read_gbps: f64,
    /// f32 multiply-adds as GFLOP/s (two per multiply-add), with the widest FMA this CPU
    /// has (AVX-512 or AVX2); `None` without either.
    pub fma_gflops: Option<f64>,
    /// int8 multiply-adds as GOP/s (two per multiply-add) with AVX-512 VNNI; `None`
    /// without it.
    pub vnni_gops: Option<f64>,
}

impl Roofline {
    /// Milliseconds a pass that reads `bytes` and does `macs` multiply-adds at `rate`
    /// (GFLOP/s or GOP/s) needs at least.
    pub fn limit_ms(&self, bytes: usize, macs: usize, rate: f64) -> f64 {
        let read = bytes as f64 / self.read_gbps / 1e6;
        let compute = 2.0 * macs as f64 / rate / 1e6;
        read.max(compute)
    }
}

/// Measures the three rates, best of three runs each.
pub fn measure() -> Roofline {
    Roofline {
        read_gbps: read_gbps(),
        fma_gflops: fma_gflops(),
        vnni_gops: vnni_gops(),
    }
}

/// Sums a 512 MiB buffer, each thread its share: GB/s.
fn read_gbps() -> f64 {
    let words: Vec<u64> = (0..64 << 20).map(|i: u64| i.wrapping_mul(31)).collect();
    let threads = rayon::current_num_threads().max(1);
    let share = words.len().div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        let sum: u64 = words
            .par_chunks(share)
            .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
            .sum();
        std::hint::black_box(sum);
        best = best.min(started.elapsed().as_secs_f64());
    }
    (words.len() * 8) as f64 / best / 1e9
}

/// Iterations of the register loops: long enough to time, short enough to be quick.
const ITERS: usize = 20_000_000;

/// Runs `per_thread` on every thread at once, best of three: operations per second / 1e9,
/// given the operations one call does.
fn on_all_threads(ops_per_call: f64, per_thread: impl Fn() -> f32 + Sync) -> f64 {
    let threads = rayon::current_num_threads().max(1);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        let sum: f32 = (0..threads).into_par_iter().map(|_| per_thread()).sum();
        std::hint::black_box(sum);
        best = best.min(started.elapsed().as_secs_f64());
    }
    ops_per_call * threads as f64 / best / 1e9
}

fn fma_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was just detected.
            return Some(on_all_threads((ITERS * 12 * 16 * 2) as f64, || unsafe {
                x86::fma_avx512(ITERS)
            }));
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were just detected.
            return Some(on_all_threads((ITERS * 12 * 8 * 2) as f64, || unsafe {
                x86::fma_avx2(ITERS)
            }));
        }
    }
    None
}

fn vnni_gops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512bw") {
        // SAFETY: AVX-512 VNNI and BW were just detected (VNNI implies F).
        return Some(on_all_threads((ITERS * 12 * 64 * 2) as f64, || unsafe {
            x86::vnni(ITERS)
        }));
    }
    None
}

/// Twelve independent accumulators each, so the loops measure throughput, not latency.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) fn fma_avx512(iters: usize) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma_avx2(iters: usize) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut out = [0f32; 8];
        let mut sum = 0.0;
        for v in acc {
            // SAFETY: `out` holds 8 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
            sum += out.iter().sum::<f32>();
        }
        sum
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn vnni(iters: usize) -> f32 {
        let (a, b) = (_mm512_set1_epi8(3), _mm512_set1_epi8(-2));
        let mut acc = [_mm512_setzero_si512(); 12];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm512_dpbusd_epi32(*v, a, b);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_epi32(v) as f32).sum()
    }
}
