//! Q8_0 weights (GGML's format: blocks of 32 signed bytes sharing one scale) as the kernel
//! reads them, in one of two layouts chosen when the weight is quantized:
//!
//! - *rows*: each weight row's bytes contiguous, the scales beside them. Each thread turns
//!   a few weight rows at a time back into f32 (a panel that stays in L1) and runs the f32
//!   register tiles over it, so every input row reuses the panel: the multiply-adds are
//!   the f32 kernel's, the weights cost a quarter of the memory and of the reads.
//! - *interleaved* (CPUs with AVX-512 VNNI): groups of 16 weight rows, and within a group
//!   and a block, 4 consecutive bytes of each of the 16 rows side by side, so one 64-byte
//!   load feeds `vpdpbusd` with 4 multiply-adds for each of 16 output columns
//!   (`vnni.rs`). The input rows are quantized too (Q8_0, once per pass), so the
//!   multiply-adds are int8 and no weight is turned back into f32.
//!
//! Why the kernel takes them itself: candle's Q8_0 matmul quantizes the activations too
//! and runs one dot product per row and column. At a prefill's ~100 rows that reached 16 %
//! of the f32 matmul rate, and a SmolLM2 query took 3.3-3.8 s against 0.76-0.97 s in f32
//! (docs/PERFORMANCE.md, "Q8_0 through the kernel").
//!
//! The values are candle's own Q8_0 quantization (`QTensor::quantize`), so the rounding is
//! GGML's; only the layout differs.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::{Error, Result};

/// Elements per Q8_0 block.
pub(crate) const BLOCK: usize = 32;
/// Weight rows per group of the interleaved layout: one 512-bit vector of i32 sums.
pub(crate) const GROUP: usize = 16;
/// Bytes of one row that sit together in the interleaved layout: one i32 lane of
/// `vpdpbusd`.
const QUAD: usize = 4;

/// How a [`Q8Weight`] lays its values out (the module's documentation says why two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Q8Layout {
    /// `values[r * cols + c]`, `scales[r * cols / 32 + c / 32]`.
    Rows,
    /// Rows padded to whole groups of [`GROUP`]; group `g`, block `b`, quad `q` of the
    /// block, row `l` of the group, byte `e` of the quad at
    /// `((g * blocks + b) * 8 + q) * 64 + l * 4 + e`, as `w + 128` (an unsigned byte, for
    /// `vpdpbusd`); `scales` at `(g * blocks + b) * 16 + l`.
    Interleaved,
}

impl Q8Layout {
    /// The layout the kernel reads fastest on this CPU: interleaved where it has AVX-512
    /// VNNI, unless `PATCHREC_Q8=rows` asks for the row layout (to compare the two on one
    /// machine; read once per process).
    pub(crate) fn best() -> Self {
        static BEST: std::sync::OnceLock<Q8Layout> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let rows = std::env::var("PATCHREC_Q8").is_ok_and(|v| v == "rows");
            if super::vnni::runs() && !rows {
                Q8Layout::Interleaved
            } else {
                Q8Layout::Rows
            }
        })
    }
}

