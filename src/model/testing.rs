//! Helpers for the model's unit tests, which check our fused ops against candle's.

use candle_core::backprop::GradStore;
use candle_core::Tensor;

/// The largest absolute difference between two tensors of the same shape.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("tensors of the same shape")
}

/// The gradients of `sum(out * probe)`: with a random `probe`, every element of `out`
/// weighs in, each differently.
pub(crate) fn probe_backward(out: &Tensor, probe: &Tensor) -> GradStore {
    (out * probe)
        .and_then(|t| t.sum_all())
        .and_then(|t| t.backward())
        .expect("a differentiable output")
}
