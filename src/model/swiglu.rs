//! The MLP's gate, `silu(gate) * up`, in one pass (and for training one pass back).
//!
//! Why not candle's `silu` then `*`: two passes, a fresh temporary each and a scalar `exp`
//! call per element. In a SmolLM2 query (5 decode passes of ~28 rows, 30 layers) they took
//! ~19 ms, against ~12 ms for the attention products q, k, v of all those layers
//! (docs/PERFORMANCE.md, "Kernels"). Here each element is read once from each input and
//! written once, with the exponential on eight lanes.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::expf::exp_nonpositive;
use super::host::f32_elements;
use crate::error::Result;

/// `silu(gate) * up` elementwise (`silu(g) = g / (1 + e^-g)`), for same-shaped tensors.
/// Contiguous f32 on the CPU takes the fused pass, with a fused backward pass when it
/// is part of training (candle's composed ops write three temporaries forward and more
/// backward); anything else candle's ops.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let fused = super::host::kernels_on(gate.device())
        && gate.dtype() == DType::F32
        && up.dtype() == DType::F32
        && gate.shape() == up.shape()
        && gate.is_contiguous()
        && up.is_contiguous();
    Ok(if !fused {
        (candle_nn::ops::silu(gate)? * up)?
    } else if gate.track_op() || up.track_op() {
        gate.apply_op2(up, SwiGlu)?
    } else {
        gate.apply_op2_no_bwd(up, &SwiGlu)?
    })
}

struct SwiGlu;

/// Elements below which one thread does it all (the hand-off would cost more).
const PER_THREAD: usize = 16_384;

/// Elements per parallel chunk of a pass over `n`: one chunk per thread, at least
/// [`PER_THREAD`].
fn chunk_len(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads().max(1))
        .max(PER_THREAD)
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = f32_elements("swiglu", gs, gl)?;
        let u = f32_elements("swiglu", us, ul)?;
        if g.len() != u.len() {
            candle_core::bail!("swiglu: {} gate elements, {} up", g.len(), u.len());
        }
        let mut out = vec![0f32; g.len()];
        let chunk = chunk_len(g.len());
        out.par_chunks_mut(chunk)
            .zip(g.par_chunks(chunk).zip(u.par_chunks(chunk)))
            .for_each(|(o, (g, u))| gate_rows(g, u, o));
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let both = g.apply_op3_no_bwd(u, &dy.contiguous()?, &SwiGluBwd)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// The gradients of [`SwiGlu`] from `g`, `u` and `dy`, stacked `[2, ..]`: `dg = dy * u *
/// silu'(g)` with `silu'(g) = s + g s (1 - s)`, `s = sigmoid(g)`, then `du = dy * silu(g)`.
struct SwiGluBwd;

impl CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "swiglu-bwd"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = f32_elements(self.name(), gs, gl)?;
        let u = f32_elements(self.name(), us, ul)?;
        let dy = f32_elements(self.name(), ds, dl)?;
        let n = g.len();
        if u.len() != n || dy.len() != n {
            candle_core::bail!(
                "swiglu-bwd: {n} gate elements, {} up, {} grad",
                u.len(),
                dy.len()
            );
        }
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        let chunk = chunk_len(n);
        dg.par_chunks_mut(chunk)
            .zip(du.par_chunks_mut(chunk))
            .zip(
                g.par_chunks(chunk)
                    .zip(u.par_chunks(chunk))
                    .zip(dy.par_chunks(chunk)),
            )
            .for_each(|((dg, du), ((g, u), dy))| gate_grads(g, u, dy, dg, du));
        let mut dims = vec![2];
        dims.extend_from_slice(gl.dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// `o = silu(g) * u` over equal-length slices.
fn gate_rows(g: &[f32], u: &[f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { avx2::gate_rows(g, u, o) };
    }
    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
        *o = silu(g) * u;
    }
}

/// [`SwiGluBwd`]'s gradients over equal-length slices.
fn gate_grads(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { avx2::gate_grads(g, u, dy, dg, du) };
    }
    for i in 0..g.len() {
        let s = sigmoid(g[i]);
        dg[i] = dy[i] * u[i] * (s + g[i] * s * (1.0 - s));
        du[i] = dy[i] * g[i] * s;
    }
}

/// `1 / (1 + e^-g)`, with the exponential of `-|g|` (never overflows): `1 / (1 + e)` for
/// `g >= 0` and `e / (1 + e)` below.
#[inline]
fn sigmoid(g: f32) -> f32 {
    let e = exp_nonpositive(-g.abs());
    let s = 1.0 / (1.0 + e);
    if g >= 0.0 {
        s
    } else {
        e * s
    }
}

