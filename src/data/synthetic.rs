//! A synthetic dataset in the shared format, for demos and tests: users walk the
//! catalogue mostly one step at a time (item i is usually followed by i + 1), with random
//! jumps, so the next item is learnable but not trivial.

use std::fmt::Write as _;
use std::path::Path;

use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// Writes `items.tsv`, `sequences.jsonl` and `prompt.txt` into `dir`. Each user has
/// `len` interactions; the last is the test target, the one before it the validation
/// target, the rest train targets. `jump` is the probability of a random next item.
pub fn write_synthetic(
    dir: &Path,
    items: &[(u64, String)],
    users: usize,
    len: usize,
    jump: f64,
    seed: u64,
) -> Result<()> {
    if items.len() < 2 || len < 5 {
        return Err(Error::invalid(
            "a synthetic dataset needs at least 2 items and 5 interactions per user",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tsv: String = items.iter().map(|(id, t)| format!("{id}\t{t}\n")).collect();
    let mut seqs = String::new();
    for user in 0..users {
        let mut at = rng.random_range(0..items.len());
        let mut ids = Vec::with_capacity(len);
        for _ in 0..len {
            ids.push(items[at].0);
            at = if rng.random::<f64>() < jump {
                rng.random_range(0..items.len())
            } else {
                (at + 1) % items.len()
            };
        }
        writeln!(
            seqs,
            r#"{{"user":{user},"items":{ids:?},"train":[0,{}],"valid":[{},{}],"test":[{},{}]}}"#,
            len - 3,
            len - 2,
            len - 2,
            len - 1,
            len - 1
        )
        .expect("write to string");
    }
    let prompt = "You are a helpful assistant in movie recommendations.\n\
        A user has watched [HISTORY_SEQUENCE]. Please recommend one movie for this user to watch next with its title only and without any explanation.\n";
    for (name, text) in [
        ("items.tsv", tsv.as_str()),
        ("sequences.jsonl", &seqs),
        ("prompt.txt", prompt),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}
