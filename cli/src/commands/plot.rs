//! `patchrec plot`: Draw HR@20 against compression ratio for evaluation reports (`eval
//! --out`) as SVG.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Report files, each optionally `path=label` (default label: the file name)
    #[arg(required = true)]
    pub reports: Vec<String>,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let mut points = Vec::new();
    for spec in &args.reports {
        let (path, label) = match spec.split_once('=') {
            Some((p, l)) => (PathBuf::from(p), l.to_string()),
            None => {
                let p = PathBuf::from(spec);
                let label = p
                    .file_stem()
                    .map_or(spec.clone(), |s| s.to_string_lossy().into());
                (p, label)
            }
        };
        let text = patchrec::files::read_text(&path, patchrec::files::MAX_DATA_BYTES)?;
        let report: patchrec::eval::EvalReport = serde_json::from_str(&text)
            .map_err(|e| patchrec::Error::format(&path, format!("not an eval report: {e}")))?;
        points.push((label, report));
    }
    crate::plot::plot_hr_vs_cr(&points, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
