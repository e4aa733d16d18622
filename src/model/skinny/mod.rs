//! `x · Wᵀ` for a few rows of `x` (beam decoding: 20 rows), reading the weight matrix
//! `W` `[out, in]` where it lies.
//!
//! Why our own kernel: candle's CPU matmul (the `gemm` crate) packs the right-hand side
//! into panels on every call. For prefill (hundreds of rows) that packing is amortised;
//! for a decode step it copies every weight matrix once per step, and profiling a
//! SmolLM2 beam search put half of its time in that packing (on AVX-512 and on AVX2
//! machines alike). Here each output is a dot product of an input row with a weight row
//! (both contiguous along `in`), register-blocked so a block of weight rows is loaded once
//! for every input row, and the output columns are split between threads. It serves
//! inference only (no backward pass) and needs AVX-512F or AVX2 with FMA, chosen at run
//! time (`avx512.rs`, `avx2.rs`: the register tiles; `blocks.rs`: Q8_0 and Q4_0 weights,
//! turned back into f32 a panel at a time, or `vnni.rs`: multiplied in int8 where the CPU
//! has AVX-512 VNNI; `panels.rs`, `broadcast.rs`: f32 and bf16 panels; `head.rs`: the
//! output head reduced to a step's log-probabilities; this file: threads, packing, the
//! input prepared once per pass, the walk over tiles);
//! everything else goes through candle. Measured in docs/PERFORMANCE.md.

mod avx2;
mod avx512;
mod broadcast;
mod head;
mod panels;
mod blocks;
mod vnni;

pub use panels::{PanelFormat, Panels};
pub use blocks::{BlockFormat, BlockLayout, BlockWeight};
pub(crate) use head::{enabled as fused_head, log_probs_of as head_log_probs};

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::host::f32_elements;
use crate::error::Result;

/// The instruction sets the kernel has tiles for, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
}

/// An instruction set's tile shape and row limits.
struct Params {
    /// f32 lanes per vector.
    lanes: usize,
    /// Input rows per register tile.
    mr: usize,
    /// Weight rows per register tile.
    nr: usize,
    /// Up to this many rows of `x` the kernel is used for every weight.
    ///
    /// AVX-512 (`cargo bench --bench skinny`, Intel Xeon, 2 cores, three runs, after the
    /// in-place output): the widening gate and up run 1.21-1.87x candle's rate at
    /// 32-80 rows and 0.94-0.97x at 128; the 49,152-row output head 1.20-1.67x at 20-32
    /// rows, 0.91-1.17x at 48-80 (even on average), 0.71-0.74x at 128. (Before the in-place
    /// output the head lost at 20 and 32 rows, and the limit was 32.)
    ///
    /// AVX2 (`cargo bench --bench skinny`, AMD EPYC, 2 threads): before the in-place
    /// output the widening products stopped winning at 32 rows and the limit
    /// was 20. After it, gate and up run 1.42x / 1.40x candle's rate at 32 rows, 1.38x /
    /// 1.23x at 48-64, 1.11x / 1.17x at 80, and the head 1.33x / 1.87x at 32, 0.91x /
    /// 1.18x at 64 (two runs, one table each: docs/bench/skinny-avx2-2threads-53d4694.md,
    /// skinny-avx2-2threads-f0f2cf3.md). A beam search's passes of up to 32 rows
    /// (lookahead) and batched passes of up to 64 now stay on the kernel.
    always_rows: usize,
    /// Up to this many rows it still wins where the output is no wider than the input.
    ///
    /// AVX-512: attention's projections and the MLP's down at 40-120 rows ran at 87-224
    /// GFLOP/s against candle's 57-136; at 128 rows a later run measured q, o
    /// 0.91x, k, v 1.11x, down 2.08x. It covers batched decoding (4 queries: 80 rows) and
    /// short prefills; past 80 rows the widening products go to `gemm`, whose packing then
    /// pays for itself.
    ///
    /// AVX2: q, o, k, v and down win up to 64 rows (1.01-1.35x and 1.07-2.06x at
    /// 64 in two runs) and not reliably beyond (down 0.92x / 1.00x at 80).
    max_rows: usize,
}

impl Isa {
    const fn params(self) -> Params {
        match self {
            Isa::Avx512 => Params {
                lanes: avx512::LANES,
                mr: avx512::MR,
                nr: avx512::NR,
                always_rows: 80,
                max_rows: 128,
            },
            Isa::Avx2 => Params {
                lanes: avx2::LANES,
                mr: avx2::MR,
                nr: avx2::NR,
                always_rows: 64,
                max_rows: 64,
            },
        }
    }

