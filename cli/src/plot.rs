//! HR@20 against compression ratio for several evaluation reports, as an SVG (the shape
//! of the paper's Fig. 2).

use std::path::Path;

use plotters::prelude::*;

use patchrec::error::{Error, Result};
use patchrec::EvalReport;

/// Draws one point per `(label, report)` at (compression ratio, HR@20).
pub fn plot_hr_vs_cr(points: &[(String, EvalReport)], out: &Path) -> Result<()> {
    if points.is_empty() {
        return Err(Error::invalid("plot needs at least one report"));
    }
    let max_cr = points
        .iter()
        .map(|(_, r)| r.compression_ratio)
        .fold(1.0, f64::max)
        * 1.15;
    let max_hr = points
        .iter()
        .map(|(_, r)| r.metrics.hr20)
        .fold(0.05, f64::max)
        * 1.2;
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(out, (720, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("HR@20 vs compression ratio", ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..max_cr, 0.0..max_hr)?;
        chart
            .configure_mesh()
            .x_desc("compression ratio (history tokens as text / compressed)")
            .y_desc("HR@20")
            .draw()?;
        for (i, (label, r)) in points.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let at = (r.compression_ratio, r.metrics.hr20);
            chart.draw_series(std::iter::once(Circle::new(at, 5, color.filled())))?;
            chart.draw_series(std::iter::once(Text::new(
                label.clone(),
                (at.0 + max_cr * 0.01, at.1 + max_hr * 0.01),
                ("sans-serif", 13),
            )))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| Error::format(out, format!("cannot draw the plot: {e}")))
}
