//! The machine's measured matrix-multiply rate at the model's shapes: the ceiling that
//! prefill throughput is compared against (the roofline).

use std::time::Instant;

use candle_core::{Device, Tensor};

use patchrec::error::Result;
use patchrec::model::skinny::{block_matmul_t, BlockFormat, BlockLayout, BlockWeight};

/// GFLOP/s of `[m, k] x [k, n]` f32 matmuls on `device`, best of `repeats` timed runs
/// after one warm-up.
pub fn matmul_gflops(m: usize, k: usize, n: usize, repeats: usize, device: &Device) -> Result<f64> {
    let a = Tensor::rand(0f32, 1.0, (m, k), device)?;
    let b = Tensor::rand(0f32, 1.0, (k, n), device)?
        .t()?
        .contiguous()?
        .t()?;
    let rate = best_gflops(m * k * n, repeats, device, || Ok(Some(a.matmul(&b)?)))?;
    Ok(rate.unwrap_or(0.0))
}

/// GFLOP/s of a decode-step product `[rows, k] x [n, k]ᵀ` (a weight as stored, e.g. 20
/// beams through the MLP's gate): candle's matmul, and the in-place kernel decoding uses
/// where this CPU has it (`None` without; measured whatever its row limits say, since
/// they are set from this comparison), best of `repeats` each.
pub fn decode_matmul_gflops(
    rows: usize,
    k: usize,
    n: usize,
    repeats: usize,
    device: &Device,
) -> Result<(f64, Option<f64>)> {
    let x = Tensor::rand(0f32, 1.0, (rows, k), device)?;
    let w = Tensor::rand(0f32, 1.0, (n, k), device)?;
    let macs = rows * k * n;
    let candle = best_gflops(macs, repeats, device, || Ok(Some(x.matmul(&w.t()?)?)))?;
    let ours = best_gflops(macs, repeats, device, || {
        patchrec::model::skinny::matmul_t_limited(&x, &w, false)
    })?;
    Ok((candle.unwrap_or(0.0), ours))
}

/// GFLOP/s of a decode-step product with a block weight `[n, k]` in `format` (hot in
/// cache): the row layout (f32 multiply-adds over weights turned back into f32) and,
/// where this CPU has AVX-512 VNNI, the interleaved layout (int8 multiply-adds), best of
/// `repeats` each.
pub fn decode_block_gflops(
    format: BlockFormat,
    rows: usize,
    k: usize,
    n: usize,
    repeats: usize,
    device: &Device,
) -> Result<(f64, Option<f64>)> {
    let x = Tensor::randn(0f32, 1.0, (rows, k), device)?;
    let w = Tensor::randn(0f32, 1.0, (n, k), device)?;
    let macs = rows * k * n;
    let rate = |layout: BlockLayout| -> Result<Option<f64>> {
        let q = BlockWeight::quantize_as(&w, format, layout)?.expect("whole blocks");
        best_gflops(macs, repeats, device, || block_matmul_t(&x, &q))
    };
    let int8 = if patchrec::model::skinny::int8_kernel() {
        rate(BlockLayout::Interleaved)?
    } else {
        None
    };
    Ok((rate(BlockLayout::Rows)?.unwrap_or(0.0), int8))
}

/// Milliseconds for `rows` rows through every projection of `layers` layers of SmolLM2's
/// shapes (q, k, v, o, gate, up, down), each layer's weights its own: a decode step's
/// products as serving meets them, streamed from memory rather than hot in cache as
/// [`decode_matmul_gflops`]'s single weight is. candle's matmul, then the in-place kernel
/// (`None` without it), best of `repeats` each; also the bytes of weights one pass reads.
pub fn decode_stack_ms(
    rows: usize,
    layers: usize,
    repeats: usize,
    device: &Device,
) -> Result<(f64, Option<f64>, usize)> {
    let stack = Stack::new(rows, layers, device)?;
    let weights = &stack.weights;
    let bytes = weights.iter().map(|w| w.elem_count() * 4).sum();
    let input = |w: &Tensor| stack.input(w.dims()[1]);
    let candle = best_pass_ms(weights, repeats, device, |w| {
        Ok(Some(input(w).matmul(&w.t()?)?))
    })?;
    let ours = best_pass_ms(weights, repeats, device, |w| {
        patchrec::model::skinny::matmul_t_limited(input(w), w, false)
    })?;
    Ok((candle.unwrap_or(f64::NAN), ours, bytes))
}

