//! Weights laid out so that a vector's lanes are output columns ("panels"), in f32 or in
//! bf16, as `broadcast.rs` multiplies them.
//!
//! Why a second f32 layout: the row layout (`[out, in]`, as candle stores a weight) makes
//! every output a dot product along `in`, so a register tile keeps one accumulator per
//! (input row, weight row) pair and ends in a horizontal reduction, and its input rows
//! must be repacked per call. In a panel, 16 weight rows sit side by side for each input
//! column: one load gives 16 output columns' weights for that column, an input value is
//! broadcast against it, and each accumulator holds 16 finished outputs (the layout
//! GEMM kernels pack their right-hand side into, here made once when the weight is
//! loaded instead of on every call).
//!
//! bf16 (CPUs with AVX512_BF16): the same panels with two consecutive input columns of
//! each weight row in one 32-bit lane, as `vdpbf16ps` reads them: half the bytes of f32
//! and two multiply-adds per lane and instruction. Values are rounded to the nearest
//! bf16, ties to even (`half::bf16::from_f32`).

use candle_core::{DType, Device, Tensor};
use half::bf16;

use crate::error::Result;

/// Weight rows per panel: one 512-bit vector of f32 outputs.
pub(crate) const GROUP: usize = 16;

/// The element type of a [`Panels`] weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelFormat {
    /// f32, exactly the weight's values.
    F32,
    /// bf16 pairs, the weight rounded to bf16.
    Bf16,
}

/// A `[rows, cols]` weight in panels: rows padded to whole groups of [`GROUP`] (with
/// zeros). f32: group `g`, column `p`, row `l` of the group at `(g * cols + p) * 16 + l`.
/// bf16: columns padded to an even count `cols2`; group `g`, column pair `q`, row `l`,
/// element `e` of the pair at `((g * cols2 / 2 + q) * 16 + l) * 2 + e`.
pub struct Panels {
    rows: usize,
    cols: usize,
    values: Values,
}

enum Values {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

impl Panels {
    /// `w` `[rows, cols]` (f32) in panels of `format`.
    pub fn pack(w: &Tensor, format: PanelFormat) -> Result<Self> {
        let w = w.to_dtype(DType::F32)?.contiguous()?;
        if w.device().is_cpu() {
            // Read in place: a copy per weight while loading left the heap fragmented
            // (the model's resident memory stayed near f32's).
            return Ok(super::super::host::with_elements("panels", &w, |dense| {
                Ok(Self::from_rows(dense, w.dims2()?, format))
            })?);
        }
        let dense = w.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self::from_rows(&dense, w.dims2()?, format))
    }

    /// The panels of the row-major weight `dense` `[rows, cols]`.
    fn from_rows(dense: &[f32], (rows, cols): (usize, usize), format: PanelFormat) -> Self {
        let groups = rows.div_ceil(GROUP);
        let values = match format {
            PanelFormat::F32 => {
                let mut v = vec![0f32; groups * GROUP * cols];
                for (r, row) in dense.chunks_exact(cols.max(1)).enumerate().take(rows) {
                    let (g, l) = (r / GROUP, r % GROUP);
                    for (p, &x) in row.iter().enumerate() {
                        v[(g * cols + p) * GROUP + l] = x;
                    }
                }
                Values::F32(v)
            }
            PanelFormat::Bf16 => {
                let pairs = cols.div_ceil(2);
                let mut v = vec![0u16; groups * GROUP * pairs * 2];
                for (r, row) in dense.chunks_exact(cols.max(1)).enumerate().take(rows) {
                    let (g, l) = (r / GROUP, r % GROUP);
                    for (p, &x) in row.iter().enumerate() {
                        v[((g * pairs + p / 2) * GROUP + l) * 2 + p % 2] =
                            bf16::from_f32(x).to_bits();
                    }
                }
                Values::Bf16(v)
            }
        };
        Panels { rows, cols, values }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> PanelFormat {
        match self.values {
            Values::F32(_) => PanelFormat::F32,
            Values::Bf16(_) => PanelFormat::Bf16,
        }
    }

    /// Bytes a product reads (padding included).
    pub fn bytes(&self) -> usize {
        match &self.values {
            Values::F32(v) => v.len() * 4,
            Values::Bf16(v) => v.len() * 2,
        }
    }

    /// The f32 panels; `None` in bf16.
    pub(crate) fn f32_values(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            Values::Bf16(_) => None,
        }
    }

    /// The bf16 panels as their bits; `None` in f32.
    pub(crate) fn bf16_values(&self) -> Option<&[u16]> {
        match &self.values {
            Values::Bf16(v) => Some(v),
            Values::F32(_) => None,
        }
    }

    /// Rows `first..first + out.len() / cols` as f32 into `out`, row-major (the fallback
    /// where the kernel does not run, and the tests' reference). A plain loop: only
    /// those read the panels this way.
    pub(crate) fn dequantize_rows(&self, first: usize, out: &mut [f32]) {
        let cols = self.cols.max(1);
        let pairs = self.cols.div_ceil(2);
        for (i, row) in out.chunks_exact_mut(cols).enumerate() {
            let (g, l) = ((first + i) / GROUP, (first + i) % GROUP);
            for (p, o) in row.iter_mut().enumerate() {
                *o = match &self.values {
                    Values::F32(v) => v[(g * self.cols + p) * GROUP + l],
                    Values::Bf16(v) => {
                        bf16::from_bits(v[((g * pairs + p / 2) * GROUP + l) * 2 + p % 2]).to_f32()
                    }
                };
            }
        }
    }

    /// The whole weight as an f32 tensor `[rows, cols]`.
    pub(crate) fn dequantize(&self, device: &Device) -> Result<Tensor> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.dequantize_rows(0, &mut out);
        Ok(Tensor::from_vec(out, (self.rows, self.cols), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 panels give the weight back exactly; bf16 ones give it rounded to bf16, within
    /// half a bf16 step, with a part-filled group (21 rows) and an odd width (a padded
    /// pair); a run of rows from the middle is those rows of the whole.
    #[test]
    fn panels_give_the_weight_back() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (21, 37), &dev)?;
        let dense = w.flatten_all()?.to_vec1::<f32>()?;
        for format in [PanelFormat::F32, PanelFormat::Bf16] {
            let p = Panels::pack(&w, format)?;
            assert_eq!((p.rows(), p.cols(), p.format()), (21, 37, format));
            let back = p.dequantize(&dev)?.flatten_all()?.to_vec1::<f32>()?;
            for (b, d) in back.iter().zip(&dense) {
                match format {
                    PanelFormat::F32 => assert_eq!(b, d),
                    // bf16 keeps 8 significant bits: within 2^-8 relative.
                    PanelFormat::Bf16 => {
                        assert!((b - d).abs() <= d.abs() / 256.0, "{b} vs {d}");
                        assert_eq!(*b, bf16::from_f32(*d).to_f32());
                    }
                }
            }
            let mut rows = vec![0f32; 3 * 37];
            p.dequantize_rows(15, &mut rows);
            assert_eq!(rows, back[15 * 37..18 * 37]);
        }
        let bytes = |f| Panels::pack(&w, f).map(|p| p.bytes());
        assert_eq!(bytes(PanelFormat::F32)?, 32 * 37 * 4);
        assert_eq!(bytes(PanelFormat::Bf16)?, 32 * 38 * 2);
        Ok(())
    }
}
