//! Learning-rate schedule: linear warm-up, then cosine decay to zero (transformers'
//! `get_cosine_schedule_with_warmup`, as the reference implementation trains), except
//! that warm-up step `s` uses `(s + 1) / warmup` so the first update is not wasted at 0.

pub fn cosine_with_warmup(step: u64, total: u64, warmup: u64, peak: f64) -> f64 {
    if total == 0 {
        return peak;
    }
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::cosine_with_warmup as lr;

    #[test]
    fn warms_up_linearly_then_decays_to_zero() {
        assert!((lr(0, 100, 5, 1.0) - 0.2).abs() < 1e-12);
        assert!((lr(4, 100, 5, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr(5, 100, 5, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr(52, 100, 5, 1.0) - 0.5).abs() < 0.02);
        assert!(lr(99, 100, 5, 1.0) < 0.001);
        assert!(lr(60, 100, 5, 1.0) < lr(40, 100, 5, 1.0));
    }
}