/// Milliseconds for one pass of `product` over every weight of `weights`, best of
/// `repeats` timed passes after one warm-up; `None` when `product` declines any weight.
fn best_pass_ms<W>(
    weights: &[W],
    repeats: usize,
    device: &Device,
    product: impl Fn(&W) -> Result<Option<Tensor>>,
) -> Result<Option<f64>> {
    let mut best = f64::INFINITY;
    for round in 0..=repeats.max(1) {
        let started = Instant::now();
        for w in weights {
            if product(w)?.is_none() {
                return Ok(None);
            }
        }
        device.synchronize()?;
        // Round 0 warms up.
        if round > 0 {
            best = best.min(started.elapsed().as_secs_f64());
        }
    }
    Ok(Some(best * 1e3))
}

/// The block-format counterpart of [`decode_stack_ms`]: milliseconds for `rows` rows
/// through `layers` layers of SmolLM2's projections in `format`, with the weights in the row layout
/// (turned back into f32 a panel at a time) and, where this CPU has AVX-512 VNNI, in the
/// interleaved layout (int8 multiply-adds); best of `repeats` each. Also the bytes each
/// layout's pass reads (values and scales) and the multiply-adds of a pass.
pub fn decode_stack_blocks_ms(
    format: BlockFormat,
    rows: usize,
    layers: usize,
    repeats: usize,
    device: &Device,
) -> Result<BlockStackTimes> {
    let stack = Stack::new(rows, layers, device)?;
    let dense = &stack.weights;
    let macs = dense.iter().map(|w| w.elem_count() * rows).sum();
    // (milliseconds, bytes read) of a pass with the weights in `layout`.
    let time = |layout: BlockLayout| -> Result<(Option<f64>, usize)> {
        let weights: Vec<BlockWeight> = dense
            .iter()
            .map(|w| Ok(BlockWeight::quantize_as(w, format, layout)?.expect("whole blocks")))
            .collect::<Result<_>>()?;
        let ms = best_pass_ms(&weights, repeats, device, |w| {
            block_matmul_t(stack.input(w.cols()), w)
        })?;
        Ok((ms, weights.iter().map(BlockWeight::bytes).sum()))
    };
    let (int8_ms, int8_bytes) = if patchrec::model::skinny::int8_kernel() {
        time(BlockLayout::Interleaved)?
    } else {
        (None, 0)
    };
    let (rows_ms, rows_bytes) = time(BlockLayout::Rows)?;
    Ok(BlockStackTimes {
        rows_ms: rows_ms.unwrap_or(f64::NAN),
        int8_ms,
        rows_bytes,
        int8_bytes,
        macs,
    })
}

/// What [`decode_stack_blocks_ms`] measured.
pub struct BlockStackTimes {
    /// Row layout, f32 multiply-adds.
    pub rows_ms: f64,
    /// Interleaved layout, int8 multiply-adds; `None` without AVX-512 VNNI.
    pub int8_ms: Option<f64>,
    /// Bytes a pass reads in the row layout.
    pub rows_bytes: usize,
    /// Bytes a pass reads in the interleaved layout (0 without AVX-512 VNNI).
    pub int8_bytes: usize,
    /// Multiply-adds of a pass.
    pub macs: usize,
}

