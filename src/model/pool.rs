//! Running a whole forward pass on the thread pool rather than handing each product to it.
//!
//! Why: every product, norm and softmax of a pass splits its work with rayon. Called from a
//! thread outside rayon's pool (the caller's, or the batching worker), each of those calls
//! injects a job, wakes a pool thread and puts the caller to sleep on a futex until the
//! job is done: two context switches per call, and a decode pass makes ~200 calls (30
//! layers x 7 products, norms, the head). On this project's 2-core VMs a hand-off measured
//! 25-100 us, and `perf` put ~8 % of a query in futex calls and 3 % in `sched_yield`. Run
//! from a pool thread instead, a call keeps one half of its work and the other pool
//! thread, still spinning from the previous call, steals the other half: a decode pass
//! became ~10 % faster (docs/PERFORMANCE.md, "Kernels"). The caller blocks once per pass instead.

/// Runs `f` on a thread of rayon's global pool (at once, when already on one) and returns
/// its result.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}
