//! The attention against its definition in f64, and its refusals.

use candle_core::Tensor;

use super::*;

fn heads_of(heads: usize, kv_heads: usize, head_dim: usize) -> Heads {
    Heads {
        heads,
        kv_heads,
        head_dim,
    }
}

/// Deterministic values in [-2, 2).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

/// The definition, in f64: per row and head, the scores against the keys the row sees
/// (all of the prefix, then its own), their softmax and the weighted values.
fn reference(
    q: &[f32],
    rows: usize,
    shape: Heads,
    prefix: Option<KvSlice>,
    own: KvSlice,
    seen: &[Vec<usize>],
) -> Vec<f32> {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    let mut out = vec![0f32; rows * heads * hd];
    for r in 0..rows {
        for hh in 0..heads {
            let g = hh / (heads / kv_heads);
            let qr = &q[(r * heads + hh) * hd..][..hd];
            let mut keys: Vec<(&[f32], &[f32])> = Vec::new();
            let at = |s: &KvSlice<'_>, j: usize| g * s.head_stride + j * s.pos_stride;
            if let Some(p) = &prefix {
                for j in 0..p.len {
                    keys.push((&p.k[at(p, j)..][..hd], &p.v[at(p, j)..][..hd]));
                }
            }
            for &j in &seen[r] {
                keys.push((&own.k[at(&own, j)..][..hd], &own.v[at(&own, j)..][..hd]));
            }
            let scores: Vec<f64> = keys
                .iter()
                .map(|(k, _)| {
                    qr.iter()
                        .zip(*k)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let o: f64 = e.iter().zip(&keys).map(|(w, (_, v))| w * v[d] as f64).sum();
                out[(r * heads + hh) * hd + d] = (o / sum) as f32;
            }
        }
    }
    out
}

/// The largest difference; NaN where either side has a NaN the other has not (so that
/// `max_diff(..) < tol` fails on it: `f32::max` would skip a NaN).
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m: f32, d| if d.is_nan() || m.is_nan() { f32::NAN } else { m.max(d) })
}

/// A cache-shaped slice `[kv_heads, len, hd]` inside a buffer that holds `cap`
/// positions per head (as a truncated cache's view does).
fn cache_slice(k: &[f32], v: &[f32], len: usize, cap: usize, hd: usize) -> KvSlice<'static> {
    KvSlice {
        k: k.to_vec().leak(),
        v: v.to_vec().leak(),
        len,
        head_stride: cap * hd,
        pos_stride: hd,
    }
}

/// A token tree's layer `[nodes, kv_heads, hd]` (as the tree's cache holds it).
fn tree_slice<'a>(k: &'a [f32], v: &'a [f32], nodes: usize, kv_heads: usize, hd: usize) -> KvSlice<'a> {
    KvSlice {
        k,
        v,
        len: nodes,
        head_stride: hd,
        pos_stride: kv_heads * hd,
    }
}

/// Causal prefill after `past` own positions, with and without a prefix, at head
/// sizes taking the vector path (64, 16) and the scalar one (12), row counts below and
/// above the parallel split, and prefix lengths that leave a tail of fewer than eight
/// keys.
#[test]
fn causal_rows_match_the_definition() -> Result<()> {
    let shapes = [(9, 3, 64), (8, 2, 64), (5, 1, 16), (4, 2, 16), (2, 1, 12), (4, 4, 8)];
    for &(heads, kv_heads, hd) in &shapes {
        let shape = heads_of(heads, kv_heads, hd);
        for &(rows, past, pre_len) in &[(1, 0, 0), (3, 5, 0), (37, 11, 23), (101, 23, 0), (5, 0, 9)]
        {
            let cap = past + rows + 3;
            let q = values(rows * heads * hd, 1 + rows as u64);
            let own_k = values(kv_heads * cap * hd, 2);
            let own_v = values(kv_heads * cap * hd, 3);
            let own = cache_slice(&own_k, &own_v, past + rows, cap, hd);
            let pk = values(kv_heads * pre_len * hd, 4);
            let pv = values(kv_heads * pre_len * hd, 5);
            let prefix = (pre_len > 0).then(|| cache_slice(&pk, &pv, pre_len, pre_len, hd));
            let got = attend(&q, rows, shape, prefix, own, Visible::Causal { past })?;
            let seen: Vec<Vec<usize>> = (0..rows).map(|r| (0..=past + r).collect()).collect();
            let want = reference(&q, rows, shape, prefix, own, &seen);
            let d = max_diff(&got, &want);
            assert!(
                d < 1e-5,
                "{heads}/{kv_heads}x{hd}, rows {rows}, past {past}, prefix {pre_len}: {d}"
            );
        }
    }
    Ok(())
}

