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

/// GFLOP/s of a decode-step product `[rows, k] x [n, k]ᵀ` (a weight as stored, e.g. 20
/// beams through the MLP's gate): candle's matmul, and the in-place kernel decoding uses
/// where this CPU has it (`None` without), best of `repeats` each.
pub fn decode_matmul_gflops(
    rows: usize,
    k: usize,
    n: usize,
    repeats: usize,
    device: &Device,
) -> Result<(f64, Option<f64>)> {
    let x = Tensor::rand(0f32, 1.0, (rows, k), device)?;
    let w = Tensor::rand(0f32, 1.0, (n, k), device)?;
    let flops = 2.0 * (rows * k * n) as f64;
    let best = |f: &dyn Fn() -> Result<Option<Tensor>>| -> Result<Option<f64>> {
        let mut best = f64::INFINITY;
        for _ in 0..repeats.max(1) + 1 {
            let started = Instant::now();
            let Some(y) = f()? else { return Ok(None) };
            device.synchronize()?;
            drop(y);
            best = best.min(started.elapsed().as_secs_f64());
        }
        Ok(Some(flops / best / 1e9))
    };
    let candle = best(&|| Ok(Some(x.matmul(&w.t()?)?)))?.unwrap_or(0.0);
    let ours = best(&|| crate::model::skinny::matmul_t(&x, &w))?;
    Ok((candle, ours))
}
