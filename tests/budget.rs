//! Adaptive layout: a `budget:N` query fits its prompt in N positions while showing as much
//! text as it can, and `layout_stats` agrees with the query.

mod common;

use patchrec::history::{Layout, LayoutConfig};
use patchrec::{layout_stats, recommend, Interaction, QueryOptions, UserHistory};

#[test]
fn budget_queries_fit_and_agree_with_layout_stats() {
    let items = common::titles(40);
    let model = common::tiny_model(40);
    let cat = common::catalog(&model, &items);
    let mut user = UserHistory::new();
    let history: Vec<Interaction> = (0..30)
        .map(|i| Interaction {
            item_id: items[(i * 3) % 40].0,
            timestamp: None,
        })
        .collect();
    cat.append(&mut user, &history).unwrap();
    let opts = |layout| {
        QueryOptions::default()
            .with_k(5)
            .with_beam_width(5)
            .with_layout(LayoutConfig::new(layout, 100))
    };
    let vanilla = recommend(&cat, &user, &opts(Layout::Vanilla)).unwrap();
    let fixed = model.head_ids().len() + model.tail_ids().len();
    // The smallest prompt any layout gives (PFT-S with the best L).
    let smallest = (1..=30)
        .map(|l| {
            layout_stats(&cat, &user, &opts(Layout::PftS { l }))
                .unwrap()
                .prompt_len
        })
        .min()
        .unwrap();
    let mut last_len = usize::MAX;
    // From roomy to impossible: prompts shrink, and fit whenever any layout can.
    for budget in [
        vanilla.prompt_len + 10,
        vanilla.prompt_len - 1,
        fixed + 60,
        (fixed + 60 + smallest) / 2,
        smallest,
        smallest - 1,
    ] {
        let r = recommend(&cat, &user, &opts(Layout::Budget { tokens: budget })).unwrap();
        if budget >= smallest {
            assert!(
                r.prompt_len <= budget,
                "budget {budget}: {} positions ({})",
                r.prompt_len,
                r.layout
            );
        } else {
            assert_eq!(
                r.prompt_len, smallest,
                "an impossible budget gets the smallest prompt"
            );
        }
        assert!(r.prompt_len <= last_len);
        last_len = r.prompt_len;
        let stats = layout_stats(&cat, &user, &opts(Layout::Budget { tokens: budget })).unwrap();
        assert_eq!(
            (stats.prompt_len, stats.history_items),
            (r.prompt_len, 30),
            "budget {budget}"
        );
        assert!((stats.compression_ratio - r.compression_ratio).abs() < 1e-12);
        match budget {
            b if b >= vanilla.prompt_len => assert_eq!(r.layout, Layout::Vanilla),
            b if b == vanilla.prompt_len - 1 => {
                assert!(matches!(r.layout, Layout::PftI { m: 29 }), "{}", r.layout)
            }
            // 30 item patches and their delimiters: PFT-I with no text at all.
            b if b == fixed + 60 => assert_eq!(r.layout, Layout::PftI { m: 0 }),
            _ => assert!(matches!(r.layout, Layout::PftS { .. }), "{}", r.layout),
        }
    }
}