/// A token tree's rows: own keys in a `[nodes, kv_heads, hd]` buffer, each row seeing
/// the nodes its list names (any order, depths from 1 to 19), after a prefix.
#[test]
fn listed_rows_match_the_definition() -> Result<()> {
    for &(heads, kv_heads, hd, pre_len) in
        &[(9, 3, 64, 124), (8, 2, 64, 31), (5, 1, 40, 3), (4, 2, 16, 7), (2, 1, 12, 0)]
    {
        let shape = heads_of(heads, kv_heads, hd);
        let nodes = 40;
        let rows = 32;
        let tk = values(nodes * kv_heads * hd, 6);
        let tv = values(nodes * kv_heads * hd, 7);
        let own = tree_slice(&tk, &tv, nodes, kv_heads, hd);
        let lists: Vec<Vec<u32>> = (0..rows)
            .map(|r| {
                (0..=(r % 19))
                    .map(|i| ((r * 7 + i * 3) % nodes) as u32)
                    .collect()
            })
            .collect();
        let pk = values(kv_heads * pre_len * hd, 8);
        let pv = values(kv_heads * pre_len * hd, 9);
        let prefix = (pre_len > 0).then(|| cache_slice(&pk, &pv, pre_len, pre_len, hd));
        let q = values(rows * heads * hd, 10);
        let got = attend(&q, rows, shape, prefix, own, Visible::Listed(&lists))?;
        let seen: Vec<Vec<usize>> = lists
            .iter()
            .map(|l| l.iter().map(|&j| j as usize).collect())
            .collect();
        let want = reference(&q, rows, shape, prefix, own, &seen);
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "{heads}/{kv_heads}x{hd}, prefix {pre_len}: {d}");
    }
    Ok(())
}

/// Every path (a row at a time by query head, by KV head, and rows as lanes where the CPU
/// has AVX-512) against the definition: causal prefills with and without a prefix and
/// earlier own positions, token trees with empty and long lists, query vectors that leave
/// a part-filled group of lanes, one query head per KV head, and head sizes that take the
/// value tiles of 64 and of 16 dims.
#[test]
fn every_path_matches_the_definition() -> Result<()> {
    for &(heads, kv_heads, hd) in &[(9, 3, 64), (4, 4, 16), (6, 2, 80), (8, 1, 32)] {
        let shape = heads_of(heads, kv_heads, hd);
        for &(rows, past, pre_len, tree) in &[
            (13, 0, 0, false),
            (6, 4, 17, false),
            (50, 2, 0, false),
            (21, 0, 30, true),
            (4, 0, 5, true),
        ] {
            let nodes = 9;
            let cap = past + rows + 2;
            let q = values(rows * heads * hd, 30 + rows as u64);
            let pk = values(kv_heads * pre_len * hd, 31);
            let pv = values(kv_heads * pre_len * hd, 32);
            let prefix = (pre_len > 0).then(|| cache_slice(&pk, &pv, pre_len, pre_len, hd));
            let (own_k, own_v) = if tree {
                (values(nodes * kv_heads * hd, 33), values(nodes * kv_heads * hd, 34))
            } else {
                (values(kv_heads * cap * hd, 33), values(kv_heads * cap * hd, 34))
            };
            let own = if tree {
                tree_slice(&own_k, &own_v, nodes, kv_heads, hd)
            } else {
                cache_slice(&own_k, &own_v, past + rows, cap, hd)
            };
            // Row 0 of a tree sees none of its nodes (only the prefix), others up to all.
            let lists: Vec<Vec<u32>> = (0..rows)
                .map(|r| (0..r % (nodes + 1)).map(|i| ((r + i * 4) % nodes) as u32).collect())
                .collect();
            let (visible, seen): (Visible, Vec<Vec<usize>>) = if tree {
                let seen = lists
                    .iter()
                    .map(|l| l.iter().map(|&j| j as usize).collect())
                    .collect();
                (Visible::Listed(&lists), seen)
            } else {
                let seen = (0..rows).map(|r| (0..=past + r).collect()).collect();
                (Visible::Causal { past }, seen)
            };
            let want = reference(&q, rows, shape, prefix, own, &seen);
            for path in [Path::OneHead, Path::Grouped, Path::Blocked] {
                let got = attend_by(&q, rows, shape, prefix, own, visible, path)?;
                let d = max_diff(&got, &want);
                assert!(
                    d < 1e-5,
                    "{path:?} {heads}/{kv_heads}x{hd}, rows {rows}, past {past}, prefix \
                     {pre_len}, tree {tree}: {d}"
                );
            }
        }
    }
    Ok(())
}

