//! The f32 elements of a contiguous CPU tensor, for our own CPU ops (`skinny`, `swiglu`),
//! which read candle's storage directly.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout};

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
