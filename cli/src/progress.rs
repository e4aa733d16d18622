//! A terminal progress bar for training, drawn from the library's progress callback.

use patchrec::train::Progress;

/// One bar per stage: a new stage (or the first step after a resume) starts a new bar.
#[derive(Default)]
pub struct StageBar {
    bar: Option<(usize, indicatif::ProgressBar)>,
}

impl StageBar {
    pub fn show(&mut self, p: &Progress) {
        if self
            .bar
            .as_ref()
            .is_none_or(|(stage, _)| *stage != p.stage_index)
        {
            if let Some((_, old)) = self.bar.take() {
                old.finish();
            }
            let bar = indicatif::ProgressBar::new(p.total_steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
                )
                .expect("valid template"),
            );
            bar.set_prefix(p.stage.clone());
            self.bar = Some((p.stage_index, bar));
        }
        let (_, bar) = self.bar.as_ref().expect("set above");
        bar.set_position(p.step);
        bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.0} tok/s",
            p.loss, p.learning_rate, p.tokens_per_second
        ));
        if p.step == p.total_steps {
            bar.finish();
        }
    }
}