    /// Whether this CPU runs `self`.
    fn runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// The best instruction set this CPU runs the kernel with, if any.
pub(crate) fn isa() -> Option<Isa> {
    [Isa::Avx512, Isa::Avx2].into_iter().find(|i| i.runs())
}

/// Whether this CPU multiplies interleaved block weights (Q8_0, Q4_0) in int8 (AVX-512
/// VNNI).
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn int8_kernel() -> bool {
    vnni::runs()
}

/// A weight `[out, in]` the kernel multiplies by.
#[derive(Clone, Copy)]
pub(crate) enum Weight<'a> {
    F32(&'a Tensor),
    Blocks(&'a BlockWeight),
    Panels(&'a Panels),
}

impl Weight<'_> {
    /// `(out, in)`, or `None` for a tensor that is not 2-D.
    fn dims(&self) -> Option<(usize, usize)> {
        match self {
            Weight::F32(w) => w.dims2().ok(),
            Weight::Blocks(w) => Some((w.rows(), w.cols())),
            Weight::Panels(w) => Some((w.rows(), w.cols())),
        }
    }

    /// The weight as a dense f32 tensor `[out, in]` on `device`: where the kernel does
    /// not apply, candle multiplies by this.
    pub(crate) fn dense(&self, device: &candle_core::Device) -> Result<Tensor> {
        match self {
            Weight::F32(w) => Ok(w.to_device(device)?),
            Weight::Blocks(w) => w.dequantize(device),
            Weight::Panels(w) => w.dequantize(device),
        }
    }
}

/// An f32 weight's storage, locked while the threads read it.
type Locked<'a> = Option<(candle_core::StorageRef<'a>, &'a Layout)>;

impl<'a> Weight<'a> {
    /// The lock on an f32 weight's storage ([`Weight::rows`] reads through it).
    fn lock(&self) -> Locked<'a> {
        match self {
            Weight::F32(t) => Some(t.storage_and_layout()),
            Weight::Blocks(_) | Weight::Panels(_) => None,
        }
    }

    /// The elements as the threads read them, `lock` being [`Weight::lock`]'s; `None` for an
    /// f32 weight that is not on the CPU.
    fn rows<'g>(&self, lock: &'g Locked<'a>) -> Result<Option<Rows<'g>>>
    where
        'a: 'g,
    {
        Ok(Some(match (self, lock) {
            (Weight::Blocks(q), _) => Rows::Blocks(q),
            (Weight::Panels(p), _) => Rows::Panels(p),
            (Weight::F32(_), Some((st, l))) => {
                let Storage::Cpu(st) = &**st else {
                    return Ok(None);
                };
                Rows::F32(f32_elements("skinny-matmul", st, l)?)
            }
            (Weight::F32(_), None) => unreachable!("an f32 weight is locked"),
        }))
    }
}

/// A weight's elements as the threads read them.
#[derive(Clone, Copy)]
enum Rows<'a> {
    F32(&'a [f32]),
    Blocks(&'a BlockWeight),
    Panels(&'a Panels),
}

/// `x` `[.., in]` times `w` `[out, in]` transposed, or `None` when the kernel does not
/// apply (too many rows, not contiguous f32 on the CPU, gradients wanted, or neither
/// AVX-512 nor AVX2), so the caller uses candle's matmul.
pub(crate) fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    matmul_t_limited(x, w, true)
}

/// [`matmul_t`], with the row limits (`row_limits: true`) or without them, for the
/// benchmarks that measure where the limits should be (`cli/benches/skinny.rs`).
pub fn matmul_t_limited(x: &Tensor, w: &Tensor, row_limits: bool) -> Result<Option<Tensor>> {
    let Some(isa) = isa().filter(|&isa| takes(isa, x, Weight::F32(w), row_limits)) else {
        return Ok(None);
    };
    Ok(Some(x.apply_op2_no_bwd(w, &SkinnyMatmul(isa))?))
}

/// `x` `[.., in]` times the block weight `w` `[out, in]` transposed, or `None` where the
/// kernel does not apply (as [`matmul_t`]), for the benchmarks that compare the block
/// formats and layouts (`cli/benches/skinny.rs`).
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn block_matmul_t(x: &Tensor, w: &BlockWeight) -> Result<Option<Tensor>> {
    Ok(matmul_t_each(x, &[Weight::Blocks(w)])?.and_then(|mut ys| ys.pop()))
}

/// `x` `[.., in]` times the panel weight `w` `[out, in]` transposed, or `None` where the
/// kernel does not apply (as [`matmul_t`]), for the benchmarks that compare the layouts.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn panel_matmul_t(x: &Tensor, w: &Panels) -> Result<Option<Tensor>> {
    Ok(matmul_t_each(x, &[Weight::Panels(w)])?.and_then(|mut ys| ys.pop()))
}

/// The log-probabilities of the tokens `wanted[row]` for each row of `x` `[.., in]` under
/// the f32 head `w` `[vocab, in]`, reduced as the kernel makes the logits, or `None` where
/// it does not apply (as [`matmul_t_limited`]), for the benchmarks that compare it with
/// the logits written out.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn f32_head_log_probs(
    x: &Tensor,
    w: &Tensor,
    wanted: &[Vec<u32>],
    row_limits: bool,
) -> Result<Option<Vec<Vec<f32>>>> {
    head::log_probs_of(x, Weight::F32(w), wanted, row_limits)
}

/// [`f32_head_log_probs`] for a block weight.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn block_head_log_probs(
    x: &Tensor,
    w: &BlockWeight,
    wanted: &[Vec<u32>],
) -> Result<Option<Vec<Vec<f32>>>> {
    head::log_probs_of(x, Weight::Blocks(w), wanted, true)
}

/// Whether this CPU multiplies panel weights of `format` in their own kernel (AVX-512;
/// bf16 also needs AVX512_BF16).
pub fn panel_kernel(format: PanelFormat) -> bool {
    broadcast::runs(format)
}

/// Whether the kernel computes `x` `[.., in]` times `w` `[out, in]` transposed with
/// `isa`: `x` contiguous f32 on the CPU without gradients; an f32 `w` likewise and within
/// `isa`'s row limits (when `row_limits`). A block `w` has no row limit: candle's
/// quantized matmul, the alternative, is slower at every row count measured
/// (`blocks.rs`); nor has a
/// panel weight, which nothing else multiplies.
fn takes(isa: Isa, x: &Tensor, w: Weight, row_limits: bool) -> bool {
    let rows = x.elem_count() / x.dims().last().copied().unwrap_or(0).max(1);
    let x_fits = rows > 0
        && super::host::kernels_on(x.device())
        && x.dtype() == DType::F32
        && x.is_contiguous()
        && !x.track_op();
    let Some((out, input)) = w.dims() else {
        return false;
    };
    x_fits
        && match w {
            Weight::Blocks(_) | Weight::Panels(_) => true,
            Weight::F32(w) => {
                let limits = isa.params();
                let too_many = rows > limits.max_rows || (rows > limits.always_rows && out > input);
                !(row_limits && too_many)
                    && super::host::kernels_on(w.device())
                    && w.dtype() == DType::F32
                    && w.is_contiguous()
                    && !w.track_op()
            }
        }
}

