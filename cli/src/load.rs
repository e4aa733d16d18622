//! Loading a checkpoint and a catalogue the way several subcommands do.

use std::path::Path;
use std::sync::Arc;

use patchrec::catalog::tsv::read_items_tsv;
use patchrec::{Catalog, Model, ModelOptions};

/// Model options from the command line's `--device` and `--quantize`.
pub fn model_options(
    device: Option<String>,
    quantize: &Option<String>,
) -> patchrec::Result<ModelOptions> {
    Ok(ModelOptions::default()
        .with_device(device)
        .with_quantization(quantize.as_deref().map(str::parse).transpose()?))
}

/// The checkpoint (f32, on the CPU) with the catalogue of `items` registered.
pub fn serving_catalogue(checkpoint: &Path, items: &Path) -> patchrec::Result<Catalog> {
    let model = Model::load(checkpoint, &model_options(None, &None)?)?;
    let catalog = Catalog::new(Arc::new(model))?;
    catalog.add_batch(&read_items_tsv(items)?)?;
    Ok(catalog)
}
