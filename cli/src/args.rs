//! Argument parsers shared by several subcommands.

/// A count that must be at least 1 (`--users 0` would measure nothing and print zeros).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A probability: a finite number within 0..=1.
pub fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        Ok(p) => Err(format!("{p} is not a probability within 0..=1")),
        Err(e) => Err(e.to_string()),
    }
}
