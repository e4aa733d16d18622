//! A linear projection without bias, held dense (f32, trainable, savable) or quantized
//! (GGML block formats through candle's quantized matmul, for serving only).
//!
//! Quantized serving trades a small change in scores for less memory and, where the
//! matmuls are bound by reading weights (batch-1 and beam decoding), speed.

use std::str::FromStr;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Tensor};
use candle_nn::Linear;

use crate::error::{Error, Result};

/// Weight formats a model can be served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// 8-bit blocks of 32 with an f16 scale (GGML Q8_0).
    Q8_0,
    /// 4-bit blocks of 32 with an f16 scale (GGML Q4_0).
    Q4_0,
}

impl Quantization {
    fn ggml(self) -> GgmlDType {
        match self {
            Quantization::Q8_0 => GgmlDType::Q8_0,
            Quantization::Q4_0 => GgmlDType::Q4_0,
        }
    }

    /// Elements per block: a weight quantizes only when its input width is a multiple.
    pub fn block_size(self) -> usize {
        self.ggml().block_size()
    }
}

impl FromStr for Quantization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Quantization::Q8_0),
            "q4_0" => Ok(Quantization::Q4_0),
            _ => Err(Error::invalid(format!(
                "quantization {s:?}: expected q8_0 or q4_0"
            ))),
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quantization::Q8_0 => "q8_0",
            Quantization::Q4_0 => "q4_0",
        })
    }
}

pub(crate) enum Proj {
    Dense(Linear),
    Quantized(QMatMul),
}

impl Proj {
    pub(crate) fn dense(w: Tensor) -> Self {
        Proj::Dense(Linear::new(w, None))
    }

    /// The dense weight `[out, in]`; `None` once quantized.
    pub(crate) fn weight(&self) -> Option<&Tensor> {
        match self {
            Proj::Dense(l) => Some(l.weight()),
            Proj::Quantized(_) => None,
        }
    }

    /// Quantizes a dense weight in place; a weight whose input width is not a multiple
    /// of the block size stays dense (returns false).
    pub(crate) fn quantize(&mut self, q: Quantization) -> Result<bool> {
        let Proj::Dense(l) = self else {
            return Ok(true);
        };
        match quantized(l.weight(), q)? {
            Some(m) => {
                *self = Proj::Quantized(m);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Proj::Dense(l) => match super::skinny::matmul_t(x, l.weight())? {
                Some(y) => y,
                None => l.forward(x)?,
            },
            Proj::Quantized(m) => m.forward(x)?,
        })
    }

    /// Each of `projs` applied to the same `x`: in one pass of the kernel when all are
    /// dense and it applies (`skinny::matmul_t_each`), else one by one.
    pub(crate) fn forward_each<const N: usize>(
        projs: [&Proj; N],
        x: &Tensor,
    ) -> Result<[Tensor; N]> {
        let dense: Option<Vec<&Tensor>> = projs.iter().map(|p| p.weight()).collect();
        if let Some(ws) = dense {
            if let Some(ys) = super::skinny::matmul_t_each(x, &ws)? {
                if let Ok(ys) = <[Tensor; N]>::try_from(ys) {
                    return Ok(ys);
                }
            }
        }
        let ys: Vec<Tensor> = projs.iter().map(|p| p.forward(x)).collect::<Result<_>>()?;
        Ok(<[Tensor; N]>::try_from(ys).unwrap_or_else(|_| unreachable!("N products")))
    }
}

/// `w` `[out, in]` as a quantized matmul, or `None` when `in` does not split into blocks.
pub(crate) fn quantized(w: &Tensor, q: Quantization) -> Result<Option<QMatMul>> {
    let (_, input) = w.dims2()?;
    if input % q.block_size() != 0 {
        return Ok(None);
    }
    let t = QTensor::quantize(w, q.ggml())?;
    Ok(Some(QMatMul::from_qtensor(t)?))
}