/// A `[rows, cols]` weight in Q8_0, laid out as its [`Q8Layout`] says.
pub struct Q8Weight {
    rows: usize,
    cols: usize,
    layout: Q8Layout,
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl Q8Weight {
    /// Quantizes `w` `[rows, cols]` in this CPU's best layout; `None` when `cols` is not
    /// a multiple of 32.
    pub(crate) fn quantize(w: &Tensor) -> Result<Option<Self>> {
        Self::quantize_as(w, Q8Layout::best())
    }

    /// [`Q8Weight::quantize`] in the given layout.
    pub fn quantize_as(w: &Tensor, layout: Q8Layout) -> Result<Option<Self>> {
        let (rows, cols) = w.dims2()?;
        if cols % BLOCK != 0 {
            return Ok(None);
        }
        let q = QTensor::quantize(w, GgmlDType::Q8_0)?;
        let data = q.data()?;
        // GGML's block: the scale as little-endian f16, then 32 values.
        const BYTES: usize = 2 + BLOCK;
        let blocks = rows * cols / BLOCK;
        if data.len() != blocks * BYTES {
            return Err(Error::invalid(format!(
                "Q8_0 data of a [{rows}, {cols}] weight has {} bytes, expected {}",
                data.len(),
                blocks * BYTES
            )));
        }
        let mut values = Vec::with_capacity(rows * cols);
        let mut scales = Vec::with_capacity(blocks);
        for block in data.chunks_exact(BYTES) {
            scales.push(f16::from_le_bytes([block[0], block[1]]).to_f32());
            values.extend(block[2..].iter().map(|&b| b as i8));
        }
        let weight = Q8Weight {
            rows,
            cols,
            layout: Q8Layout::Rows,
            values,
            scales,
        };
        Ok(Some(match layout {
            Q8Layout::Rows => weight,
            Q8Layout::Interleaved => weight.interleaved(),
        }))
    }

    /// This row-layout weight in the interleaved layout.
    fn interleaved(self) -> Self {
        let (rows, cols) = (self.rows, self.cols);
        let blocks = cols / BLOCK;
        let groups = rows.div_ceil(GROUP);
        let mut values = vec![0i8; groups * GROUP * cols];
        let mut scales = vec![0f32; groups * blocks * GROUP];
        for r in 0..rows {
            let (g, l) = (r / GROUP, r % GROUP);
            for b in 0..blocks {
                let src = &self.values[r * cols + b * BLOCK..][..BLOCK];
                let at = (g * blocks + b) * GROUP + l;
                scales[at] = self.scales[r * blocks + b];
                for (q, quad) in src.chunks_exact(QUAD).enumerate() {
                    let dst = ((g * blocks + b) * (BLOCK / QUAD) + q) * GROUP * QUAD + l * QUAD;
                    for (d, &v) in values[dst..dst + QUAD].iter_mut().zip(quad) {
                        *d = unsigned(v);
                    }
                }
            }
        }
        Q8Weight {
            rows,
            cols,
            layout: Q8Layout::Interleaved,
            values,
            scales,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of values and scales a product reads (padding rows included).
    pub fn bytes(&self) -> usize {
        self.values.len() + self.scales.len() * std::mem::size_of::<f32>()
    }

    pub(crate) fn layout(&self) -> Q8Layout {
        self.layout
    }

    /// The interleaved layout's values (`w + 128`, as unsigned bytes) and scales (as
    /// [`Q8Layout::Interleaved`] describes them); `None` in the row layout.
    pub(crate) fn groups(&self) -> Option<(&[u8], &[f32])> {
        (self.layout == Q8Layout::Interleaved).then(|| {
            // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern
            // is valid for both.
            let bytes = unsafe {
                std::slice::from_raw_parts(self.values.as_ptr().cast::<u8>(), self.values.len())
            };
            (bytes, &self.scales[..])
        })
    }

    /// Rows `first..first + out.len() / cols` as f32 into `out`.
    pub(crate) fn dequantize_rows(&self, first: usize, out: &mut [f32]) {
        match self.layout {
            Q8Layout::Rows => {
                let start = first * self.cols;
                let values = &self.values[start..start + out.len()];
                let scales = &self.scales[start / BLOCK..(start + out.len()).div_ceil(BLOCK)];
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 was just detected.
                    return unsafe { dequantize_avx2(values, scales, out) };
                }
                dequantize(values, scales, out)
            }
            // Only the fallbacks and the tests read this layout as f32: a plain loop.
            Q8Layout::Interleaved => {
                let blocks = self.cols / BLOCK;
                for (i, row) in out.chunks_exact_mut(self.cols).enumerate() {
                    let (g, l) = ((first + i) / GROUP, (first + i) % GROUP);
                    for (c, o) in row.iter_mut().enumerate() {
                        let (b, q, e) = (c / BLOCK, c % BLOCK / QUAD, c % QUAD);
                        let at = ((g * blocks + b) * (BLOCK / QUAD) + q) * GROUP * QUAD;
                        let v = signed(self.values[at + l * QUAD + e]);
                        *o = f32::from(v) * self.scales[(g * blocks + b) * GROUP + l];
                    }
                }
            }
        }
    }

    /// The whole weight as an f32 tensor (the fallback where the kernel does not apply,
    /// and the tests' reference).
    pub(crate) fn dequantize(&self, device: &Device) -> Result<Tensor> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.dequantize_rows(0, &mut out);
        Ok(Tensor::from_vec(out, (self.rows, self.cols), device)?)
    }
}

/// `w + 128` as the byte `vpdpbusd` reads unsigned (stored in an `i8`): the sign bit
/// flipped.
fn unsigned(w: i8) -> i8 {
    w ^ i8::MIN
}

/// The weight back from [`unsigned`]'s byte.
fn signed(b: i8) -> i8 {
    b ^ i8::MIN
}

/// Written as a plain loop over whole blocks so that the compiler vectorizes it (sign
/// extension, conversion and one multiply per 8 values with AVX2).
#[inline(always)]
fn dequantize(values: &[i8], scales: &[f32], out: &mut [f32]) {
    for ((o, v), &s) in out
        .chunks_exact_mut(BLOCK)
        .zip(values.chunks_exact(BLOCK))
        .zip(scales)
    {
        for (o, &v) in o.iter_mut().zip(v) {
            *o = f32::from(v) * s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dequantize_avx2(values: &[i8], scales: &[f32], out: &mut [f32]) {
    dequantize(values, scales, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values are candle's Q8_0: dequantizing gives what candle's dequantization
    /// gives, in both layouts (7 rows: a part-filled group), for whole weights and for a
    /// run of rows from the middle.
    #[test]
    fn matches_candles_q8_0() -> Result<()> {
        let dev = Device::Cpu;
        let w = (Tensor::randn(0f32, 1.0, (7, 96), &dev)? * 3.0)?;
        let theirs = QTensor::quantize(&w, GgmlDType::Q8_0)?.dequantize(&dev)?;
        for layout in [Q8Layout::Rows, Q8Layout::Interleaved] {
            let ours = Q8Weight::quantize_as(&w, layout)?.expect("96 columns are 3 blocks");
            assert_eq!(ours.layout(), layout);
            let diff = (ours.dequantize(&dev)? - &theirs)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert_eq!(diff, 0.0, "{layout:?}");
            // Rows 2..5 alone are those rows of the whole.
            let mut rows = vec![0f32; 3 * 96];
            ours.dequantize_rows(2, &mut rows);
            assert_eq!(
                rows,
                theirs.narrow(0, 2, 3)?.flatten_all()?.to_vec1::<f32>()?
            );
        }
        // Quantization did round (the format is not f32 in disguise).
        let err = (&theirs - &w)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err > 0.0 && err < 0.05, "rounding error {err}");
        assert!(
            Q8Weight::quantize(&Tensor::zeros((2, 40), candle_core::DType::F32, &dev)?)?.is_none()
        );
        Ok(())
    }
}
