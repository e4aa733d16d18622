//! A linear projection without bias, held dense (f32, trainable, savable) or quantized
//! (for serving only): Q8_0 and Q4_0 through our CPU kernel where it runs
//! (`skinny::BlockWeight`), bf16 in panels through the kernel (`skinny::Panels`) on CPUs
//! with AVX2 or AVX-512, other devices through candle's quantized matmul.
//!
//! Quantized serving trades a small change in scores for less memory and, where the
//! matmuls are bound by reading weights (batch-1 and beam decoding), speed.

use std::str::FromStr;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Tensor};
use candle_nn::Linear;

use super::lora::Adapter;
use super::skinny::{self, BlockFormat, BlockWeight, PanelFormat, Panels, Weight};
use crate::error::{Error, Result};

/// Weight formats a model can be served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// 8-bit blocks of 32 with an f16 scale (GGML Q8_0).
    Q8_0,
    /// 4-bit blocks of 32 with an f16 scale (GGML Q4_0).
    Q4_0,
    /// bfloat16 (f32's exponent, 8 significant bits), multiplied with the input rounded
    /// to bf16 and the sums in f32; in bf16 instructions where the CPU has AVX512_BF16.
    Bf16,
}

impl Quantization {
    /// candle's block format; `None` for bf16, which our kernel holds itself.
    fn ggml(self) -> Option<GgmlDType> {
        match self {
            Quantization::Q8_0 => Some(GgmlDType::Q8_0),
            Quantization::Q4_0 => Some(GgmlDType::Q4_0),
            Quantization::Bf16 => None,
        }
    }

    /// The block format our kernel holds this in; `None` for bf16 (panels).
    fn block_format(self) -> Option<BlockFormat> {
        match self {
            Quantization::Q8_0 => Some(BlockFormat::Q8_0),
            Quantization::Q4_0 => Some(BlockFormat::Q4_0),
            Quantization::Bf16 => None,
        }
    }

    /// Elements per block: a weight quantizes only when its input width is a multiple.
    pub fn block_size(self) -> usize {
        self.ggml().map_or(1, |g| g.block_size())
    }
}

impl FromStr for Quantization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Quantization::Q8_0),
            "q4_0" => Ok(Quantization::Q4_0),
            "bf16" => Ok(Quantization::Bf16),
            _ => Err(Error::invalid(format!(
                "quantization {s:?}: expected q8_0, q4_0 or bf16"
            ))),
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quantization::Q8_0 => "q8_0",
            Quantization::Q4_0 => "q4_0",
            Quantization::Bf16 => "bf16",
        })
    }
}

pub(crate) enum Proj {
    Dense(Linear),
    /// A frozen dense weight with a LoRA adapter beside it (`lora.rs`).
    Adapted(Linear, Adapter),
    /// Q8_0 or Q4_0 as the CPU kernel reads it.
    Blocks(BlockWeight),
    /// bf16 panels as the CPU kernel reads them.
    Panels(Panels),
    /// candle's quantized matmul, and the format it holds.
    Quantized(QMatMul, Quantization),
}

impl Proj {
    pub(crate) fn dense(w: Tensor) -> Self {
        Proj::Dense(Linear::new(w, None))
    }

    /// `w` `[out, in]` quantized to `q`, or `None` when `in` does not split into blocks.
    pub(crate) fn quantized(w: &Tensor, q: Quantization) -> Result<Option<Self>> {
        let (_, input) = w.dims2()?;
        if input % q.block_size() != 0 {
            return Ok(None);
        }
        if super::host::kernels_on(w.device()) && skinny::isa().is_some() {
            return Ok(match q.block_format() {
                Some(format) => BlockWeight::quantize(w, format)?.map(Proj::Blocks),
                None => Some(Proj::Panels(Panels::pack(w, PanelFormat::Bf16)?)),
            });
        }
        let Some(ggml) = q.ggml() else {
            return Err(Error::invalid(format!(
                "{q} weights are multiplied by the CPU kernel, which needs an x86-64 CPU \
                 with AVX2 or AVX-512 (the model is on {:?})",
                w.device()
            )));
        };
        let t = QTensor::quantize(w, ggml)?;
        Ok(Some(Proj::Quantized(QMatMul::from_qtensor(t)?, q)))
    }

