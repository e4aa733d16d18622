//! Matrix products on host slices for the training ops' forward and backward passes, with
//! `gemm` on rayon's threads.
//!
//! Why not candle's matmul inside a backward pass: each product is a fresh tensor and each
//! sum of two another; here a gradient is written, and further products accumulated into
//! it, in one buffer.

/// A row-major matrix, its transpose, or a column block of one: `rows x cols` elements at
/// `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// `data` as a contiguous row-major `rows x cols` matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Columns `start..start + cols` of the row-major `rows x width` matrix `data`.
    pub(crate) fn columns(
        data: &'a [f32],
        rows: usize,
        width: usize,
        start: usize,
        cols: usize,
    ) -> Self {
        assert!(start + cols <= width, "columns {start}+{cols} of {width}");
        Self::strided(&data[start.min(data.len())..], rows, cols, width, 1)
    }

    fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        let needed = match (rows, cols) {
            (0, _) | (_, 0) => 0,
            _ => (rows - 1) * row_stride + (cols - 1) * col_stride + 1,
        };
        assert!(
            data.len() >= needed,
            "a {rows}x{cols} matrix needs {needed} elements, the slice has {}",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// The transpose, read through swapped strides.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `dst = (dst if accumulate) + scale * lhs rhs` with `dst` row-major `[lhs.rows, rhs.cols]`.
///
/// Panics when the inner dimensions differ or `dst` is too short.
pub(crate) fn product(dst: &mut [f32], lhs: Mat, rhs: Mat, accumulate: bool, scale: f32) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "a {m}x{k} matrix times a {}x{n} one", rhs.rows);
    assert!(dst.len() >= m * n, "{m}x{n} products into {} elements", dst.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let parallelism = match rayon::current_num_threads() {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    // SAFETY: `Mat` checked that every element its strides reach lies inside its slice,
    // and `dst` holds m * n elements; `dst` is a unique borrow, so no operand aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1f32,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product in f64, element by element.
    fn reference(lhs: Mat, rhs: Mat) -> Vec<f64> {
        let mut out = vec![0f64; lhs.rows * rhs.cols];
        for i in 0..lhs.rows {
            for j in 0..rhs.cols {
                out[i * rhs.cols + j] = (0..lhs.cols)
                    .map(|p| {
                        lhs.data[i * lhs.row_stride + p * lhs.col_stride] as f64
                            * rhs.data[p * rhs.row_stride + j * rhs.col_stride] as f64
                    })
                    .sum();
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Plain, transposed and column-block operands, written and accumulated, against f64.
    #[test]
    fn every_operand_form_matches_the_reference() {
        let a = values(7 * 13, 1);
        let b = values(13 * 5, 2);
        let bt = values(5 * 13, 3);
        let wide = values(7 * 20, 4);
        let c = values(7 * 5, 5);
        let cases = [
            (Mat::new(&a, 7, 13), Mat::new(&b, 13, 5)),
            (Mat::new(&a, 7, 13), Mat::new(&bt, 5, 13).t()),
            (Mat::columns(&wide, 7, 20, 6, 13), Mat::new(&b, 13, 5)),
            (Mat::columns(&wide, 7, 20, 2, 13).t(), Mat::new(&c, 7, 5)),
        ];
        for (lhs, rhs) in cases {
            let want = reference(lhs, rhs);
            let mut dst = vec![0.5f32; want.len()];
            product(&mut dst, lhs, rhs, false, 2.0);
            for (d, w) in dst.iter().zip(&want) {
                assert!((*d as f64 - 2.0 * w).abs() < 1e-4, "{d} vs {}", 2.0 * w);
            }
            product(&mut dst, lhs, rhs, true, -1.0);
            for (d, w) in dst.iter().zip(&want) {
                assert!((*d as f64 - w).abs() < 1e-4, "{d} vs {w}");
            }
        }
    }
}
