//! `patchrec convert`: Convert a Llama-architecture GGUF file into a checkpoint directory.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long = "from-gguf")]
    pub from_gguf: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let model = patchrec::gguf::convert(&args.from_gguf)?;
    model.save(&args.out)?;
    let cfg = model.llama().config();
    println!(
        "wrote {} ({} layers, hidden {}, vocabulary {})",
        args.out.display(),
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.vocab_size
    );
    Ok(())
}
