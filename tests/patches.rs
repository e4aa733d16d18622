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
            .patches_of(model.llama(), &[i as u32])
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
        .patches_of(model.llama(), &[5])
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

/// Each way of keeping patches gives the patches it promises: computed on demand, the
/// values kept in f32 (bit for bit, so answers are identical); in f16, those values
/// rounded. Changing the storage converts the items registered so far, and later items
/// follow it.
#[test]
fn patch_storages_agree_with_patches_kept_in_f32() {
    use patchrec::{PatchStorage, QueryOptions};
    let model = common::tiny_model(30);
    let items = common::titles(30);
    let cat = common::catalog(&model, &items[..20]);
    assert_eq!(
        cat.snapshot().patch_storage(),
        PatchStorage::OnDemand,
        "the default"
    );
    cat.set_patch_storage(PatchStorage::F32).unwrap();
    let llama = model.llama();
    let all: Vec<u32> = (0..20).collect();
    let f32_patches = cat
        .snapshot()
        .patches_of(llama, &all)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let history: Vec<u64> = items[..15].iter().map(|(id, _)| *id).collect();
    let user = cat.history_of(&history).unwrap();
    let opts = QueryOptions::default()
        .with_k(5)
        .with_layout(Layout::PftS { l: 3 });
    let f32_answer = patchrec::recommend(&cat, &user, &opts).unwrap();

    cat.set_patch_storage(PatchStorage::OnDemand).unwrap();
    assert_eq!(cat.snapshot().patch_storage(), PatchStorage::OnDemand);
    let on_demand = cat
        .snapshot()
        .patches_of(llama, &all)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(
        on_demand, f32_patches,
        "on demand: the same values, bit for bit"
    );
    let answer = patchrec::recommend(&cat, &user, &opts).unwrap();
    let scores = |r: &patchrec::QueryResult| {
        r.items
            .iter()
            .map(|i| (i.item_id, i.score))
            .collect::<Vec<_>>()
    };
    assert_eq!(scores(&answer), scores(&f32_answer));
    // An item registered while patches are computed on demand has its true patch.
    cat.add_batch(&items[20..25]).unwrap();
    let snap = cat.snapshot();
    let late = snap.live_index_of(items[22].0).unwrap();
    let got = snap
        .patches_of(llama, &[late])
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let want = reference_mean(llama.embeddings(), &snap.item(late).tokens);
    assert!(close(&got[0], &want));

    cat.set_patch_storage(PatchStorage::F16).unwrap();
    let f16 = cat
        .snapshot()
        .patches_of(llama, &all)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (a, b) in f16.iter().flatten().zip(f32_patches.iter().flatten()) {
        // f16 keeps 11 significant bits.
        assert!((a - b).abs() <= b.abs() / 1024.0 + 1e-7, "{a} vs {b}");
    }

    cat.set_patch_storage(PatchStorage::F32).unwrap();
    let back = cat
        .snapshot()
        .patches_of(llama, &all)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(back, f32_patches, "computed again in f32");
}