    /// The dense weight `[out, in]` (an adapted projection's frozen base); `None` once
    /// quantized.
    pub(crate) fn weight(&self) -> Option<&Tensor> {
        match self {
            Proj::Dense(l) | Proj::Adapted(l, _) => Some(l.weight()),
            Proj::Blocks(_) | Proj::Panels(_) | Proj::Quantized(..) => None,
        }
    }

    /// The weight as it acts: the dense weight, with an adapter merged into it; `None`
    /// once quantized.
    pub(crate) fn merged_weight(&self) -> Result<Option<Tensor>> {
        Ok(match self {
            Proj::Dense(l) => Some(l.weight().clone()),
            Proj::Adapted(l, adapter) => Some(adapter.merge(l.weight())?),
            // f32 panels hold the weight exactly.
            Proj::Panels(p) if p.format() == PanelFormat::F32 => {
                Some(p.dequantize(&candle_core::Device::Cpu)?)
            }
            Proj::Blocks(_) | Proj::Panels(_) | Proj::Quantized(..) => None,
        })
    }

    /// A dense, unadapted f32 weight moves into f32 panels where the CPU runs their
    /// kernel; returns whether it moved.
    pub(crate) fn pack_panels(&mut self) -> Result<bool> {
        let Proj::Dense(l) = self else {
            return Ok(false);
        };
        let w = l.weight();
        if l.bias().is_some()
            || w.track_op()
            || !super::host::kernels_on(w.device())
            || !skinny::panel_kernel(PanelFormat::F32)
        {
            return Ok(false);
        }
        *self = Proj::Panels(Panels::pack(w, PanelFormat::F32)?);
        Ok(true)
    }

    /// f32 panels back to the dense weight they hold (exactly); anything else is left.
    pub(crate) fn unpack_panels(&mut self) -> Result<()> {
        if let Proj::Panels(p) = self {
            if p.format() == PanelFormat::F32 {
                *self = Proj::dense(p.dequantize(&candle_core::Device::Cpu)?);
            }
        }
        Ok(())
    }

    /// Attaches `adapter` beside a dense weight (whose shape it must fit).
    pub(crate) fn adapt(&mut self, adapter: Adapter) -> Result<()> {
        let Proj::Dense(l) = self else {
            return Err(Error::invalid(
                "only a dense, unadapted projection takes a LoRA adapter",
            ));
        };
        let (out, input) = l.weight().dims2()?;
        if adapter.a.dim(1)? != input || adapter.b.dim(0)? != out {
            return Err(Error::invalid(format!(
                "a LoRA adapter of A {:?}, B {:?} does not fit a weight [{out}, {input}]",
                adapter.a.dims(),
                adapter.b.dims()
            )));
        }
        *self = Proj::Adapted(l.clone(), adapter);
        Ok(())
    }

    /// The adapter, if one is attached.
    pub(crate) fn adapter(&self) -> Option<&Adapter> {
        match self {
            Proj::Adapted(_, a) => Some(a),
            _ => None,
        }
    }

    /// The format of a quantized projection; `None` while dense.
    pub(crate) fn quantization(&self) -> Option<Quantization> {
        match self {
            Proj::Dense(_) | Proj::Adapted(..) => None,
            Proj::Blocks(w) => Some(match w.format() {
                BlockFormat::Q8_0 => Quantization::Q8_0,
                BlockFormat::Q4_0 => Quantization::Q4_0,
            }),
            Proj::Panels(p) => match p.format() {
                PanelFormat::F32 => None,
                PanelFormat::Bf16 => Some(Quantization::Bf16),
            },
            Proj::Quantized(_, q) => Some(*q),
        }
    }