/// A value a row does not see never reaches its output, on every path: an infinite value
/// at a causal prefill's last position, and at a token-tree node only one row lists, leave
/// the other rows finite and as the definition gives them.
#[test]
fn values_a_row_does_not_see_never_reach_it() -> Result<()> {
    let (heads, kv_heads, hd) = (9, 3, 64);
    let shape = heads_of(heads, kv_heads, hd);
    let paths = [Path::OneHead, Path::Grouped, Path::Blocked];
    // A causal prefill of 13 rows: the last position's values are infinite.
    let rows = 13;
    let q = values(rows * heads * hd, 40);
    let k = values(kv_heads * rows * hd, 41);
    let mut v = values(kv_heads * rows * hd, 42);
    for g in 0..kv_heads {
        v[(g * rows + rows - 1) * hd] = f32::INFINITY;
    }
    let own = cache_slice(&k, &v, rows, rows, hd);
    let seen: Vec<Vec<usize>> = (0..rows).map(|r| (0..=r).collect()).collect();
    let want = reference(&q, rows, shape, None, own, &seen);
    let earlier = (rows - 1) * heads * hd;
    for path in paths {
        let got = attend_by(&q, rows, shape, None, own, Visible::Causal { past: 0 }, path)?;
        assert!(max_diff(&got[..earlier], &want[..earlier]) < 1e-5, "{path:?}");
        assert!(got[earlier..].iter().any(|x| !x.is_finite()), "{path:?}: the last row");
    }
    // A token tree of 8 nodes after a prefix: node 5, which only row 5 lists, is infinite.
    let (rows, nodes, pre_len) = (8, 8, 20);
    let q = values(rows * heads * hd, 43);
    let tk = values(nodes * kv_heads * hd, 44);
    let mut tv = values(nodes * kv_heads * hd, 45);
    for g in 0..kv_heads {
        tv[(5 * kv_heads + g) * hd + 7] = f32::INFINITY;
    }
    let own = tree_slice(&tk, &tv, nodes, kv_heads, hd);
    let pk = values(kv_heads * pre_len * hd, 46);
    let pv = values(kv_heads * pre_len * hd, 47);
    let prefix = Some(cache_slice(&pk, &pv, pre_len, pre_len, hd));
    let lists: Vec<Vec<u32>> = (0..rows as u32)
        .map(|r| if r == 0 { vec![0] } else { vec![0, r] })
        .collect();
    let seen: Vec<Vec<usize>> = lists
        .iter()
        .map(|l| l.iter().map(|&j| j as usize).collect())
        .collect();
    let want = reference(&q, rows, shape, prefix, own, &seen);
    let row = heads * hd;
    for path in paths {
        let got = attend_by(&q, rows, shape, prefix, own, Visible::Listed(&lists), path)?;
        for r in (0..rows).filter(|&r| r != 5) {
            let (g, w) = (&got[r * row..][..row], &want[r * row..][..row]);
            assert!(max_diff(g, w) < 1e-5, "{path:?}, row {r}");
        }
        assert!(got[5 * row..][..row].iter().any(|x| !x.is_finite()), "{path:?}: row 5");
    }
    Ok(())
}

/// Large scores (a softmax that overflows without its max shift) stay finite and exact.
#[test]
fn large_scores_are_shifted_before_the_exponential() -> Result<()> {
    let shape = heads_of(1, 1, 8);
    let q: Vec<f32> = vec![30.0; 8];
    let k: Vec<f32> = (0..10 * 8).map(|i| (i / 8) as f32).collect();
    let v = values(10 * 8, 11);
    let own = cache_slice(&k, &v, 10, 10, 8);
    let got = attend(&q, 1, shape, None, own, Visible::Causal { past: 9 })?;
    let want = reference(&q, 1, shape, None, own, &[(0..10).collect()]);
    assert!(got.iter().all(|x| x.is_finite()));
    assert!(max_diff(&got, &want) < 1e-5);
    Ok(())
}