/// GFLOP/s of a decode-step product `[rows, k] x [n, k]ᵀ` (hot in cache) with the weight
/// in the row layout (the f32 kernel, whatever its row limits say) and in panels of f32
/// and of bf16 (`None` where this CPU lacks that panel kernel), best of `repeats` each.
pub fn decode_panel_gflops(
    rows: usize,
    k: usize,
    n: usize,
    repeats: usize,
    device: &Device,
) -> Result<PanelRates> {
    use patchrec::model::skinny::{panel_kernel, panel_matmul_t, PanelFormat, Panels};
    let x = Tensor::randn(0f32, 1.0, (rows, k), device)?;
    let w = Tensor::randn(0f32, 1.0, (n, k), device)?;
    let macs = rows * k * n;
    let rows_layout = best_gflops(macs, repeats, device, || {
        patchrec::model::skinny::matmul_t_limited(&x, &w, false)
    })?;
    let panels = |format: PanelFormat| -> Result<Option<f64>> {
        if !panel_kernel(format) {
            return Ok(None);
        }
        let p = Panels::pack(&w, format)?;
        best_gflops(macs, repeats, device, || panel_matmul_t(&x, &p))
    };
    Ok(PanelRates {
        rows: rows_layout,
        f32: panels(PanelFormat::F32)?,
        bf16: panels(PanelFormat::Bf16)?,
    })
}

/// Rates or times of one product or pass in the row layout and in f32 and bf16 panels;
/// `None` where this CPU lacks the kernel.
pub struct PanelRates {
    /// The f32 kernel over the weight as stored.
    pub rows: Option<f64>,
    /// f32 panels.
    pub f32: Option<f64>,
    /// bf16 panels.
    pub bf16: Option<f64>,
}

/// Milliseconds for `rows` rows through every projection of `layers` layers of SmolLM2's
/// shapes (as [`decode_stack_ms`]) with the weights in the row layout and in f32 and bf16
/// panels, best of `repeats` each; also the bytes of an f32 pass (bf16 reads half) and its
/// multiply-adds.
pub fn decode_stack_panels_ms(
    rows: usize,
    layers: usize,
    repeats: usize,
    device: &Device,
) -> Result<(PanelRates, usize, usize)> {
    use patchrec::model::skinny::{panel_kernel, panel_matmul_t, PanelFormat, Panels};
    let stack = Stack::new(rows, layers, device)?;
    let dense = &stack.weights;
    let input = |k: usize| stack.input(k);
    let bytes = dense.iter().map(|w| w.elem_count() * 4).sum();
    let macs = dense.iter().map(|w| w.elem_count() * rows).sum();
    let rows_layout = best_pass_ms(dense, repeats, device, |w| {
        patchrec::model::skinny::matmul_t_limited(input(w.dims()[1]), w, false)
    })?;
    let panels = |format: PanelFormat| -> Result<Option<f64>> {
        if !panel_kernel(format) {
            return Ok(None);
        }
        let packed: Vec<Panels> = dense
            .iter()
            .map(|w| Panels::pack(w, format))
            .collect::<Result<_>>()?;
        best_pass_ms(&packed, repeats, device, |p| {
            panel_matmul_t(input(p.cols()), p)
        })
    };
    let rates = PanelRates {
        rows: rows_layout,
        f32: panels(PanelFormat::F32)?,
        bf16: panels(PanelFormat::Bf16)?,
    };
    Ok((rates, bytes, macs))
}

/// `layers` layers of SmolLM2's projections, each with its own random weights, and
/// `rows` random input rows of each width they take: what the stacked passes multiply.
struct Stack {
    weights: Vec<Tensor>,
    x576: Tensor,
    x1536: Tensor,
}

impl Stack {
    fn new(rows: usize, layers: usize, device: &Device) -> Result<Self> {
        let mut weights = Vec::with_capacity(layers * SMOLLM2_PROJECTIONS.len());
        for _ in 0..layers {
            for &(k, n) in &SMOLLM2_PROJECTIONS {
                weights.push(Tensor::randn(0f32, 1.0, (n, k), device)?);
            }
        }
        Ok(Stack {
            weights,
            x576: Tensor::randn(0f32, 1.0, (rows, 576), device)?,
            x1536: Tensor::randn(0f32, 1.0, (rows, 1536), device)?,
        })
    }

    /// The input rows for a weight of `k` columns.
    fn input(&self, k: usize) -> &Tensor {
        if k == 576 {
            &self.x576
        } else {
            &self.x1536
        }
    }
}

/// SmolLM2-135M's projections of one layer, `(in, out)`: q, k, v, o, gate, up, down.
const SMOLLM2_PROJECTIONS: [(usize, usize); 7] = [
    (576, 576),
    (576, 192),
    (576, 192),
    (576, 576),
    (576, 1536),
    (576, 1536),
    (1536, 576),
];

