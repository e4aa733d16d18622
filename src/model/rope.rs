//! Rotary position embedding tables, with Llama-3's frequency scaling.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::config::LlamaConfig;
use crate::error::Result;

pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

/// Tables beyond this many positions are not precomputed (Llama-3.2 declares 131,072).
const MAX_TABLE: usize = 131_072;

impl Rope {
    pub fn new(cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim();
        let mut inv_freq: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / cfg.rope_theta.powf(i as f32 / dim as f32))
            .collect();
        if let Some(s) = cfg
            .rope_scaling
            .as_ref()
            .filter(|s| s.rope_type == "llama3")
        {
            // Llama-3.1 scaling: long wavelengths are divided by `factor`, short ones kept,
            // and the band in between interpolated smoothly.
            let orig = s.original_max_position_embeddings as f32;
            let low_wavelen = orig / s.low_freq_factor;
            let high_wavelen = orig / s.high_freq_factor;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f32::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (orig / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        let n = cfg.max_position_embeddings.clamp(1, MAX_TABLE);
        let inv = Tensor::from_vec(inv_freq, (1, dim / 2), device)?;
        let pos = Tensor::arange(0u32, n as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((n, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Rope {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Tables for rows at arbitrary `positions`, `[rows, 1, head_dim / 2]` each, for the fused
    /// RoPE on `[rows, heads, 1, head_dim]` (one position per row: decoding a token tree).
    pub fn rows(&self, positions: &[usize]) -> Result<(Tensor, Tensor)> {
        let ids: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let ids = Tensor::new(ids.as_slice(), self.cos.device())?;
        let pick = |t: &Tensor| -> Result<Tensor> {
            let half = t.dims()[1];
            Ok(t.index_select(&ids, 0)?
                .reshape((positions.len(), 1, half))?)
        };
        Ok((pick(&self.cos)?, pick(&self.sin)?))
    }

    /// Rotates `x` `[batch, len, heads, head_dim]` (the projections' own layout, so no
    /// transpose is needed) whose first position sits at `pos`. Inference only.
    pub fn apply_thd(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let (cos, sin) = self.span(pos, x.dims()[1])?;
        Ok(candle_nn::rotary_emb::rope_thd(
            &x.contiguous()?,
            &cos,
            &sin,
        )?)
    }

    /// Rotates `x` `[batch, heads, len, head_dim]` whose first row sits at `pos`.
    /// `differentiable` picks candle's op with a backward pass (training) over the fused one.
    pub fn apply(&self, x: &Tensor, pos: usize, differentiable: bool) -> Result<Tensor> {
        let (cos, sin) = self.span(pos, x.dims()[2])?;
        self.rotate(x, &cos, &sin, differentiable)
    }

    /// Rotates `x` `[batch, heads, len, head_dim]` by the tables of its rows' positions,
    /// `[len, head_dim / 2]` each ([`Rope::tables`] or a span).
    pub fn rotate(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        differentiable: bool,
    ) -> Result<Tensor> {
        Ok(if differentiable {
            rotate_trainable(x, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?
        })
    }

    /// The tables of rows at arbitrary `positions`, `[rows, head_dim / 2]` each.
    pub fn tables(&self, positions: &[usize]) -> Result<(Tensor, Tensor)> {
        let ids: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let ids = Tensor::new(ids.as_slice(), self.cos.device())?;
        Ok((
            self.cos.index_select(&ids, 0)?,
            self.sin.index_select(&ids, 0)?,
        ))
    }

    /// The tables of positions `pos..pos + len`, `[len, head_dim / 2]` each.
    fn span(&self, pos: usize, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.cos.narrow(0, pos, len)?, self.sin.narrow(0, pos, len)?))
    }
}

/// RoPE on `x` `[b, heads, t, d]` by tables `[t, d / 2]`, differentiable: one pass forward,
/// and backward the same rotation by the opposite angle (the rotation is orthogonal). On
/// other devices or dtypes, candle's composed `rope_slow`.
///
/// Why not `rope_slow`: it builds doubled tables, a rotated copy of `x` and two products
/// per call, and backward as many again, for each of q and k in every layer.
fn rotate_trainable(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if !(super::host::kernels_on(x.device()) && x.dtype() == DType::F32) {
        return Ok(candle_nn::rotary_emb::rope_slow(x, cos, sin)?);
    }
    let (_, _, t, d) = x.dims4()?;
    if cos.dims2()? != (t, d / 2) || sin.dims2()? != (t, d / 2) || d % 2 != 0 {
        return Err(crate::error::Error::invalid(format!(
            "rope: tables {:?} for rows of {d} at {t} positions",
            cos.dims()
        )));
    }
    let op = Rotate {
        cos: cos.flatten_all()?.to_vec1()?,
        sin: sin.flatten_all()?.to_vec1()?,
        t,
        half: d / 2,
    };
    Ok(x.contiguous()?.apply_op1(op)?)
}

/// The rotation of [`rotate_trainable`], its tables copied out of their tensors.
struct Rotate {
    cos: Vec<f32>,
    sin: Vec<f32>,
    t: usize,
    half: usize,
}

impl CustomOp1 for Rotate {
    fn name(&self) -> &'static str {
        "patchrec-rope"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = super::host::f32_elements(self.name(), storage, layout)?;
        let (h, d) = (self.half, 2 * self.half);
        let mut out = vec![0f32; x.len()];
        // One chunk per (batch, head): t rows of d.
        out.par_chunks_mut(self.t * d)
            .zip(x.par_chunks(self.t * d))
            .for_each(|(y, x)| {
                for p in 0..self.t {
                    let (c, s) = (&self.cos[p * h..(p + 1) * h], &self.sin[p * h..(p + 1) * h]);
                    let (x, y) = (&x[p * d..(p + 1) * d], &mut y[p * d..(p + 1) * d]);
                    for i in 0..h {
                        y[i] = x[i] * c[i] - x[i + h] * s[i];
                        y[i + h] = x[i + h] * c[i] + x[i] * s[i];
                    }
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let back = Rotate {
            cos: self.cos.clone(),
            sin: self.sin.iter().map(|s| -s).collect(),
            t: self.t,
            half: self.half,
        };
        Ok(Some(dy.contiguous()?.apply_op1(back)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{max_diff, probe_backward};
    use candle_core::Var;

    /// Values and the input's gradient against candle's composed `rope_slow`.
    #[test]
    fn the_fused_rotation_matches_rope_slow_and_its_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 7, 8), &dev).unwrap()).unwrap();
        let angles = Tensor::randn(0f32, 2.0, (7, 4), &dev).unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let probe = Tensor::randn(0f32, 1.0, (2, 3, 7, 8), &dev).unwrap();
        let ours = rotate_trainable(x.as_tensor(), &cos, &sin).unwrap();
        let theirs = candle_nn::rotary_emb::rope_slow(x.as_tensor(), &cos, &sin).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-6);
        let g1 = probe_backward(&ours, &probe);
        let g2 = probe_backward(&theirs, &probe);
        let (a, b) = (
            g1.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
        );
        assert!(
            max_diff(a, b) < 1e-5,
            "gradients differ by {}",
            max_diff(a, b)
        );
    }
}
