//! Item patches are the mean of their title tokens' embedding rows; session patches the
//! mean of their item patches; both land in the prompt where the paper puts them.

mod common;

use candle_core::{IndexOp, Tensor};
use patchrec::history::Layout;
use patchrec::prompt::build_prompt;

/// Mean of embedding rows computed element by element on the host, independently of the
/// library's tensor code.
fn reference_mean(table: &Tensor, ids: &[u32]) -> Vec<f32> {
    let rows: Vec<Vec<f32>> = ids
        .iter()
        .map(|&i| table.i(i as usize).unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let d = rows[0].len();
    (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / rows.len() as f32)
        .collect()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn item_patch_is_mean_of_title_token_embeddings() {
    let model = common::tiny_model(20);
    let cat = common::catalog(&model, &common::titles(20));
    let snap = cat.snapshot();
    let table = model.llama().embeddings();
    for (i, item) in snap.items().enumerate() {
        assert!(
            item.tokens.len() > 1,
            "title {:?} should span several tokens",
            item.title
        );
        let expected = reference_mean(table, &item.tokens);
        let got = snap
            .patches_of(&[i as u32])
            .unwrap()
            .i(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(close(&got, &expected), "patch of {:?} differs", item.title);
        // Registration tokenises exactly as the tokenizer does.
        assert_eq!(item.tokens, model.tokenizer().encode(&item.title).unwrap());
    }
}

#[test]
fn session_patch_is_mean_of_item_patches_and_sits_in_the_prompt() {
    let model = common::tiny_model(20);
    let items = common::titles(20);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();
    let table = model.llama().embeddings();
    // 7 items, L = 2: session [0], session [1, 2], items 3 and 4, text 5 and 6.
    let history: Vec<u64> = items[..7].iter().map(|(id, _)| *id).collect();
    let prompt = build_prompt(&model, &snap, &history, Layout::PftS { l: 2 }).unwrap();
    let rows = prompt.embeds.squeeze(0).unwrap();
    let head = model.head_ids().len();
    let patch = |id: u64| reference_mean(table, &snap.get(id).unwrap().tokens);
    let row = |p: usize| rows.i(p).unwrap().to_vec1::<f32>().unwrap();
    let sep = model.special().item_sep;
    let sep_row = table.i(sep as usize).unwrap().to_vec1::<f32>().unwrap();

    // Session of one item = that item's patch, then a separator.
    assert!(close(&row(head), &patch(history[0])));
    assert!(close(&row(head + 1), &sep_row));
    // Session of two = mean of their item patches.
    let (p1, p2) = (patch(history[1]), patch(history[2]));
    let mean: Vec<f32> = p1.iter().zip(&p2).map(|(a, b)| (a + b) / 2.0).collect();
    assert!(close(&row(head + 2), &mean));
    assert!(close(&row(head + 3), &sep_row));
    // Then two item patches, each followed by a separator.
    assert!(close(&row(head + 4), &patch(history[3])));
    assert!(close(&row(head + 6), &patch(history[4])));
    assert!(close(&row(head + 7), &sep_row));
}

#[test]
fn patches_follow_items_registered_later() {
    let model = common::tiny_model(20);
    let items = common::titles(20);
    let cat = common::catalog(&model, &items[..5]);
    cat.add(items[5].0, &items[5].1).unwrap();
    let snap = cat.snapshot();
    assert_eq!(snap.len(), 6);
    let got = snap
        .patches_of(&[5])
        .unwrap()
        .i(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want = reference_mean(
        model.llama().embeddings(),
        &snap.get(items[5].0).unwrap().tokens,
    );
    assert!(close(&got, &want));
}
