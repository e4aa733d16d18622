//! `patchrec init`: Create a from-scratch checkpoint: a BPE tokenizer trained on the
//! catalogue's titles and the prompt text, and a randomly initialised Llama.

use patchrec::catalog::tsv::read_items_tsv;
use patchrec::init::init_model;
use patchrec::init::InitOptions;
use patchrec::text::ChatFormat;
use patchrec::text::PromptTemplate;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// `items.tsv` (item_id<TAB>title)
    #[arg(long)]
    pub items: PathBuf,
    /// `prompt.txt` (system message, instruction with [HISTORY_SEQUENCE]); default:
    /// the paper's MovieLens prompt
    #[arg(long)]
    pub prompt: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    // The defaults are `InitOptions::default()`, as in a training configuration.
    #[arg(long, default_value_t = InitOptions::default().vocab_size)]
    pub vocab_size: usize,
    #[arg(long, default_value_t = InitOptions::default().hidden_size)]
    pub hidden: usize,
    #[arg(long, default_value_t = InitOptions::default().num_layers)]
    pub layers: usize,
    #[arg(long, default_value_t = InitOptions::default().num_heads)]
    pub heads: usize,
    #[arg(long, default_value_t = InitOptions::default().num_kv_heads)]
    pub kv_heads: usize,
    #[arg(long, default_value_t = InitOptions::default().seed)]
    pub seed: u64,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let catalog = read_items_tsv(&args.items)?;
    let template = match args.prompt {
        Some(p) => {
            let text = patchrec::files::read_text(&p, patchrec::files::MAX_JSON_BYTES)?;
            PromptTemplate::from_prompt_text(&text, ChatFormat::ChatMl)?
        }
        None => PromptTemplate::movielens(ChatFormat::ChatMl),
    };
    let titles: Vec<String> = catalog.into_iter().map(|(_, t)| t).collect();
    let opts = InitOptions::default()
        .with_vocab_size(args.vocab_size)
        .with_hidden_size(args.hidden)
        .with_num_layers(args.layers)
        .with_num_heads(args.heads)
        .with_num_kv_heads(args.kv_heads)
        .with_seed(args.seed);
    let model = init_model(&titles, template, &opts)?;
    model.save(&args.out)?;
    println!(
        "wrote {} (vocabulary {}, hidden {}, {} layers)",
        args.out.display(),
        model.tokenizer().vocab_size(),
        args.hidden,
        args.layers
    );
    Ok(())
}
