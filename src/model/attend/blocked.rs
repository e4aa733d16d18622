//! Attention of many query rows at once. Per KV head, the query vectors of its query heads
//! over the rows (row `r`'s heads, then row `r + 1`'s) are taken sixteen at a time as the
//! lanes of one vector (`avx512.rs`). A group of lanes scores every key that any of its
//! rows sees (the prefix, then its own positions: a causal prefill's first `past + r + 1`,
//! or the union of a token tree's lists), each key with the mask of the lanes that see it,
//! takes the softmax down the lanes and weighs the values.
//!
//! Why: row at a time (`kernels.rs`) every score is a dot product summed across lanes, and
//! each key and value is read once per row; attention ran at 60-75 GFLOP/s where the FMA
//! rate is 228-231, and took a fifth of a 1,000-item query (docs/PERFORMANCE.md, "Fused
//! attention"). Here each key element is broadcast once per sixteen query vectors, with
//! no sums across lanes, and each value row is loaded once per six. A group's rows are
//! consecutive (5-6 rows at 3 query heads per KV head), so they see nearly the same keys:
//! the keys a lane does not see cost little.

use rayon::prelude::*;

use super::avx512::{self, LANES};
use super::{Job, Visible, PARALLEL_WORK};

/// Fewest query vectors per KV head for the lanes: below, most of a group's would idle.
const MIN_QUERIES: usize = 12;

/// Every lane of a group.
const ALL: u16 = u16::MAX;

/// Whether [`attend`] takes `rows` of `job`: head sizes in whole vectors, enough query
/// vectors, and a CPU with AVX-512.
pub(super) fn takes(job: &Job, rows: usize) -> bool {
    let (_, rep, hd) = job.shape.per_kv();
    hd.is_multiple_of(LANES) && rows * rep >= MIN_QUERIES
        && avx512::available()
}

/// [`super::attend`] for `rows` of `job`, which [`takes`] accepted (already checked).
pub(super) fn attend(job: &Job, rows: usize) -> Vec<f32> {
    let (heads, rep, hd) = job.shape.per_kv();
    let queries = rows * rep;
    let tasks: Vec<(usize, usize)> = (0..job.shape.kv_heads)
        .flat_map(|g| (0..queries).step_by(LANES).map(move |first| (g, first)))
        .collect();
    let keys = job.prefix.map_or(0, |p| p.len) + job.own.len;
    let parallel =
        rows * heads * keys * hd * 4 >= PARALLEL_WORK && rayon::current_num_threads() > 1;
    let run = |&(g, first): &(usize, usize)| lanes(job, queries, g, first);
    let done: Vec<Vec<f32>> = if parallel {
        tasks.par_iter().map(run).collect()
    } else {
        tasks.iter().map(run).collect()
    };
    let mut out = vec![0f32; rows * heads * hd];
    for (&(g, first), group) in tasks.iter().zip(&done) {
        for (q, src) in group.chunks_exact(hd).take(queries - first).enumerate() {
            let t = first + q;
            let at = (t / rep) * heads + g * rep + t % rep;
            out[at * hd..][..hd].copy_from_slice(src);
        }
    }
    out
}

/// Query vectors `first..first + 16` (of `queries`) of KV head `g`: their attention
/// outputs, `[16, head_dim]` (unused lanes as they fall).
fn lanes(job: &Job, queries: usize, g: usize, first: usize) -> Vec<f32> {
    let (heads, rep, hd) = job.shape.per_kv();
    let count = (queries - first).min(LANES);
    let row = |q: usize| (first + q) / rep;
    // The queries by dimension, scaled by 1/√head_dim (unused lanes zero).
    let mut qt = vec![0f32; hd * LANES];
    for q in 0..count {
        let at = row(q) * heads + g * rep + (first + q) % rep;
        for (d, &x) in job.q[at * hd..][..hd].iter().enumerate() {
            qt[d * LANES + q] = x * job.scale;
        }
    }
    // Unused lanes see every key, so that none is left without one.
    let used = if count == LANES { ALL } else { (1 << count) - 1 };
    let unused = !used;
    // Each key and value scored (row `j` of the cache: head `g`, position `j`), and the
    // lanes that see it.
    let (mut keys, mut values, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    let mut push = |s: &super::KvSlice, j: usize, lanes: u16| {
        let at = g * s.head_stride + j * s.pos_stride;
        keys.push(s.k[at..][..hd].as_ptr());
        values.push(s.v[at..][..hd].as_ptr());
        seen.push(lanes);
    };
    if let Some(p) = &job.prefix {
        (0..p.len).for_each(|j| push(p, j, ALL));
    }
    match job.visible {
        Visible::Causal { past } => {
            // Lane `q` sees own positions up to `past + row(q)`; rows rise with the lanes.
            for j in 0..past + row(count - 1) + 1 {
                let first_seeing = (0..count).find(|&q| past + row(q) >= j).unwrap_or(count);
                let from = ALL.checked_shl(first_seeing as u32).unwrap_or(0);
                push(&job.own, j, (from & used) | unused);
            }
        }
        Visible::Listed(lists) => {
            let mut union: Vec<u32> = (row(0)..=row(count - 1))
                .flat_map(|r| lists[r].iter().copied())
                .collect();
            union.sort_unstable();
            union.dedup();
            let mut seeing = vec![unused; union.len()];
            for q in 0..count {
                for j in &lists[row(q)] {
                    if let Ok(i) = union.binary_search(j) {
                        seeing[i] |= 1 << q;
                    }
                }
            }
            for (&j, &l) in union.iter().zip(&seeing) {
                push(&job.own, j as usize, l);
            }
        }
    }
    let mut st = vec![0f32; keys.len() * LANES];
    let mut out = vec![0f32; LANES * hd];
    // SAFETY: `takes` checked the CPU and that `hd` is a multiple of 16; every key and
    // value pointer is to `hd` values in bounds (sliced above); `qt`, `st` and `out` have
    // the sizes the kernels read and write.
    let sum = unsafe {
        avx512::scores(qt.as_ptr(), hd, &keys, &seen, st.as_mut_ptr());
        let sum = avx512::exp_down_lanes(st.as_mut_ptr(), keys.len());
        avx512::weigh(st.as_ptr(), &values, &seen, hd, out.as_mut_ptr());
        sum
    };
    // `attend` checked that every row sees a key, so every used lane's sum is positive.
    for (o, s) in out.chunks_exact_mut(hd).zip(sum) {
        let inv = 1.0 / s;
        o.iter_mut().for_each(|x| *x *= inv);
    }
    out
}
