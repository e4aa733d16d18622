//! `patchrec recommend`: Recommend the next items for one history.

use crate::args::at_least_one;
use crate::load::model_options;
use patchrec::catalog::tsv::read_items_tsv;
use patchrec::Catalog;
use patchrec::Layout;
use patchrec::LayoutConfig;
use patchrec::Model;
use patchrec::QueryOptions;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub items: PathBuf,
    /// Item ids, oldest first, comma-separated
    #[arg(long, value_delimiter = ',')]
    pub history: Vec<u64>,
    /// When each history item happened, seconds since the epoch, comma-separated (one
    /// per item; used by --session-gap)
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub timestamps: Vec<i64>,
    /// vanilla, pft-i:M, pft-s:L, stream-s:L or budget:N (default: the checkpoint's)
    #[arg(long)]
    pub layout: Option<String>,
    /// History truncation K
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub max_items: usize,
    /// stream-s:L only: a session also closes after a pause of more than this many
    /// seconds between two interactions
    #[arg(long)]
    pub session_gap: Option<u64>,
    #[arg(long, default_value_t = 10, value_parser = at_least_one)]
    pub k: usize,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub beam_width: usize,
    #[arg(long)]
    pub exclude_history: bool,
    /// Rank the whole catalogue exactly instead of by beam search
    #[arg(long)]
    pub exact: bool,
    /// Serve from quantized weights: q8_0, q4_0 or bf16
    #[arg(long)]
    pub quantize: Option<String>,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let model = Arc::new(Model::load(
        &args.checkpoint,
        &model_options(Some(args.device), &args.quantize)?,
    )?);
    let catalog = Catalog::new(model.clone())?;
    let entries = read_items_tsv(&args.items)?;
    catalog.add_batch(&entries)?;
    let user = if args.timestamps.is_empty() {
        catalog.history_of(&args.history)?
    } else if args.timestamps.len() != args.history.len() {
        return Err(patchrec::Error::invalid(format!(
            "--timestamps has {} values for {} history items",
            args.timestamps.len(),
            args.history.len()
        )));
    } else {
        let mut user = patchrec::UserHistory::new();
        let stream: Vec<patchrec::Interaction> = args
            .history
            .iter()
            .zip(&args.timestamps)
            .map(|(&item_id, &t)| patchrec::Interaction {
                item_id,
                timestamp: Some(t),
            })
            .collect();
        catalog.append(&mut user, &stream)?;
        user
    };
    let layout = match args.layout {
        Some(s) => Layout::parse(&s)?,
        None => model.meta().layout.layout,
    };
    let opts = QueryOptions::default()
        .with_k(args.k)
        .with_beam_width(args.beam_width)
        .with_layout(LayoutConfig::new(layout, args.max_items).with_session_gap(args.session_gap))
        .with_exclude_history(args.exclude_history)
        .with_exact(args.exact);
    let started = std::time::Instant::now();
    let result = patchrec::recommend(&catalog, &user, &opts)?;
    let snap = catalog.snapshot();
    println!(
        "layout {layout}: {} history items, prompt {} positions, compression ratio {:.2}, {:.0} ms",
        result.history_items,
        result.prompt_len,
        result.compression_ratio,
        started.elapsed().as_secs_f64() * 1e3
    );
    for (rank, r) in result.items.iter().enumerate() {
        let title = snap.get(r.item_id).map_or("?", |i| i.title.as_str());
        println!("{:>3}. {:>8.3}  [{}] {title}", rank + 1, r.score, r.item_id);
    }
    Ok(())
}