    /// The weight as the kernel takes it, if it can (an adapted projection's base: its
    /// adapter's term is added after).
    fn kernel_weight(&self) -> Option<Weight<'_>> {
        match self {
            Proj::Dense(l) | Proj::Adapted(l, _) => Some(Weight::F32(l.weight())),
            Proj::Blocks(w) => Some(Weight::Blocks(w)),
            Proj::Panels(w) => Some(Weight::Panels(w)),
            Proj::Quantized(..) => None,
        }
    }

    /// Quantizes a dense weight in place; a weight whose input width is not a multiple
    /// of the block size stays dense (returns false). One already in `q` is left as it is
    /// (`Llama::load` quantizes projections as it reads them); one in another format is
    /// an error, as re-quantizing would compound both formats' rounding.
    pub(crate) fn quantize(&mut self, q: Quantization) -> Result<bool> {
        if let Proj::Adapted(..) = self {
            return Err(Error::invalid(
                "a projection with a LoRA adapter cannot be quantized: save the model (which merges the adapter) and load it quantized",
            ));
        }
        if let Some(have) = self.quantization() {
            return if have == q {
                Ok(true)
            } else {
                Err(Error::invalid(format!(
                    "a projection is already quantized as {have}, not {q}"
                )))
            };
        }
        let Some(w) = self.weight() else {
            unreachable!("a projection without a format is dense")
        };
        match Proj::quantized(w, q)? {
            Some(p) => {
                *self = p;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dense = |l: &Linear| -> Result<Tensor> {
            Ok(match skinny::matmul_t(x, l.weight())? {
                Some(y) => y,
                None => l.forward(x)?,
            })
        };
        Ok(match self {
            // A projection LoRA does not adapt, during LoRA training: frozen, so its
            // product skips the weight's gradient.
            Proj::Dense(l) if x.track_op() && !l.weight().track_op() => {
                super::frozen::frozen_product(x, l.weight())?
            }
            // Full fine-tuning: the weight trains, one node for the product and both
            // gradients.
            Proj::Dense(l) if l.weight().track_op() && l.bias().is_none() => {
                super::trained_product::trained_product(x, l.weight())?
            }
            Proj::Dense(l) => dense(l)?,
            // Training: the frozen base and the adapter in one node whose backward pass
            // skips the weight's gradient.
            Proj::Adapted(l, adapter) if adapter.is_tracked() => {
                super::frozen::lora_product(x, l.weight(), &adapter.a, &adapter.b, adapter.scale)?
            }
            Proj::Adapted(l, adapter) => (dense(l)? + adapter.delta(x)?)?,
            Proj::Blocks(_) | Proj::Panels(_) => {
                let x = x.contiguous()?;
                let w = self.kernel_weight().expect("the kernel reads blocks and panels");
                match skinny::matmul_t_each(&x, &[w])? {
                    Some(mut ys) => ys.pop().expect("one product"),
                    // Not f32, or gradients wanted: the dequantized weight, through candle.
                    None => {
                        let dense = w.dense(x.device())?.to_dtype(x.dtype())?;
                        x.broadcast_matmul(&dense.t()?)?
                    }
                }
            }
            Proj::Quantized(m, _) => m.forward(x)?,
        })
    }

    /// Each of `projs` applied to the same `x`: in one pass of the kernel when it takes
    /// all of them (`skinny::matmul_t_each`), else one by one.
    pub(crate) fn forward_each<const N: usize>(
        projs: [&Proj; N],
        x: &Tensor,
    ) -> Result<[Tensor; N]> {
        let kernel: Option<Vec<Weight>> = projs.iter().map(|p| p.kernel_weight()).collect();
        if let Some(ws) = kernel {
            if let Some(ys) = skinny::matmul_t_each(x, &ws)? {
                if let Ok(mut ys) = <[Tensor; N]>::try_from(ys) {
                    for (y, p) in ys.iter_mut().zip(projs) {
                        if let Some(adapter) = p.adapter() {
                            *y = (&*y + adapter.delta(x)?)?;
                        }
                    }
                    return Ok(ys);
                }
            }
        }
        let ys: Vec<Tensor> = projs.iter().map(|p| p.forward(x)).collect::<Result<_>>()?;
        Ok(<[Tensor; N]>::try_from(ys).unwrap_or_else(|_| unreachable!("N products")))
    }
}
