//! libpatchrec from Rust: a model, a catalogue, a user, then the calls a ranking service
//! makes. Runs anywhere with no download: the model is a small one made from scratch
//! (random weights, so the order of its answers means nothing; a trained checkpoint is
//! loaded the same way, with `Model::load`).
//!
//! ```sh
//! cargo run --release --example recommend
//! ```

use std::sync::Arc;

use patchrec::{
    init_model, rank, recommend_cached, Catalog, ChatFormat, InitOptions, Interaction, Layout,
    LayoutConfig, PromptCache, PromptTemplate, QueryOptions, RankOptions, UserHistory,
};

fn main() -> patchrec::Result<()> {
    let titles = [
        (1, "Toy Story (1995)"),
        (2, "GoldenEye (1995)"),
        (3, "Fargo (1996)"),
        (4, "Heat (1995)"),
        (5, "The Matrix (1999)"),
        (6, "Alien (1979)"),
        (7, "Jurassic Park (1993)"),
        (8, "Groundhog Day (1993)"),
    ];
    // A trained model: `Model::load("checkpoint-dir", &ModelOptions::default())?`.
    let names: Vec<&str> = titles.iter().map(|(_, t)| *t).collect();
    let model = init_model(
        &names,
        PromptTemplate::movielens(ChatFormat::ChatMl),
        &InitOptions::default()
            .with_vocab_size(512)
            .with_hidden_size(64)
            .with_num_layers(2),
    )?;
    let catalog = Catalog::new(Arc::new(model))?;
    catalog.add_batch(&titles)?;

    // A user, with the KV of its last prompt kept for the next query.
    let mut user = UserHistory::new();
    let mut cache = PromptCache::new();
    let watched: Vec<Interaction> = [1, 3, 5]
        .iter()
        .map(|&item_id| Interaction {
            item_id,
            timestamp: None,
        })
        .collect();
    catalog.append(&mut user, &watched)?;

    let options = QueryOptions::default()
        .with_k(3)
        .with_layout(LayoutConfig::new(Layout::StreamS { l: 2 }, 100))
        .with_exclude_history(true)
        .with_deny(vec![8]); // never recommend item 8 in this query
    let top = recommend_cached(&catalog, &user, &mut cache, &options)?;
    println!("top {} of {} items:", top.items.len(), catalog.len());
    let snapshot = catalog.snapshot();
    for r in &top.items {
        let title = &snapshot.get(r.item_id).expect("registered").title;
        println!("  {:>2} {title:<24} {:.3}", r.item_id, r.score);
    }

    // Candidates from retrieval, scored on recommend's scale.
    let ranked = rank(
        &catalog,
        &user,
        &[7, 2, 4],
        &RankOptions::default().with_layout(options.layout),
    )?;
    println!("candidates, best first:");
    for c in &ranked.items {
        println!("  {:>2} {:.3}", c.item_id, c.score);
    }

    // The catalogue changes while the service runs; the next query sees it.
    catalog.remove(2)?;
    catalog.set_title(4, "Heat (1995, director's cut)")?;
    catalog.append(
        &mut user,
        &[Interaction {
            item_id: 7,
            timestamp: None,
        }],
    )?;
    let again = recommend_cached(&catalog, &user, &mut cache, &options)?;
    println!(
        "after an append: {} positions prefilled of {}",
        cache.last_reuse().computed,
        again.prompt_len
    );
    Ok(())
}
