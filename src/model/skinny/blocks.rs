//! GGML block weights (Q8_0: blocks of 32 signed bytes sharing one scale; Q4_0: blocks of
//! 32 four-bit values sharing one scale) as the kernel reads them, in one of two layouts
//! chosen when the weight is quantized:
//!
//! - *rows*: each weight row's values as signed bytes, contiguous, the scales beside them
//!   (Q4_0's values too, one byte each). Each thread turns a few weight rows at a time
//!   back into f32 (a panel that stays in L1) and runs the f32 register tiles over it, so
//!   every input row reuses the panel: the multiply-adds are the f32 kernel's, the weights
//!   cost a quarter of f32's memory and reads.
//! - *interleaved* (CPUs with AVX-512 VNNI): groups of 16 weight rows, and within a group
//!   and a block, 4 consecutive values of each of the 16 rows side by side, so one 64-byte
//!   vector feeds `vpdpbusd` with 4 multiply-adds for each of 16 output columns
//!   (`vnni.rs`). Q8_0 stores a byte per value; Q4_0 packs two vectors' values into the
//!   nibbles of one, so its weights cost half of Q8_0's reads and memory. The input rows
//!   are quantized too (Q8_0, once per pass), so the multiply-adds are int8 and no weight
//!   is turned back into f32.
//!
//! Why the kernel takes them itself: candle's quantized matmul quantizes the activations
//! too and runs one dot product per row and column. At a prefill's ~100 rows Q8_0 reached
//! 16 % of the f32 matmul rate, and a SmolLM2 query took 3.3-3.8 s against 0.76-0.97 s in
//! f32 (docs/PERFORMANCE.md, "Q8_0 through the kernel").
//!
//! The values are candle's own quantization (`QTensor::quantize`), so the rounding is
//! GGML's; only the layout differs.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::{Error, Result};

/// Elements per block (both formats).
pub(crate) const BLOCK: usize = 32;
/// Weight rows per group of the interleaved layout: one 512-bit vector of i32 sums.
pub(crate) const GROUP: usize = 16;
/// Values of one row that sit together in the interleaved layout: one i32 lane of
/// `vpdpbusd`.
const QUAD: usize = 4;

/// The GGML block formats the kernel multiplies by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// 32 signed bytes and an f16 scale per block.
    Q8_0,
    /// 32 values `q - 8` (`q` of 4 bits) and an f16 scale per block.
    Q4_0,
}

impl BlockFormat {
    fn ggml(self) -> GgmlDType {
        match self {
            BlockFormat::Q8_0 => GgmlDType::Q8_0,
            BlockFormat::Q4_0 => GgmlDType::Q4_0,
        }
    }

    /// What the interleaved layout's unsigned value adds to the weight: `w + 128` for
    /// Q8_0's bytes, `q = w + 8` for Q4_0's nibbles.
    pub(crate) fn bias(self) -> i32 {
        match self {
            BlockFormat::Q8_0 => 128,
            BlockFormat::Q4_0 => 8,
        }
    }

    /// Bytes of one group's block in the interleaved layout: 16 rows of 32 values, a byte
    /// or a nibble each.
    pub(crate) fn group_block_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => GROUP * BLOCK,
            BlockFormat::Q4_0 => GROUP * BLOCK / 2,
        }
    }
}

/// How a [`BlockWeight`] lays its values out (the module's documentation says why two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLayout {
    /// `values[r * cols + c]` (the weight, signed), `scales[r * cols / 32 + c / 32]`.
    Rows,
    /// Rows padded to whole groups of [`GROUP`]; `scales` at `(g * blocks + b) * 16 + l`
    /// for group `g`, block `b`, row `l` of the group. Q8_0: byte `e` of quad `q` of the
    /// block at `((g * blocks + b) * 8 + q) * 64 + l * 4 + e`, as `w + 128` (an unsigned
    /// byte, for `vpdpbusd`). Q4_0: GGML's pairing of a block's values `j` and `j + 16`,
    /// by quads: quad `q < 4`'s value `e` as `w + 8` in the low nibble of the byte at
    /// `((g * blocks + b) * 4 + q) * 64 + l * 4 + e`, and quad `q + 4`'s in its high nibble.
    Interleaved,
}

impl BlockLayout {
    /// The layout the kernel reads fastest on this CPU: interleaved where it has AVX-512
    /// VNNI, unless `PATCHREC_Q8=rows` asks for the row layout (to compare the two on one
    /// machine; read once per process).
    pub(crate) fn best() -> Self {
        static BEST: std::sync::OnceLock<BlockLayout> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let rows = std::env::var("PATCHREC_Q8").is_ok_and(|v| v == "rows");
            if super::vnni::runs() && !rows {
                BlockLayout::Interleaved
            } else {
                BlockLayout::Rows
            }
        })
    }
}