/// `g * sigmoid(g)`, with the exponential of `-|g|` (never overflows): sigmoid is
/// `1 / (1 + e)` for `g >= 0` and `e / (1 + e)` below.
#[inline]
fn silu(g: f32) -> f32 {
    g * sigmoid(g)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::model::expf::avx2::exp8;

    /// [`super::gate_rows`] eight lanes at a time, [`super::silu`]'s formula.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gate_rows(g: &[f32], u: &[f32], o: &mut [f32]) {
        let n = g.len().min(u.len()).min(o.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n` elements lie in all three slices.
            unsafe {
                let gv = _mm256_loadu_ps(g.as_ptr().add(i));
                let uv = _mm256_loadu_ps(u.as_ptr().add(i));
                let r = _mm256_mul_ps(_mm256_mul_ps(gv, sigmoid8(gv)), uv);
                _mm256_storeu_ps(o.as_mut_ptr().add(i), r);
            }
            i += 8;
        }
        for j in i..n {
            o[j] = super::silu(g[j]) * u[j];
        }
    }

    /// `sigmoid(g)` on eight lanes, as [`super::sigmoid`] computes it.
    #[target_feature(enable = "avx2,fma")]
    fn sigmoid8(g: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let e = exp8(_mm256_or_ps(g, _mm256_set1_ps(-0.0))); // e^-|g|
        let s = _mm256_div_ps(one, _mm256_add_ps(one, e));
        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(g, _mm256_setzero_ps());
        _mm256_blendv_ps(s, _mm256_mul_ps(e, s), neg)
    }

    /// [`super::gate_grads`] eight lanes at a time.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gate_grads(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
        let n = g.len().min(u.len()).min(dy.len()).min(dg.len()).min(du.len());
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n` elements lie in all five slices.
            unsafe {
                let gv = _mm256_loadu_ps(g.as_ptr().add(i));
                let uv = _mm256_loadu_ps(u.as_ptr().add(i));
                let dyv = _mm256_loadu_ps(dy.as_ptr().add(i));
                let s = sigmoid8(gv);
                // s + g s (1 - s)
                let slope = _mm256_fmadd_ps(_mm256_mul_ps(gv, s), _mm256_sub_ps(one, s), s);
                _mm256_storeu_ps(dg.as_mut_ptr().add(i), _mm256_mul_ps(_mm256_mul_ps(dyv, uv), slope));
                _mm256_storeu_ps(du.as_mut_ptr().add(i), _mm256_mul_ps(dyv, _mm256_mul_ps(gv, s)));
            }
            i += 8;
        }
        for j in i..n {
            let s = super::sigmoid(g[j]);
            dg[j] = dy[j] * u[j] * (s + g[j] * s * (1.0 - s));
            du[j] = dy[j] * g[j] * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against candle's `silu(gate) * up`, over values from -90 to 90 (both exponential
    /// branches, the underflow past -87) and a length with a tail after the 8-lane chunks,
    /// split between threads.
    #[test]
    fn matches_candles_silu_times_up() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let (rows, cols) = (3, 16_389);
        let n = rows * cols;
        let g: Vec<f32> = (0..n)
            .map(|i| -90.0 + 180.0 * i as f32 / n as f32)
            .collect();
        let gate = Tensor::from_vec(g, (rows, cols), &dev)?;
        let up = Tensor::randn(0f32, 2.0, gate.shape(), &dev)?;
        let got = swiglu(&gate, &up)?.flatten_all()?.to_vec1::<f32>()?;
        let want = (candle_nn::ops::silu(&gate)? * &up)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "element {i}: {a} vs {b}"
            );
        }
        // Gradients of both inputs against candle's composed ops.
        let (gv, uv) = (
            candle_core::Var::from_tensor(&gate.narrow(1, 0, 4099)?.contiguous()?)?,
            candle_core::Var::from_tensor(&up.narrow(1, 0, 4099)?.contiguous()?)?,
        );
        let probe = Tensor::randn(0f32, 1.0, gv.shape(), &dev)?;
        let ours = swiglu(gv.as_tensor(), uv.as_tensor())?;
        let theirs = (candle_nn::ops::silu(gv.as_tensor())? * uv.as_tensor())?;
        let g1 = (ours * &probe)?.sum_all()?.backward()?;
        let g2 = (theirs * &probe)?.sum_all()?.backward()?;
        for v in [&gv, &uv] {
            let (a, b) = (
                g1.get(v.as_tensor()).unwrap(),
                g2.get(v.as_tensor()).unwrap(),
            );
            let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                diff <= 1e-5 * scale,
                "gradients differ by {diff} (scale {scale})"
            );
        }
        // A strided view takes candle's path and still agrees.
        let t = gate.t()?;
        let via = swiglu(&t, &up.t()?)?;
        let diff = (via - (candle_nn::ops::silu(&t)? * up.t()?)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }
}
