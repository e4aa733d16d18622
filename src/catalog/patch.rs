//! Item and session patches (paper §3.2): an item patch is the mean of the input
//! embeddings of its title's tokens; a session patch is the mean of its item patches.

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::model::Llama;

/// Item patches for many titles at once: `[titles.len(), hidden]`.
///
/// One gather of every title token and one pass over the rows, instead of a pair of
/// tensor ops per title: registering a 10k-item catalogue stays a single batched step.
pub fn item_patches(llama: &Llama, titles: &[&[u32]]) -> Result<Tensor> {
    let d = llama.hidden_size();
    let all: Vec<u32> = titles.iter().flat_map(|t| t.iter().copied()).collect();
    if titles.is_empty() {
        return Ok(Tensor::zeros(
            (0, d),
            candle_core::DType::F32,
            llama.device(),
        )?);
    }
    let rows = llama.embed_ids(&all)?; // [sum of lengths, d]
    let lens: Vec<usize> = titles.iter().map(|t| t.len()).collect();
    segment_means(&rows, &lens)
}

/// The mean of each run of `lens[i]` consecutive rows of `rows` `[Σ lens, hidden]`:
/// `[lens.len(), hidden]`, differentiable in `rows`.
///
/// Why one op: a mean per run through `narrow` gives each run a backward pass that writes
/// a zero tensor of all the rows' size, so training on `n` titles wrote `n` times their
/// rows; here the backward pass spreads each mean's gradient over its own run once.
pub(crate) fn segment_means(rows: &Tensor, lens: &[usize]) -> Result<Tensor> {
    let (total, _) = rows.dims2()?;
    if lens.iter().sum::<usize>() != total || lens.contains(&0) {
        return Err(crate::error::Error::invalid(format!(
            "segment means: runs of {lens:?} rows over {total} rows (each run needs a row)"
        )));
    }
    if !crate::model::host::kernels_on(rows.device()) || rows.dtype() != candle_core::DType::F32 {
        let mut out = Vec::with_capacity(lens.len());
        let mut at = 0;
        for &n in lens {
            out.push(rows.narrow(0, at, n)?.mean_keepdim(0)?);
            at += n;
        }
        return Ok(Tensor::cat(&out, 0)?);
    }
    Ok(rows.contiguous()?.apply_op1(SegmentMeans {
        lens: lens.to_vec(),
    })?)
}

struct SegmentMeans {
    lens: Vec<usize>,
}

impl SegmentMeans {
    const NAME: &'static str = "segment-means";

    /// Each run's first row.
    fn starts(&self) -> Vec<usize> {
        self.lens
            .iter()
            .scan(0, |at, &n| {
                let start = *at;
                *at += n;
                Some(start)
            })
            .collect()
    }
}

impl candle_core::CustomOp1 for SegmentMeans {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let (_, d) = layout.shape().dims2()?;
        let rows = crate::model::host::f32_elements(Self::NAME, storage, layout)?;
        let starts = self.starts();
        let mut out = vec![0f32; self.lens.len() * d];
        out.par_chunks_mut(d)
            .zip(starts.par_iter().zip(self.lens.par_iter()))
            .for_each(|(mean, (&start, &n))| {
                for row in rows[start * d..(start + n) * d].chunks_exact(d) {
                    mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
                }
                let inv = 1.0 / n as f32;
                mean.iter_mut().for_each(|m| *m *= inv);
            });
        Ok((
            candle_core::CpuStorage::F32(out),
            candle_core::Shape::from((self.lens.len(), d)),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        use rayon::prelude::*;
        let (total, d) = arg.dims2()?;
        let grad = grad.contiguous()?;
        let g = grad.flatten_all()?.to_vec1::<f32>()?;
        let mut dx = vec![0f32; total * d];
        // Run i's rows each get g_i / n_i.
        let mut runs: Vec<&mut [f32]> = Vec::with_capacity(self.lens.len());
        let mut rest = dx.as_mut_slice();
        for &n in &self.lens {
            let (run, tail) = rest.split_at_mut(n * d);
            runs.push(run);
            rest = tail;
        }
        runs.into_par_iter()
            .zip(g.par_chunks(d).zip(self.lens.par_iter()))
            .for_each(|(run, (gi, &n))| {
                let inv = 1.0 / n as f32;
                for row in run.chunks_exact_mut(d) {
                    row.iter_mut().zip(gi).for_each(|(r, g)| *r = g * inv);
                }
            });
        Ok(Some(Tensor::from_vec(dx, (total, d), arg.device())?))
    }
}

/// The session patch of the given item patch rows `[n, hidden]` -> `[1, hidden]`.
pub fn session_patch(item_patches: &Tensor) -> Result<Tensor> {
    Ok(item_patches.mean_keepdim(D::Minus2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::max_diff;
    use candle_core::{Device, Var};

    /// Means and the rows' gradient against `narrow` + `mean` per run.
    #[test]
    fn segment_means_match_the_composed_means_and_their_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let lens = [3usize, 1, 5, 2];
        let rows = Var::from_tensor(&Tensor::randn(0f32, 1.0, (11, 6), &dev)?)?;
        let ours = segment_means(rows.as_tensor(), &lens)?;
        let mut parts = Vec::new();
        let mut at = 0;
        for &n in &lens {
            parts.push(rows.as_tensor().narrow(0, at, n)?.mean_keepdim(0)?);
            at += n;
        }
        let theirs = Tensor::cat(&parts, 0)?;
        assert_eq!(ours.dims(), &[4, 6]);
        assert!(max_diff(&ours, &theirs) < 1e-6);
        let probe = Tensor::randn(0f32, 1.0, (4, 6), &dev)?;
        let g1 = (&ours * &probe)?.sum_all()?.backward()?;
        let g2 = (&theirs * &probe)?.sum_all()?.backward()?;
        let (a, b) = (g1.get(rows.as_tensor()).unwrap(), g2.get(rows.as_tensor()).unwrap());
        assert!(max_diff(a, b) < 1e-6, "gradients differ by {}", max_diff(a, b));
        Ok(())
    }

    /// Runs that do not cover the rows, or an empty run, are an error.
    #[test]
    fn runs_must_cover_the_rows() -> Result<()> {
        let rows = Tensor::zeros((4, 2), candle_core::DType::F32, &Device::Cpu)?;
        assert!(segment_means(&rows, &[2, 1]).is_err());
        assert!(segment_means(&rows, &[4, 0]).is_err());
        assert!(segment_means(&rows, &[1, 3]).is_ok());
        Ok(())
    }
}