/// `x` times each of `ws` (`[out_i, in]`, the same `in`) transposed, in one parallel
/// region: the products of one input that a layer needs together (q, k, v; gate, up).
/// Why together: each product alone hands its columns to the threads and waits for them,
/// and for k and v at a decode step (0.44 MB of weights each) that hand-off and the first
/// cache misses of a fresh stream cost as much as the multiply-adds. `None` where
/// [`takes`] declines any of them or a width differs from `x`'s (then the caller goes one
/// by one).
pub(crate) fn matmul_t_each(x: &Tensor, ws: &[Weight]) -> Result<Option<Vec<Tensor>>> {
    let k = x.dims().last().copied().unwrap_or(0);
    let Some(isa) = isa().filter(|&isa| {
        ws.iter()
            .all(|&w| takes(isa, x, w, true) && w.dims().is_some_and(|(_, input)| input == k))
    }) else {
        return Ok(None);
    };
    let (x_storage, xl) = x.storage_and_layout();
    let Storage::Cpu(xs) = &*x_storage else {
        return Ok(None);
    };
    // The f32 weights' storages stay locked while the threads read them.
    let guards: Vec<_> = ws.iter().map(Weight::lock).collect();
    let mut rows = Vec::with_capacity(ws.len());
    let mut outs = Vec::with_capacity(ws.len());
    for (w, guard) in ws.iter().zip(&guards) {
        let Some(r) = w.rows(guard)? else {
            return Ok(None);
        };
        rows.push(r);
        outs.push(w.dims().map_or(0, |(out, _)| out));
    }
    let m = x.elem_count() / k.max(1);
    let x = f32_elements("skinny-matmul", xs, xl)?;
    let products = rows_times_each(isa, x, &rows, m, k, &outs, true);
    let lead = &xl.dims()[..xl.dims().len() - 1];
    products
        .into_iter()
        .zip(&outs)
        .map(|(y, &n)| {
            let shape: Vec<usize> = lead.iter().copied().chain([n]).collect();
            Ok(Tensor::from_vec(y, shape, &candle_core::Device::Cpu)?)
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

struct SkinnyMatmul(Isa);

impl CustomOp2 for SkinnyMatmul {
    fn name(&self) -> &'static str {
        "skinny-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = f32_elements("skinny-matmul", xs, xl)?;
        let ws = f32_elements("skinny-matmul", ws, wl)?;
        let dims = xl.dims();
        let k = *dims.last().unwrap_or(&0);
        let &[n, wk] = wl.dims() else {
            candle_core::bail!("skinny-matmul: weight must be 2-D, got {:?}", wl.dims());
        };
        if wk != k {
            candle_core::bail!("skinny-matmul: x has {k} columns, weight {wk}");
        }
        let m = xl.shape().elem_count() / k.max(1);
        let out = rows_times_weights(self.0, xs, ws, m, k, n);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("x has at least one dim") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// `out[i, j] = Σ_p x[i, p] · w[j, p]` for `x` `[m, k]`, `w` `[n, k]`, row-major, with
/// `isa`'s tiles. The caller has checked that this CPU runs `isa`.
fn rows_times_weights(isa: Isa, x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    rows_times_each(isa, x, &[Rows::F32(w)], m, k, &[n], true)
        .pop()
        .expect("one product")
}

/// [`rows_times_weights`] for several weights `ws[i]` `[ns[i], k]` at once: their output
/// columns, laid end to end, are split between the threads as one range, so each thread
/// makes one pass over its share of the weights and the caller waits once. Panel weights
/// take their own kernel where the CPU runs it and `panel_kernel` allows it (false: the
/// fallback that CPUs without it take, for the tests).
fn rows_times_each(
    isa: Isa,
    x: &[f32],
    ws: &[Rows],
    m: usize,
    k: usize,
    ns: &[usize],
    panel_kernel: bool,
) -> Vec<Vec<f32>> {
    let total: usize = ns.iter().sum();
    if m == 0 || total == 0 || k == 0 {
        return ns.iter().map(|&n| vec![0f32; m * n]).collect();
    }
    let input = Prepared::new(isa, x, ws, m, k, panel_kernel);
    // Every kernel writes each element of its columns (a later chunk of the input width
    // adds to what the first wrote), so the outputs start uninitialised: a batched pass's
    // profile put 9 % in zeroing fresh buffers, these among them (the head's logits were
    // 31 MB at 160 rows before the fused head, `head.rs`).
    let mut outs: Vec<Vec<f32>> = ns.iter().map(|&n| Vec::with_capacity(m * n)).collect();
    let per_thread = input.per_thread(total);
    let bases: Vec<OutPtr> = outs.iter_mut().map(|o| OutPtr(o.as_mut_ptr())).collect();
    (0..total.div_ceil(per_thread))
        .into_par_iter()
        .for_each(|c| {
            // This thread's global columns `lo..hi`, cut at the weights' boundaries.
            let (lo, hi) = (c * per_thread, ((c + 1) * per_thread).min(total));
            let mut first = 0;
            let mut scratch = Vec::new();
            for ((w, &n), &base) in ws.iter().zip(ns).zip(&bases) {
                let (a, b) = (lo.max(first), hi.min(first + n));
                first += n;
                if a >= b {
                    continue;
                }
                let j0 = a - (first - n);
                // SAFETY: `base + j0` is column `j0` of this weight's `[m, n]` output (its
                // capacity), of which this thread writes only columns `j0..j0 + b - a`: no
                // two threads write the same element.
                unsafe { input.columns(w, j0, b - a, base.get().add(j0), n, &mut scratch) };
            }
        });
    for (o, &n) in outs.iter_mut().zip(ns) {
        // SAFETY: the threads wrote every column of every row (their ranges cover
        // `0..total`, and each kernel writes all `m` rows of its columns).
        unsafe { o.set_len(m * n) };
    }
    outs
}

/// The input rows of a pass, prepared once for all of its weights: quantized for the
/// int8 kernel, in (bf16) pairs for the panel kernel, packed for the f32 tiles, each only
/// where a weight of the pass takes it.
pub(super) struct Prepared<'a> {
    isa: Isa,
    m: usize,
    k: usize,
    panel_kernel: bool,
    quantized: Option<vnni::QuantizedRows>,
    panel_input: Option<broadcast::PanelInput<'a>>,
    packed: Vec<f32>,
}

impl<'a> Prepared<'a> {
    /// `x` `[m, k]` as the weights `ws` (each `[_, k]`) read it; panel weights take their
    /// own kernel where the CPU runs it and `panel_kernel` allows it.
    fn new(isa: Isa, x: &'a [f32], ws: &[Rows], m: usize, k: usize, panel_kernel: bool) -> Self {
        let Params { lanes, mr, .. } = isa.params();
        let mut input = Prepared {
            isa,
            m,
            k,
            panel_kernel,
            quantized: None,
            panel_input: None,
            packed: Vec::new(),
        };
        // Interleaved block weights take the input quantized, once for all of them (where
        // the CPU runs the int8 kernel; elsewhere they go through the panels like the row
        // layout).
        input.quantized = ws
            .iter()
            .any(|w| matches!(w, Rows::Blocks(q) if q.layout() == BlockLayout::Interleaved))
            .then(|| vnni::QuantizedRows::new(x, m, k))
            .flatten();
        // Panel weights take the input as it is, and bf16 ones its bf16 pairs (made once),
        // where the CPU runs their kernel; elsewhere they go through f32 panels like Q8_0's
        // row layout.
        input.panel_input = ws.iter().any(|w| input.panel_runs(w)).then(|| {
            let bf16 = ws
                .iter()
                .any(|w| matches!(w, Rows::Panels(p) if p.format() == PanelFormat::Bf16));
            broadcast::PanelInput::new(x, m, k, bf16)
        });
        // The f32 tiles read the input packed: packed only where a weight goes through them
        // (a pass of panel weights alone, as an f32 model serves on AVX-512, does not).
        if ws.iter().any(|w| input.tiled(w)) {
            input.packed = pack_rows(x, m, k, mr, lanes);
        }
        input
    }

    /// Whether panel weight `w` takes the panel kernel.
    fn panel_runs(&self, w: &Rows) -> bool {
        self.panel_kernel && matches!(w, Rows::Panels(p) if broadcast::runs(p.format()))
    }

    /// Whether `w` takes the int8 kernel.
    fn int8(&self, w: &Rows) -> bool {
        matches!(w, Rows::Blocks(q) if q.layout() == BlockLayout::Interleaved)
            && self.quantized.is_some()
    }

    /// Whether `w` goes through the f32 tiles (as it is, or a panel turned back into f32
    /// at a time).
    fn tiled(&self, w: &Rows) -> bool {
        match w {
            Rows::F32(_) => true,
            Rows::Blocks(_) => !self.int8(w),
            Rows::Panels(_) => !self.panel_runs(w),
        }
    }

    /// What a thread's first and last output columns are multiples of: whole register
    /// tiles, and whole groups of an interleaved or panel weight (whose kernels compute a
    /// group that a range cuts on both sides of the cut).
    fn align(&self) -> usize {
        let lcm = |a: usize, b: usize| a * b / gcd(a, b);
        let mut align = self.isa.params().nr;
        if self.quantized.is_some() {
            align = lcm(align, blocks::GROUP);
        }
        if self.panel_input.is_some() {
            align = lcm(align, broadcast::COLUMNS);
        }
        align
    }

    /// Output columns per thread for `total` columns: an aligned share of them, or all of
    /// them below ~64k multiply-adds per thread, where the hand-off costs more than it
    /// saves.
    fn per_thread(&self, total: usize) -> usize {
        let threads = rayon::current_num_threads().max(1);
        if self.m * total * self.k < 65_536 * threads {
            total.max(1)
        } else {
            let align = self.align();
            total.div_ceil(threads).div_ceil(align) * align
        }
    }

    /// `out[i * ld + c] = x[i] · w[j0 + c]` for every row `i` and `c < cols`; `scratch`
    /// holds the weight rows that go back to f32 first (reused between calls).
    ///
    /// # Safety
    /// `w` is one of the weights this was prepared for, with `j0 + cols` rows at most;
    /// `out[i * ld + c]` is writable for `i < m`, `c < cols`, and no other thread writes
    /// those elements meanwhile.
    unsafe fn columns(
        &self,
        w: &Rows,
        j0: usize,
        cols: usize,
        out: *mut f32,
        ld: usize,
        scratch: &mut Vec<f32>,
    ) {
        let (isa, m, k) = (self.isa, self.m, self.k);
        match w {
            Rows::F32(w) => {
                // SAFETY: `w` holds `cols * k` elements from row `j0`, `out` as promised.
                unsafe { block_rows(isa, &self.packed, &w[j0 * k..(j0 + cols) * k], out, m, k, ld) }
            }
            Rows::Blocks(q) if self.int8(w) => {
                let xq = self.quantized.as_ref().expect("int8 has quantized rows");
                // SAFETY: `quantized` exists only where `vnni::runs()`; `q` is interleaved
                // with `k` columns like `x`; `j0 + cols <= n` rows; `out` as promised.
                unsafe { vnni::columns(xq, q, j0, j0 + cols, out, ld) }
            }
            Rows::Panels(p) if self.panel_runs(w) && self.panel_input.is_some() => {
                let xp = self.panel_input.as_ref().expect("just checked");
                // SAFETY: the kernel runs for `p`'s format; `xp` has bf16 pairs where any
                // weight is bf16; `p` has `k` columns like `x`; `j0 + cols <= n` rows; `out`
                // as promised.
                unsafe { broadcast::columns(xp, p, j0, j0 + cols, out, ld) }
            }
            Rows::Blocks(_) | Rows::Panels(_) => {
                scratch.resize(panel_rows(k, isa.params().nr) * k, 0.0);
                let mut j = 0;
                while j < cols {
                    let r = (cols - j).min(scratch.len() / k);
                    let panel = &mut scratch[..r * k];
                    match w {
                        Rows::Blocks(q) => q.dequantize_rows(j0 + j, panel),
                        Rows::Panels(p) => p.dequantize_rows(j0 + j, panel),
                        Rows::F32(_) => unreachable!("f32 rows take their own arm"),
                    }
                    // SAFETY: `panel` holds `r * k` elements; `out + j` is column `j0 + j`,
                    // of which this call writes `r` columns.
                    unsafe { block_rows(isa, &self.packed, panel, out.add(j), m, k, ld) };
                    j += r;
                }
            }
        }
    }
}

/// The columns of a group of 16 weight rows starting at row `first` that lie in
/// `lo..hi`, as a lane mask (bit `c`: row `first + c`). The int8 and panel kernels write a
/// thread's range of output columns with it, whose ends may cut a group.
fn group_mask(first: usize, lo: usize, hi: usize) -> u16 {
    let start = lo.saturating_sub(first).min(16);
    let end = hi.saturating_sub(first).min(16);
    (((1u32 << end) - 1) & !((1u32 << start) - 1)) as u16
}

/// The greatest common divisor (for the least common multiple of a tile and a group).
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Weight rows turned back into f32 at a time: about 16 KiB of f32, so the panel stays in
/// L1 while every packed input row passes by, rounded up to whole register tiles.
fn panel_rows(k: usize, nr: usize) -> usize {
    (4096 / k.max(1)).max(1).div_ceil(nr) * nr
}

/// `out[i * ld + j] = x[i] · w[j]` for the `m` packed rows of `x` and the `w.len() / k`
/// rows of `w`, with `isa`'s tiles.
///
/// # Safety
/// `isa` runs on this CPU (`isa()` detected it); `packed` is [`pack_rows`]'s layout of `m`
/// rows of `k` with `isa`'s tile; `out[i * ld + j]` is writable for `i < m`, `j < w.len() /
/// k`, and no other thread writes those elements meanwhile.
unsafe fn block_rows(
    isa: Isa,
    packed: &[f32],
    w: &[f32],
    out: *mut f32,
    m: usize,
    k: usize,
    ld: usize,
) {
    let n = w.len() / k.max(1);
    // SAFETY: as the caller promises (`for_each_tile`'s terms).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match isa {
            Isa::Avx512 => avx512::block_rows(packed, w, out, m, k, n, ld),
            Isa::Avx2 => avx2::block_rows(packed, w, out, m, k, n, ld),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, packed, w, out, m, n, ld);
}

/// The output's base pointer, shared by the threads that write its disjoint columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: the threads of `rows_times_weights` write disjoint elements through it while the
// output vector outlives them.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// A method, so closures capture the `Send` wrapper rather than its pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `x` `[m, k]` regrouped so the kernel reads one stream: blocks of `mr` rows, each
/// `[k / lanes][mr][lanes]`, zero-padded past `m` and `k` (`x` is small; the weights are
/// what must not be copied).
fn pack_rows(x: &[f32], m: usize, k: usize, mr: usize, lanes: usize) -> Vec<f32> {
    let kq = k.div_ceil(lanes);
    let block = mr * kq * lanes;
    let mut packed = vec![0f32; m.div_ceil(mr) * block];
    for (i, row) in x.chunks_exact(k).take(m).enumerate() {
        let base = (i / mr) * block + (i % mr) * lanes;
        for (q, piece) in row.chunks(lanes).enumerate() {
            let at = base + q * mr * lanes;
            packed[at..at + piece.len()].copy_from_slice(piece);
        }
    }
    packed
}

/// Visits the output in register tiles of at most `mr_max x nr_max`, weight-block-major, so
/// one block of weight rows stays in L1 while every input row passes by: `tile(xb, wb, ob,
/// mr, nr)` gets the packed input rows `i..i + mr` (as [`pack_rows`] laid them out with
/// `lanes`), the weight rows `j..j + nr` (stride `k`) and the output at `out[i * ld + j]`
/// (`ld`: the output's row stride).
/// A corner smaller than a full tile both ways comes as 1 x 1 tiles, so an instruction set
/// needs tiles only for the full one, short rows and short columns. Inlined into each
/// instruction set's `block_rows`, whose target features its closure inherits.
///
/// # Safety
/// `packed` holds `m.div_ceil(mr_max)` blocks of `mr_max * k.div_ceil(lanes) * lanes`
/// floats, `w` `n * k`, and `out[i * ld + j]` is writable for `i < m`, `j < n`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn for_each_tile(
    packed: *const f32,
    w: *const f32,
    out: *mut f32,
    (m, k, n, ld): (usize, usize, usize, usize),
    lanes: usize,
    mr_max: usize,
    nr_max: usize,
    mut tile: impl FnMut(*const f32, *const f32, *mut f32, usize, usize),
) {
    let block = mr_max * k.div_ceil(lanes) * lanes;
    // SAFETY: every offset stays inside the three buffers the caller describes.
    let mut at = |i: usize, j: usize, mr: usize, nr: usize| unsafe {
        let xb = packed.add((i / mr_max) * block + (i % mr_max) * lanes);
        tile(xb, w.add(j * k), out.add(i * ld + j), mr, nr)
    };
    let mut j = 0;
    while j < n {
        let nr = (n - j).min(nr_max);
        let mut i = 0;
        while i < m {
            let mr = (m - i).min(mr_max);
            if mr < mr_max && nr < nr_max {
                for rr in 0..mr {
                    for cc in 0..nr {
                        at(i + rr, j + cc, 1, 1);
                    }
                }
            } else {
                at(i, j, mr, nr);
            }
            i += mr;
        }
        j += nr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Σ a[p]·b[p]` in f64, and `Σ |a[p]·b[p]|`.
    fn dot(a: &[f64], b: &[f64]) -> (f64, f64) {
        a.iter()
            .zip(b)
            .fold((0.0, 0.0), |(s, abs), (a, b)| (s + a * b, abs + (a * b).abs()))
    }

    /// Whether the kernel's f32 sum `got` is within f32 summation's error of `want`:
    /// 1e-4 relative, plus a little per unit of the terms' absolute sum (a long sum whose
    /// terms cancel ends near zero carrying the rounding of its large partial sums).
    fn f32_sum_close(got: f64, want: f64, abs: f64) -> bool {
        (got - want).abs() <= 1e-4 * (1.0 + want.abs()) + 1e-6 * abs
    }

    /// Against a plain triple loop, for every instruction set this CPU runs, over shapes
    /// that exercise every tile remainder (rows 1..=13 and more, weight rows not a multiple
    /// of 3 or 4, `k` not a multiple of 8 or 16, `k` in several chunks).
    #[test]
    fn matches_reference_product() {
        let isas: Vec<Isa> = [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .filter(|i| i.runs())
            .collect();
        if isas.is_empty() {
            eprintln!("neither AVX-512 nor AVX2: skinny kernel not exercised");
            return;
        }
        for &isa in &isas {
            check_against_reference(isa);
        }
    }

    fn check_against_reference(isa: Isa) {
        for &(m, k, n) in &[
            (1, 16, 4),
            (7, 33, 9),
            (13, 576, 130),
            (20, 64, 1),
            (6, 5, 7),
            (5, 21, 10),
            (4, 8, 3),
            (9, 100, 11),
            // Several tiles of rows with `k` cut into chunks by the AVX-512 walk (20 and
            // 9 rows; 700 splits into 352 + 348, not a multiple of 16), and 48 rows,
            // past the rows it chunks.
            (20, 1536, 37),
            (9, 700, 13),
            (48, 577, 9),
        ] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 31.0)
                .collect();
            let got = rows_times_weights(isa, &x, &w, m, k, n);
            assert_eq!(got.len(), m * n);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                        .sum();
                    let g = got[i * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{isa:?} [{m},{k}]x[{n},{k}] at ({i},{j}): {g} vs {want}"
                    );
                }
            }
        }
    }

    /// Several weights in one pass (q, k, v; gate, up): each output equals its own
    /// product, for row counts with and without the thread split, weights whose widths
    /// cut a thread's range in odd places, and a trainable weight makes it decline.
    #[test]
    fn products_of_one_input_match_one_by_one() -> Result<()> {
        if isa().is_none() {
            return Ok(());
        }
        let dev = candle_core::Device::Cpu;
        let ws: Vec<Tensor> = [576, 13, 192, 1]
            .iter()
            .map(|&n| Tensor::randn(0f32, 1.0, (n, 96), &dev))
            .collect::<candle_core::Result<_>>()?;
        let refs: Vec<Weight> = ws.iter().map(Weight::F32).collect();
        for rows in [1, 7, 32] {
            let x = Tensor::randn(0f32, 1.0, (rows, 1, 96), &dev)?;
            let got = matmul_t_each(&x, &refs)?.expect("kernel applies");
            assert_eq!(got.len(), ws.len());
            for (y, w) in got.iter().zip(&ws) {
                assert_eq!(y.dims(), &[rows, 1, w.dim(0)?]);
                let want = x.broadcast_matmul(&w.t()?)?;
                let diff = (y - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-4, "{rows} rows, {} outputs: {diff}", w.dim(0)?);
            }
        }
        let var = candle_core::Var::from_tensor(&ws[1])?;
        let x = Tensor::randn(0f32, 1.0, (4, 96), &dev)?;
        let pair = [Weight::F32(&ws[0]), Weight::F32(var.as_tensor())];
        assert!(matmul_t_each(&x, &pair)?.is_none());
        Ok(())
    }

    /// Q8_0 and Q4_0 weights, alone and beside f32 ones and each other in one pass, in both
    /// layouts: each product equals `x` times the dequantized weight (an f64 reference),
    /// for row counts inside
    /// and past the f32 limits, input widths whose panels hold 9 rows (576) and 3 (1536),
    /// and output widths that end mid-panel, mid-tile and mid-group. Where the int8 kernel
    /// runs (interleaved weights on a CPU with AVX-512 VNNI), `x` is the input as it
    /// quantized it; [`int8_products_stay_within_the_input_rounding`] bounds the
    /// difference that makes.
    #[test]
    fn block_weights_match_their_dequantized_product() -> Result<()> {
        if isa().is_none() {
            return Ok(());
        }
        for layout in [BlockLayout::Rows, BlockLayout::Interleaved] {
            check_block_products(layout, [BlockFormat::Q8_0, BlockFormat::Q4_0])?;
            check_block_products(layout, [BlockFormat::Q4_0, BlockFormat::Q8_0])?;
        }
        Ok(())
    }

    /// The products of an f32 weight and two block weights in `formats`.
    fn check_block_products(layout: BlockLayout, formats: [BlockFormat; 2]) -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let int8 = layout == BlockLayout::Interleaved && vnni::runs();
        for (k, outs) in [(576, [130, 64, 1]), (1536, [20, 7, 576])] {
            let dense: Vec<Tensor> = outs
                .iter()
                .map(|&n| Tensor::randn(0f32, 1.0, (n, k), &dev))
                .collect::<candle_core::Result<_>>()?;
            // The first is never read as a block weight.
            let blocks: Vec<BlockWeight> = dense
                .iter()
                .zip([formats[0], formats[0], formats[1]])
                .map(|(w, f)| Ok(BlockWeight::quantize_as(w, f, layout)?.expect("whole blocks")))
                .collect::<Result<_>>()?;
            // Each weight as the kernel should see it: the first f32 as it is, the
            // others dequantized.
            let reference: Vec<Vec<f64>> = (0..3)
                .map(|i| {
                    let t = if i == 0 {
                        dense[0].clone()
                    } else {
                        blocks[i].dequantize(&dev)?
                    };
                    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
                })
                .collect::<Result<_>>()?;
            // The first weight stays f32: a mixed pass, while the f32 weight is within
            // its row limit; past it (104 rows) the block weights alone.
            for m in [1, 7, 32, 104] {
                let first = if m <= isa().expect("available").params().always_rows {
                    0
                } else {
                    1
                };
                let ws: Vec<Weight> = (first..3)
                    .map(|i| {
                        if i == 0 {
                            Weight::F32(&dense[0])
                        } else {
                            Weight::Blocks(&blocks[i])
                        }
                    })
                    .collect();
                let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let as_f64 = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
                let exact = as_f64(&xs);
                let rounded = match vnni::QuantizedRows::new(&xs, m, k) {
                    Some(q) if int8 => {
                        let rows: Vec<f32> = (0..m).flat_map(|i| q.dequantize_row(i)).collect();
                        as_f64(&rows)
                    }
                    _ => exact.clone(),
                };
                let got = matmul_t_each(&x, &ws)?.expect("the kernel takes these");
                assert_eq!(got.len(), 3 - first);
                for (i, y) in (first..3).zip(&got) {
                    let n = outs[i];
                    let y = y.flatten_all()?.to_vec1::<f32>()?;
                    let w = &reference[i];
                    // The f32 weight multiplies the input as it is.
                    let xs = if i == 0 { &exact } else { &rounded };
                    for r in 0..m {
                        for c in 0..n {
                            let (want, abs) = dot(&xs[r * k..][..k], &w[c * k..][..k]);
                            let g = y[r * n + c] as f64;
                            assert!(
                                f32_sum_close(g, want, abs),
                                "{layout:?} {formats:?} weight {i} [{m},{k}]x[{n},{k}] \
                                 at ({r},{c}): {g} vs {want}"
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The int8 kernel against the product of the unrounded input: each output is within
    /// the bound that rounding the input allows (half a step of its block's scale times
    /// the weights' magnitudes), and well inside it on average. With input rows that
    /// hold an outlier, as LLM activations do.
    #[test]
    fn int8_products_stay_within_the_input_rounding() -> Result<()> {
        if !vnni::runs() {
            eprintln!("no AVX-512 VNNI: the int8 kernel is not exercised");
            return Ok(());
        }
        for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
            check_int8_rounding(format)?;
        }
        Ok(())
    }

    fn check_int8_rounding(format: BlockFormat) -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let (m, k, n) = (20, 576, 200);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let q = BlockWeight::quantize_as(&w, format, BlockLayout::Interleaved)?
            .expect("whole blocks");
        let wd = q.dequantize(&dev)?.flatten_all()?.to_vec1::<f32>()?;
        let mut xs = Tensor::randn(0f32, 1.0, (m, k), &dev)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        xs[3 * k + 40] = 60.0;
        let x = Tensor::from_vec(xs.clone(), (m, k), &dev)?;
        let got = matmul_t_each(&x, &[Weight::Blocks(&q)])?.expect("the kernel takes it");
        let got = got[0].flatten_all()?.to_vec1::<f32>()?;
        let (mut worst, mut sum_ratio) = (0f64, 0f64);
        for r in 0..m {
            for c in 0..n {
                let (mut want, mut bound) = (0f64, 1e-4);
                for b in 0..k / 32 {
                    let block = &xs[r * k + b * 32..][..32];
                    let step = block.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 127.0;
                    for p in b * 32..(b + 1) * 32 {
                        let wv = f64::from(wd[c * k + p]);
                        want += f64::from(xs[r * k + p]) * wv;
                        bound += step / 2.0 * wv.abs();
                    }
                }
                let err = (f64::from(got[r * n + c]) - want).abs();
                let g = got[r * n + c];
                assert!(err <= bound, "{format:?} ({r},{c}): {g} vs {want}, bound {bound}");
                worst = worst.max(err / bound);
                sum_ratio += err / bound;
            }
        }
        let mean = sum_ratio / (m * n) as f64;
        assert!(mean < 0.2, "{format:?}: mean error {mean} of the bound (worst {worst})");
        // A NaN or an infinity in an input row makes that row's products NaN, as in f32,
        // and leaves the other rows as they were.
        for bad in [f32::NAN, f32::INFINITY] {
            let mut xs = xs.clone();
            xs[5 * k + 100] = bad;
            let x = Tensor::from_vec(xs, (m, k), &dev)?;
            let y = matmul_t_each(&x, &[Weight::Blocks(&q)])?.expect("the kernel takes it");
            let y = y[0].flatten_all()?.to_vec1::<f32>()?;
            assert!(y[5 * n..6 * n].iter().all(|v| v.is_nan()), "{bad} in row 5");
            assert_eq!(&y[..5 * n], &got[..5 * n]);
        }
        Ok(())
    }

    /// Panel weights, f32 and bf16, alone and in one pass beside an f32 and a Q8_0 weight:
    /// each product equals the f64 product of what the kernel multiplies (the input as it
    /// is, or rounded to bf16, times the weight as its panels hold it), for row counts
    /// that fill tiles unevenly (1, 7, 9, 20, 104), widths that are odd (a padded bf16
    /// pair) or walked in chunks (7, 9 and 20 rows of 576 or 1,536), and output widths
    /// that end mid-panel and mid-tile; the larger products split their columns between
    /// threads.
    #[test]
    fn panel_weights_match_their_product() -> Result<()> {
        if isa().is_none() {
            return Ok(());
        }
        let dev = candle_core::Device::Cpu;
        for format in [PanelFormat::F32, PanelFormat::Bf16] {
            let runs = broadcast::runs(format);
            for (k, n) in [(576, 130), (37, 49), (1536, 576), (64, 1)] {
                let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
                let p = Panels::pack(&w, format)?;
                let held = p.dequantize(&dev)?.to_dtype(DType::F64)?;
                let held = held.flatten_all()?.to_vec1::<f64>()?;
                for m in [1, 7, 9, 20, 104] {
                    let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
                    let xs = x.flatten_all()?.to_vec1::<f32>()?;
                    let input = broadcast::PanelInput::new(&xs, m, k, true);
                    let xr: Vec<f64> = if runs && format == PanelFormat::Bf16 {
                        (0..m).flat_map(|i| input.bf16_row(i)).map(f64::from).collect()
                    } else {
                        xs.iter().map(|&v| f64::from(v)).collect()
                    };
                    let y = panel_matmul_t(&x, &p)?.expect("the kernel takes panels");
                    assert_eq!(y.dims(), &[m, n]);
                    let y = y.flatten_all()?.to_vec1::<f32>()?;
                    for r in 0..m {
                        for c in 0..n {
                            let (want, abs) = dot(&xr[r * k..][..k], &held[c * k..][..k]);
                            let g = f64::from(y[r * n + c]);
                            assert!(
                                f32_sum_close(g, want, abs),
                                "{format:?} [{m},{k}]x[{n},{k}] at ({r},{c}): {g} vs {want}"
                            );
                        }
                    }
                }
            }
            // One pass with an f32 weight, a Q8_0 weight and the panels: each as alone.
            let (m, k) = (20, 576);
            let dense: Vec<Tensor> = [96, 200, 100]
                .iter()
                .map(|&n| Tensor::randn(0f32, 1.0, (n, k), &dev))
                .collect::<candle_core::Result<_>>()?;
            let q = BlockWeight::quantize(&dense[1], BlockFormat::Q8_0)?.expect("whole blocks");
            let p = Panels::pack(&dense[2], format)?;
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let ws = [Weight::F32(&dense[0]), Weight::Blocks(&q), Weight::Panels(&p)];
            let got = matmul_t_each(&x, &ws)?.expect("the kernel takes all three");
            let alone = [
                matmul_t(&x, &dense[0])?.expect("within the row limits"),
                block_matmul_t(&x, &q)?.expect("Q8_0"),
                panel_matmul_t(&x, &p)?.expect("panels"),
            ];
            for (i, (g, a)) in got.iter().zip(&alone).enumerate() {
                let diff = (g - a)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert_eq!(diff, 0.0, "{format:?}: weight {i} differs in a shared pass");
            }
        }
        Ok(())
    }

    /// bf16 against the product of the unrounded input and weight: each output within
    /// the bound that rounding both to bf16 allows (2^-8 of `Σ |x| |w|`), and well inside
    /// it on average; a NaN in an input row makes that row NaN and leaves the others.
    #[test]
    fn bf16_products_stay_within_the_rounding() -> Result<()> {
        if !broadcast::runs(PanelFormat::Bf16) {
            eprintln!("no AVX512_BF16: the bf16 kernel is not exercised");
            return Ok(());
        }
        let dev = candle_core::Device::Cpu;
        let (m, k, n) = (20, 576, 200);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let ws = w.flatten_all()?.to_vec1::<f32>()?;
        let p = Panels::pack(&w, PanelFormat::Bf16)?;
        let mut xs = Tensor::randn(0f32, 1.0, (m, k), &dev)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        xs[3 * k + 40] = 60.0;
        let x = Tensor::from_vec(xs.clone(), (m, k), &dev)?;
        let got = panel_matmul_t(&x, &p)?.expect("the kernel takes it");
        let got = got.flatten_all()?.to_vec1::<f32>()?;
        let mut sum_ratio = 0f64;
        for r in 0..m {
            for c in 0..n {
                let (mut want, mut bound) = (0f64, 1e-5);
                for q in 0..k {
                    let (a, b) = (f64::from(xs[r * k + q]), f64::from(ws[c * k + q]));
                    want += a * b;
                    bound += (a * b).abs() / 256.0;
                }
                let err = (f64::from(got[r * n + c]) - want).abs();
                assert!(err <= bound, "({r},{c}): {} vs {want}, bound {bound}", got[r * n + c]);
                sum_ratio += err / bound;
            }
        }
        let mean = sum_ratio / (m * n) as f64;
        assert!(mean < 0.1, "mean error {mean} of the bound");
        let mut bad = xs;
        bad[5 * k + 100] = f32::NAN;
        let y = panel_matmul_t(&Tensor::from_vec(bad, (m, k), &dev)?, &p)?.expect("kernel");
        let y = y.flatten_all()?.to_vec1::<f32>()?;
        assert!(y[5 * n..6 * n].iter().all(|v| v.is_nan()));
        assert_eq!(&y[..5 * n], &got[..5 * n]);
        Ok(())
    }

    /// Where the CPU lacks the panel kernel, panel weights go through the f32 tiles a
    /// few rows at a time: the product of the unrounded input and the weight as the
    /// panels hold it, for f32 and bf16 and every instruction set this CPU runs.
    #[test]
    fn panel_weights_without_their_kernel_match_their_product() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let (m, k, n) = (9, 1536, 70);
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?.flatten_all()?.to_vec1::<f32>()?;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        for isa in [Isa::Avx512, Isa::Avx2].into_iter().filter(|i| i.runs()) {
            for format in [PanelFormat::F32, PanelFormat::Bf16] {
                let p = Panels::pack(&w, format)?;
                let held = p.dequantize(&dev)?.flatten_all()?.to_vec1::<f32>()?;
                let got = rows_times_each(isa, &x, &[Rows::Panels(&p)], m, k, &[n], false);
                for r in 0..m {
                    for c in 0..n {
                        let want: f64 = (0..k)
                            .map(|q| f64::from(x[r * k + q]) * f64::from(held[c * k + q]))
                            .sum();
                        let g = f64::from(got[0][r * n + c]);
                        assert!(
                            (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{isa:?} {format:?} at ({r},{c}): {g} vs {want}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Through the tensor entry point: batch dims kept, same values as candle's matmul; a
    /// trainable weight or too many rows falls back to candle (`None`).
    #[test]
    fn tensor_entry_matches_candle_and_declines() -> Result<()> {
        if isa().is_none() {
            return Ok(());
        }
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 40), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (7, 40), &dev)?;
        let got = matmul_t(&x, &w)?.expect("kernel applies");
        assert_eq!(got.dims(), &[2, 5, 7]);
        let want = x.broadcast_matmul(&w.t()?)?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max difference {diff}");

        let var = candle_core::Var::from_tensor(&w)?;
        assert!(matmul_t(&x, var.as_tensor())?.is_none());
        let limits = isa().expect("available").params();
        let many = Tensor::zeros((limits.max_rows + 1, 40), DType::F32, &dev)?;
        assert!(matmul_t(&many, &w)?.is_none());
        let wide = Tensor::zeros((41, 40), DType::F32, &dev)?;
        let always = limits.always_rows;
        assert!(matmul_t(&many.narrow(0, 0, always + 1)?, &wide)?.is_none());
        assert!(matmul_t(&many.narrow(0, 0, always)?, &wide)?.is_some());
        Ok(())
    }
}
