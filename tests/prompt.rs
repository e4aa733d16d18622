//! The embedding-level prompt equals the rendered prompt string, tokenised.

mod common;

use candle_core::IndexOp;
use patchrec::history::{Layout, LayoutConfig};
use patchrec::prompt::build_prompt;
use patchrec::{layout_stats, Interaction, QueryOptions, UserHistory};

#[test]
fn text_segments_embed_like_the_tokenised_prompt_string() {
    let model = common::tiny_model(30);
    let items = common::titles(30);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();
    let tpl = &model.meta().template;
    let special = &model.meta().special_tokens;
    for n in [0usize, 1, 2, 9] {
        let history: Vec<u64> = items[..n].iter().map(|(id, _)| *id).collect();
        let titles: Vec<&str> = items[..n].iter().map(|(_, t)| t.as_str()).collect();
        let rendered = tpl.render(special, &titles);
        let ids = model.tokenizer().encode(&rendered).unwrap();
        let want = model.llama().embed_ids(&ids).unwrap();
        let got = build_prompt(&model, &snap, &history, Layout::Vanilla).unwrap();
        assert_eq!(got.len, ids.len(), "prompt length for {n} items");
        assert_eq!(
            common::max_abs_diff(&got.embeds.squeeze(0).unwrap(), &want),
            0.0
        );
        if n > 0 {
            assert!(rendered.contains(&format!("{}{}", special.start_seq, titles[0])));
            assert!(rendered.contains(&format!("{}{}", titles[n - 1], special.end_seq)));
        }
    }
}

#[test]
fn pft_i_keeps_the_text_part_of_the_rendered_prompt() {
    let model = common::tiny_model(30);
    let items = common::titles(30);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();
    let history: Vec<u64> = items[..8].iter().map(|(id, _)| *id).collect();
    let got = build_prompt(&model, &snap, &history, Layout::PftI { m: 3 }).unwrap();
    // The rendered prompt of the last 3 titles, with 5 patch+separator pairs spliced in
    // after <|start_seq|>.
    let titles: Vec<&str> = items[5..8].iter().map(|(_, t)| t.as_str()).collect();
    let rendered = model
        .meta()
        .template
        .render(&model.meta().special_tokens, &titles);
    let ids = model.tokenizer().encode(&rendered).unwrap();
    let head = model.head_ids().len();
    assert_eq!(got.len, ids.len() + 2 * 5);
    let rows = got.embeds.squeeze(0).unwrap();
    let want = model.llama().embed_ids(&ids).unwrap();
    assert_eq!(
        common::max_abs_diff(
            &rows.narrow(0, 0, head).unwrap(),
            &want.narrow(0, 0, head).unwrap()
        ),
        0.0
    );
    let tail = ids.len() - head;
    assert_eq!(
        common::max_abs_diff(
            &rows.narrow(0, head + 10, tail).unwrap(),
            &want.narrow(0, head, tail).unwrap()
        ),
        0.0
    );
    let sep = model
        .llama()
        .embed_ids(&[model.special().item_sep])
        .unwrap();
    for p in 0..5 {
        let at = head + 2 * p + 1;
        assert_eq!(
            common::max_abs_diff(&rows.i(at).unwrap().unsqueeze(0).unwrap(), &sep),
            0.0
        );
    }
}

#[test]
fn stats_match_counted_prompt_positions_and_tokens() {
    let model = common::tiny_model(30);
    let items = common::titles(30);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();
    let mut user = UserHistory::new();
    let all: Vec<Interaction> = items
        .iter()
        .map(|(id, _)| Interaction {
            item_id: *id,
            timestamp: None,
        })
        .collect();
    cat.append(&mut user, &all).unwrap();
    let title_tokens = |id: u64| snap.get(id).unwrap().tokens.len();
    for (layout, k) in [
        (Layout::Vanilla, 30),
        (Layout::PftI { m: 5 }, 30),
        (Layout::PftS { l: 4 }, 30),
        (Layout::PftS { l: 4 }, 17), // truncated to the latest K
    ] {
        let opts = QueryOptions::default().with_layout(LayoutConfig::new(layout, k));
        let patchrec::LayoutStats {
            prompt_len: len,
            history_items: shown,
            compression_ratio: cr,
            ..
        } = layout_stats(&cat, &user, &opts).unwrap();
        let history = user.latest(k);
        assert_eq!(shown, k.min(30));
        assert_eq!(
            history[..],
            items[30 - k..]
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>()[..]
        );
        let built = build_prompt(&model, &snap, &history, layout).unwrap();
        assert_eq!(len, built.len, "{layout}");
        assert!((cr - built.compression_ratio).abs() < 1e-12);
        // CR by counting: all title tokens over (text title tokens + one per patch).
        let full: usize = history.iter().map(|&id| title_tokens(id)).sum();
        let segs = patchrec::history::segments(layout, history.len());
        let compressed: usize = segs
            .iter()
            .map(|s| match s.kind {
                patchrec::history::SegmentKind::Text => title_tokens(history[s.items.start]),
                _ => 1,
            })
            .sum();
        assert!((cr - full as f64 / compressed as f64).abs() < 1e-12);
        if layout != Layout::Vanilla {
            assert!(cr > 1.5, "{layout} should compress, got {cr}");
        }
    }
}
