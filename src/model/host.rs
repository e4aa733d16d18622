//! Our own CPU kernels (`skinny`, `swiglu`, fused attention, the training ops): when they
//! run, and how they read candle's storage.
//!
//! Every op has two paths: our kernel, for contiguous f32 tensors on the CPU, and candle's
//! composed ops for every other device and dtype. The second is the path a GPU runs, and
//! `PATCHREC_KERNELS=generic` (or [`set_generic_kernels`]) makes the CPU take it too, so
//! that the tests compare the two on machines without a GPU (`tests/device_path.rs`).

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Device, Layout};

/// 0: not yet read from the environment; 1: our kernels; 2: the generic path.
static KERNELS: AtomicU8 = AtomicU8::new(0);

/// Whether our CPU kernels may run for tensors on `device` (they may still decline tensors
/// of another dtype or layout): on the CPU unless the generic path was asked for.
pub(crate) fn kernels_on(device: &Device) -> bool {
    device.is_cpu() && !generic_kernels()
}

/// Whether every op takes candle's composed path, as on a GPU.
pub fn generic_kernels() -> bool {
    match KERNELS.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let generic = std::env::var("PATCHREC_KERNELS").is_ok_and(|v| v == "generic");
            // A racing `set_generic_kernels` wins: only an unread switch is initialised.
            let _ = KERNELS.compare_exchange(0, 1 + generic as u8, Ordering::Relaxed, Ordering::Relaxed);
            KERNELS.load(Ordering::Relaxed) == 2
        }
    }
}

/// Makes every op in the process take candle's composed path (`true`) or our CPU kernels
/// where they apply (`false`), overriding `PATCHREC_KERNELS`. For tests and benchmarks: it
/// is process-wide, so a caller flips it only while nothing else computes.
pub fn set_generic_kernels(generic: bool) {
    KERNELS.store(1 + generic as u8, Ordering::Relaxed);
}

/// `storage`'s elements that `layout` covers, or an error naming `op` when they are not
/// f32 or not contiguous.
pub(crate) fn f32_elements<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else {
        candle_core::bail!("{op}: f32 only, got {:?}", storage.dtype());
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous operands only");
    };
    Ok(&v[start..end])
}

/// The host elements of a contiguous f32 tensor, borrowed for `f`; an error naming `op`
/// when it is not on the CPU, not f32 or not contiguous.
pub(crate) fn with_elements<R>(
    op: &str,
    t: &candle_core::Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{op}: a tensor is not on the CPU");
    };
    f(f32_elements(op, cpu, layout)?)
}