/// A `[rows, cols]` weight in a GGML block format, laid out as its [`BlockLayout`] says.
pub struct BlockWeight {
    rows: usize,
    cols: usize,
    format: BlockFormat,
    layout: BlockLayout,
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl BlockWeight {
    /// Quantizes `w` `[rows, cols]` to `format` in this CPU's best layout; `None` when
    /// `cols` is not a multiple of 32.
    pub(crate) fn quantize(w: &Tensor, format: BlockFormat) -> Result<Option<Self>> {
        Self::quantize_as(w, format, BlockLayout::best())
    }

    /// [`BlockWeight::quantize`] in the given layout.
    pub fn quantize_as(
        w: &Tensor,
        format: BlockFormat,
        layout: BlockLayout,
    ) -> Result<Option<Self>> {
        let (rows, cols) = w.dims2()?;
        if cols % BLOCK != 0 {
            return Ok(None);
        }
        let q = QTensor::quantize(w, format.ggml())?;
        let data = q.data()?;
        // GGML's block: the scale as little-endian f16, then the values (Q4_0: 16 bytes,
        // value `j` in the low nibble of byte `j`, value `j + 16` in its high nibble).
        let bytes = 2 + match format {
            BlockFormat::Q8_0 => BLOCK,
            BlockFormat::Q4_0 => BLOCK / 2,
        };
        let blocks = rows * cols / BLOCK;
        if data.len() != blocks * bytes {
            return Err(Error::invalid(format!(
                "{format:?} data of a [{rows}, {cols}] weight has {} bytes, expected {}",
                data.len(),
                blocks * bytes
            )));
        }
        let row_blocks = cols / BLOCK;
        let scale = |r: usize, b: usize| {
            let at = (r * row_blocks + b) * bytes;
            f16::from_le_bytes([data[at], data[at + 1]]).to_f32()
        };
        // Row `r`'s values as signed bytes.
        let decode_row = |r: usize, out: &mut [i8]| {
            let row = &data[r * row_blocks * bytes..][..row_blocks * bytes];
            for (block, out) in row.chunks_exact(bytes).zip(out.chunks_exact_mut(BLOCK)) {
                let qs = &block[2..];
                match format {
                    BlockFormat::Q8_0 => {
                        for (o, &q) in out.iter_mut().zip(qs) {
                            *o = q as i8;
                        }
                    }
                    BlockFormat::Q4_0 => {
                        let (low, high) = out.split_at_mut(BLOCK / 2);
                        for ((l, h), &q) in low.iter_mut().zip(high).zip(qs) {
                            (*l, *h) = ((q & 0xF) as i8 - 8, (q >> 4) as i8 - 8);
                        }
                    }
                }
            }
        };
        let mut weight = BlockWeight {
            rows,
            cols,
            format,
            layout,
            values: Vec::new(),
            scales: Vec::new(),
        };
        match layout {
            BlockLayout::Rows => {
                weight.values = vec![0i8; rows * cols];
                for (r, out) in weight.values.chunks_exact_mut(cols).enumerate() {
                    decode_row(r, out);
                }
                weight.scales = (0..blocks)
                    .map(|i| scale(i / row_blocks, i % row_blocks))
                    .collect();
            }
            // Straight from GGML's blocks, a group of rows at a time: a row-layout copy of
            // the whole weight first would be as large as the result, and the allocator
            // keeps such freed pages.
            BlockLayout::Interleaved => {
                let groups = rows.div_ceil(GROUP);
                weight.values = vec![0i8; groups * format.group_block_bytes() * row_blocks];
                weight.scales = vec![0f32; groups * row_blocks * GROUP];
                let mut group = vec![0i8; GROUP * cols];
                for g in 0..groups {
                    for (l, out) in group.chunks_exact_mut(cols).enumerate() {
                        let r = g * GROUP + l;
                        if r >= rows {
                            // Padding rows: zero weights.
                            out.fill(0);
                            continue;
                        }
                        decode_row(r, out);
                        for b in 0..row_blocks {
                            weight.scales[(g * row_blocks + b) * GROUP + l] = scale(r, b);
                        }
                    }
                    weight.place_group(g, &group);
                }
            }
        }
        Ok(Some(weight))
    }

    /// Where value `c` of row `l` of group `g` lies in the interleaved layout: the byte,
    /// and for Q4_0 whether it is the high nibble.
    fn interleaved_at(&self, g: usize, l: usize, c: usize) -> (usize, bool) {
        let (b, q, e) = (c / BLOCK, c % BLOCK / QUAD, c % QUAD);
        let blocks = self.cols / BLOCK;
        match self.format {
            BlockFormat::Q8_0 => (
                ((g * blocks + b) * (BLOCK / QUAD) + q) * GROUP * QUAD + l * QUAD + e,
                false,
            ),
            BlockFormat::Q4_0 => {
                let (pair, high) = (q % (BLOCK / QUAD / 2), q >= BLOCK / QUAD / 2);
                let at = ((g * blocks + b) * (BLOCK / QUAD / 2) + pair) * GROUP * QUAD;
                (at + l * QUAD + e, high)
            }
        }
    }

    /// Writes group `g`'s 16 rows of signed values (`group[l * cols + c]`) into the
    /// interleaved layout, as unsigned values.
    fn place_group(&mut self, g: usize, group: &[i8]) {
        let bias = self.format.bias();
        for (l, row) in group.chunks_exact(self.cols).enumerate() {
            for (c, &w) in row.iter().enumerate() {
                let (at, high) = self.interleaved_at(g, l, c);
                let u = (i32::from(w) + bias) as u8;
                let byte = &mut self.values[at];
                *byte = if high {
                    (*byte as u8 | u << 4) as i8
                } else {
                    (*byte as u8 | u) as i8
                };
            }
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub(crate) fn format(&self) -> BlockFormat {
        self.format
    }

    /// Bytes of values and scales a product reads (padding rows included).
    pub fn bytes(&self) -> usize {
        self.values.len() + self.scales.len() * std::mem::size_of::<f32>()
    }

    pub(crate) fn layout(&self) -> BlockLayout {
        self.layout
    }

    /// The interleaved layout's values (unsigned, as [`BlockLayout::Interleaved`]
    /// describes them) and scales; `None` in the row layout.
    pub(crate) fn groups(&self) -> Option<(&[u8], &[f32])> {
        (self.layout == BlockLayout::Interleaved).then(|| {
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
            BlockLayout::Rows => {
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
            BlockLayout::Interleaved => {
                let blocks = self.cols / BLOCK;
                let bias = self.format.bias();
                for (i, row) in out.chunks_exact_mut(self.cols).enumerate() {
                    let (g, l) = ((first + i) / GROUP, (first + i) % GROUP);
                    for (c, o) in row.iter_mut().enumerate() {
                        let (at, high) = self.interleaved_at(g, l, c);
                        let u = self.values[at] as u8;
                        let u = match self.format {
                            BlockFormat::Q8_0 => u,
                            BlockFormat::Q4_0 if high => u >> 4,
                            BlockFormat::Q4_0 => u & 0xF,
                        };
                        let w = i32::from(u) - bias;
                        *o = w as f32 * self.scales[(g * blocks + c / BLOCK) * GROUP + l];
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

    /// The values are candle's Q8_0 and Q4_0: dequantizing gives what candle's
    /// dequantization gives, in both layouts (7 rows: a part-filled group), for whole
    /// weights and for a run of rows from the middle.
    #[test]
    fn matches_candles_blocks() -> Result<()> {
        let dev = Device::Cpu;
        let w = (Tensor::randn(0f32, 1.0, (7, 96), &dev)? * 3.0)?;
        let amax = w.abs()?.max_all()?.to_scalar::<f32>()?;
        // The largest rounding error each format allows: a step of the largest block's
        // scale, `amax / 127` for Q8_0 (half a step of rounding, and the f16 scale's own)
        // and `amax / 8` for Q4_0 (whose values `-8..=7` clip the opposite sign's largest
        // by up to a step).
        for (format, bound) in [(BlockFormat::Q8_0, amax / 127.0), (BlockFormat::Q4_0, amax / 8.0)] {
            let theirs = QTensor::quantize(&w, format.ggml())?.dequantize(&dev)?;
            let mut value_bytes = Vec::new();
            for layout in [BlockLayout::Rows, BlockLayout::Interleaved] {
                let ours = BlockWeight::quantize_as(&w, format, layout)?
                    .expect("96 columns are 3 blocks");
                assert_eq!((ours.format(), ours.layout()), (format, layout));
                let diff = (ours.dequantize(&dev)? - &theirs)?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert_eq!(diff, 0.0, "{format:?} {layout:?}");
                // Rows 2..5 alone are those rows of the whole.
                let mut rows = vec![0f32; 3 * 96];
                ours.dequantize_rows(2, &mut rows);
                assert_eq!(
                    rows,
                    theirs.narrow(0, 2, 3)?.flatten_all()?.to_vec1::<f32>()?,
                    "{format:?} {layout:?}"
                );
                value_bytes.push(ours.values.len());
            }
            // Interleaved: a group of 16 rows, a byte (Q8_0) or a nibble (Q4_0) a value.
            let per_value = match format {
                BlockFormat::Q8_0 => 2,
                BlockFormat::Q4_0 => 1,
            };
            assert_eq!(value_bytes, [7 * 96, 16 * 96 * per_value / 2], "{format:?}");
            // Quantization did round, within what the format's bits allow.
            let err = (&theirs - &w)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(err > 0.0 && err <= bound * 1.0001, "{format:?} rounding error {err}");
        }
        let narrow = Tensor::zeros((2, 40), candle_core::DType::F32, &dev)?;
        assert!(BlockWeight::quantize(&narrow, BlockFormat::Q8_0)?.is_none());
        Ok(())
    }
}