/// The tensor entry reads a truncated cache's view (a stride per head longer than its
/// positions) and a tree layer in place, as the copies would give, and declines
/// tensors it cannot read (not f32, heads that do not match), leaving them to candle.
#[test]
fn tensor_entry_reads_views_in_place_and_declines_the_rest() -> Result<()> {
    use candle_core::{DType, Device};
    let shape = heads_of(4, 2, 8);
    let dev = Device::Cpu;
    let t = |n: usize, seed: u64, dims: &[usize]| {
        Tensor::from_vec(values(n, seed), dims.to_vec(), &dev).unwrap()
    };
    // Own cache: 10 positions held, the first 7 kept (a view), 3 rows after 4 cached.
    let k = t(2 * 10 * 8, 20, &[1, 2, 10, 8]).narrow(2, 0, 7)?;
    let v = t(2 * 10 * 8, 21, &[1, 2, 10, 8]).narrow(2, 0, 7)?;
    assert!(!k.is_contiguous());
    let q = t(3 * 4 * 8, 22, &[3, 32]);
    let pre = (
        t(2 * 5 * 8, 23, &[1, 2, 5, 8]),
        t(2 * 5 * 8, 24, &[1, 2, 5, 8]),
    );
    let visible = Visible::Causal { past: 4 };
    let got = attend_tensors(&q, shape, Some(&pre), (&k, &v), KvAxes::Cache, visible)?
        .expect("f32 views are taken");
    let (kc, vc) = (k.contiguous()?, v.contiguous()?);
    let want = attend_tensors(&q, shape, Some(&pre), (&kc, &vc), KvAxes::Cache, visible)?
        .expect("contiguous tensors are taken");
    assert_eq!(got.dims(), &[3, 32]);
    assert_eq!(got.to_vec2::<f32>()?, want.to_vec2::<f32>()?);
    // A tree layer [nodes, kv_heads, head_dim].
    let (tk, tv) = (t(6 * 2 * 8, 25, &[6, 2, 8]), t(6 * 2 * 8, 26, &[6, 2, 8]));
    let lists = vec![vec![0u32, 3], vec![5], vec![1, 2, 4]];
    let tree = attend_tensors(
        &q,
        shape,
        Some(&pre),
        (&tk, &tv),
        KvAxes::Tree,
        Visible::Listed(&lists),
    )?;
    assert_eq!(tree.expect("a tree layer is taken").dims(), &[3, 32]);
    // Declined: f64 keys; a cache of 3 KV heads where the model has 2.
    let (k64, v64) = (kc.to_dtype(DType::F64)?, vc.to_dtype(DType::F64)?);
    assert!(attend_tensors(&q, shape, None, (&k64, &v64), KvAxes::Cache, visible)?.is_none());
    let (k3, v3) = (
        t(3 * 7 * 8, 27, &[1, 3, 7, 8]),
        t(3 * 7 * 8, 28, &[1, 3, 7, 8]),
    );
    assert!(attend_tensors(&q, shape, None, (&k3, &v3), KvAxes::Cache, visible)?.is_none());
    Ok(())
}

/// Bad shapes and positions are refused with what was wrong, never read out of bounds.
#[test]
fn refuses_what_does_not_fit() {
    let shape = heads_of(2, 1, 8);
    let kv = values(4 * 8, 12);
    let own = cache_slice(&kv, &kv, 4, 4, 8);
    let q = values(2 * 2 * 8, 13);
    let err = |r: Result<Vec<f32>>| r.unwrap_err().to_string();
    assert!(
        err(attend(&q, 3, shape, None, own, Visible::Causal { past: 0 })).contains("query values")
    );
    assert!(
        err(attend(&q, 2, shape, None, own, Visible::Causal { past: 3 })).contains("own positions")
    );
    let lists = vec![vec![0u32], vec![4u32]];
    assert!(
        err(attend(&q, 2, shape, None, own, Visible::Listed(&lists))).contains("own position 4")
    );
    let lists = vec![vec![0u32], vec![]];
    assert!(err(attend(&q, 2, shape, None, own, Visible::Listed(&lists))).contains("no key"));
    let overlapping = KvSlice {
        pos_stride: 4,
        ..own
    };
    let visible = Visible::Causal { past: 0 };
    assert!(err(attend(&q, 2, shape, None, overlapping, visible)).contains("overlap"));
    let short = KvSlice { len: 5, ..own };
    assert!(err(attend(
        &q,
        2,
        shape,
        None,
        short,
        Visible::Causal { past: 0 }
    ))
    .contains("too short"));
    let odd = heads_of(3, 2, 8);
    assert!(err(attend(&q, 2, odd, None, own, Visible::Causal { past: 0 })).contains("KV heads"));
}
