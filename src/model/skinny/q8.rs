//! Q8_0 weights (GGML's format: blocks of 32 signed bytes sharing one scale) as the kernel
//! reads them: each weight row's bytes contiguous, the scales beside them.
//!
//! Why the kernel takes them itself: candle's Q8_0 matmul quantizes the activations too
//! and runs one dot product per row and column. At a prefill's ~100 rows that reached 16 %
//! of the f32 matmul rate, and a SmolLM2 query took 3.3-3.8 s against 0.76-0.97 s in f32
//! (docs/PERFORMANCE.md, "Q8_0 through the kernel"). Here each thread turns a few weight
//! rows at a time back into f32 (a panel that stays in L1) and runs the f32 register tiles
//! over it, so every input row reuses the panel: the multiply-adds are the f32 kernel's,
//! the weights cost a quarter of the memory and of the reads.
//!
//! The values are candle's own Q8_0 quantization (`QTensor::quantize`), so the rounding is
//! GGML's; only the layout differs.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::{Error, Result};

/// Elements per Q8_0 block.
pub(crate) const BLOCK: usize = 32;

/// A `[rows, cols]` weight in Q8_0: `values[r * cols + c]` times `scales[r * cols / 32 + c /
/// 32]` is the weight.
pub(crate) struct Q8Weight {
    rows: usize,
    cols: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl Q8Weight {
    /// Quantizes `w` `[rows, cols]`; `None` when `cols` is not a multiple of 32.
    pub(crate) fn quantize(w: &Tensor) -> Result<Option<Self>> {
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
        Ok(Some(Q8Weight {
            rows,
            cols,
            values,
            scales,
        }))
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `first..first + out.len() / cols` as f32 into `out`.
    pub(crate) fn dequantize_rows(&self, first: usize, out: &mut [f32]) {
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

    /// The whole weight as an f32 tensor (the fallback where the kernel does not apply,
    /// and the tests' reference).
    pub(crate) fn dequantize(&self, device: &Device) -> Result<Tensor> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.dequantize_rows(0, &mut out);
        Ok(Tensor::from_vec(out, (self.rows, self.cols), device)?)
    }
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
    /// gives, for whole weights and for a run of rows from the middle.
    #[test]
    fn matches_candles_q8_0() -> Result<()> {
        let dev = Device::Cpu;
        let w = (Tensor::randn(0f32, 1.0, (7, 96), &dev)? * 3.0)?;
        let ours = Q8Weight::quantize(&w)?.expect("96 columns are 3 blocks");
        let theirs = QTensor::quantize(&w, GgmlDType::Q8_0)?.dequantize(&dev)?;
        let diff = (ours.dequantize(&dev)? - &theirs)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        // Quantization did round (the format is not f32 in disguise) ...
        let err = (&theirs - &w)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err > 0.0 && err < 0.05, "rounding error {err}");
        // ... and rows 2..5 alone are those rows of the whole.
        let mut rows = vec![0f32; 3 * 96];
        ours.dequantize_rows(2, &mut rows);
        assert_eq!(
            rows,
            theirs.narrow(0, 2, 3)?.flatten_all()?.to_vec1::<f32>()?
        );
        assert!(
            Q8Weight::quantize(&Tensor::zeros((2, 40), candle_core::DType::F32, &dev)?)?.is_none()
        );
        Ok(())
    }
}
