//! The machine's measured matrix-multiply rate at the model's shapes: the ceiling that
//! prefill throughput is compared against (the roofline).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// GFLOP/s of `[m, k] x [k, n]` f32 matmuls on `device`, best of `repeats` timed runs
/// after one warm-up.
pub fn matmul_gflops(m: usize, k: usize, n: usize, repeats: usize, device: &Device) -> Result<f64> {
    let a = Tensor::rand(0f32, 1.0, (m, k), device)?;
    let b = Tensor::rand(0f32, 1.0, (k, n), device)?
        .t()?
        .contiguous()?
        .t()?;
    a.matmul(&b)?.to_dtype(DType::F32)?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        let c = a.matmul(&b)?;
        device.synchronize()?;
        drop(c);
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * k * n) as f64 / best / 1e9)
}
