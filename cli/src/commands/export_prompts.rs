//! `patchrec export-prompts`: Export prompts (input embeddings), titles and our answers and
//! timings for the peer benchmarks in bench/ (`prompts.safetensors`, `prompts.json`).

use crate::args::at_least_one;
use patchrec::catalog::tsv::read_items_tsv;
use patchrec::Catalog;
use patchrec::Layout;
use patchrec::Model;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `items.tsv` of the catalogue to register
    #[arg(long)]
    pub items: PathBuf,
    #[arg(long, default_value = "pft-s:5")]
    pub layout: String,
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub length: usize,
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    pub users: usize,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub k: usize,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub beam_width: usize,
    #[arg(long)]
    pub out: PathBuf,
    /// Serve from quantized weights: q8_0, q4_0 or bf16 (the exported embeddings stay f32, as
    /// the embedding table does)
    #[arg(long)]
    pub quantize: Option<String>,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let options = crate::load::model_options(None, &args.quantize)?;
    let model = Arc::new(Model::load(&args.checkpoint, &options)?);
    let catalog = Catalog::new(model)?;
    catalog.add_batch(&read_items_tsv(&args.items)?)?;
    let opts = crate::bench::ExportOptions {
        layout: Layout::parse(&args.layout)?,
        history_length: args.length,
        users: args.users,
        k: args.k,
        beam_width: args.beam_width,
        seed: 42,
    };
    let m = crate::bench::export_prompts(&catalog, &opts, &args.out)?;
    let mean = |f: fn(&crate::bench::export::ExportedPrompt) -> f64| {
        m.prompts.iter().map(f).sum::<f64>() / m.prompts.len() as f64
    };
    println!(
        "wrote {} prompts to {}: mean {:.0} positions, ours {:.1} ms per query \
         (prefill {:.1} ms, decode {:.1} ms)",
        m.prompts.len(),
        args.out.display(),
        mean(|p| p.len as f64),
        mean(|p| p.total_ms),
        mean(|p| p.prefill_ms),
        mean(|p| p.decode_ms)
    );
    Ok(())
}