/// Milliseconds to turn a beam step's logits `[rows, 1, vocab]` into per-row
/// log-probabilities on the host: candle's `log_softmax` and `to_vec2`, then decoding's own
/// (`model::logprobs`), best of `repeats` each.
pub fn log_softmax_ms(
    rows: usize,
    vocab: usize,
    repeats: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let logits = Tensor::randn(0f32, 4.0, (rows, 1, vocab), device)?;
    let best = |f: &dyn Fn() -> Result<Vec<Vec<f32>>>| -> Result<f64> {
        std::hint::black_box(f()?);
        let mut best = f64::INFINITY;
        for _ in 0..repeats.max(1) {
            let started = Instant::now();
            std::hint::black_box(f()?);
            best = best.min(started.elapsed().as_secs_f64());
        }
        Ok(best * 1e3)
    };
    let candle = best(&|| {
        let lp = candle_nn::ops::log_softmax(&logits.squeeze(1)?, candle_core::D::Minus1)?;
        Ok(lp.to_vec2::<f32>()?)
    })?;
    let ours = best(&|| patchrec::model::logprobs::log_softmax_rows(&logits))?;
    Ok((candle, ours))
}

/// Milliseconds from a decode pass's last hidden rows `[rows, k]` to each row's
/// log-probabilities of 64 wanted tokens through an output head `[n, k]` (random) in
/// `format` (f32 where `None`): its logits written out, then reduced on the host
/// (`model::logprobs::log_probs_of`, the path where the kernel does not take the head),
/// against the fused head (`skinny::head`: the logits reduced as they are made; an f32
/// head past the kernel's row limits too, to see where they should be for it), alternating,
/// best of `repeats` each; `None` for the fused time where the kernel declines.
pub fn head_log_probs_ms(
    rows: usize,
    k: usize,
    n: usize,
    format: Option<BlockFormat>,
    repeats: usize,
    device: &Device,
) -> Result<(f64, Option<f64>)> {
    use patchrec::model::logprobs::log_probs_of;
    use patchrec::model::skinny::{block_head_log_probs, f32_head_log_probs, matmul_t_limited};
    let x = Tensor::randn(0f32, 1.0, (rows, k), device)?;
    let w = (Tensor::randn(0f32, 1.0, (n, k), device)? * 0.1)?;
    let q = match format {
        Some(f) => {
            Some(BlockWeight::quantize_as(&w, f, BlockLayout::Interleaved)?.expect("whole blocks"))
        }
        None => None,
    };
    let wanted: Vec<Vec<u32>> = (0..rows)
        .map(|r| (0..64).map(|t| ((r * 7919 + t * 769) % n) as u32).collect())
        .collect();
    let written = || -> Result<Vec<Vec<f32>>> {
        let logits = match &q {
            Some(q) => block_matmul_t(&x, q)?.expect("block weights always take the kernel"),
            None => match matmul_t_limited(&x, &w, true)? {
                Some(y) => y,
                None => x.matmul(&w.t()?)?,
            },
        };
        log_probs_of(&logits, &wanted)
    };
    let fused = || match &q {
        Some(q) => block_head_log_probs(&x, q, &wanted),
        None => f32_head_log_probs(&x, &w, &wanted, false),
    };
    let runs = fused()?.is_some();
    std::hint::black_box(written()?);
    let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        std::hint::black_box(written()?);
        a = a.min(started.elapsed().as_secs_f64());
        if runs {
            let started = Instant::now();
            std::hint::black_box(fused()?);
            b = b.min(started.elapsed().as_secs_f64());
        }
    }
    Ok((a * 1e3, runs.then_some(b * 1e3)))
}

/// GFLOP/s of `product` (`macs` multiply-adds), best of `repeats` timed runs after one
/// warm-up; `None` when `product` declines (returns `None`).
fn best_gflops(
    macs: usize,
    repeats: usize,
    device: &Device,
    product: impl Fn() -> Result<Option<Tensor>>,
) -> Result<Option<f64>> {
    if product()?.is_none() {
        return Ok(None);
    }
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        let y = product()?;
        device.synchronize()?;
        drop(y);
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(Some(2.0 * macs as f64 / best / 1e9))
}
