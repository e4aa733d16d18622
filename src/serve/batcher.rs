//! Concurrent queries batched into one forward pass per decode step.
//!
//! Callers build their prompt and prefill it on their own thread (through their user's
//! cache, if they keep one), then hand the decoding to one worker thread per catalogue
//! over a bounded crossbeam channel. The worker advances every active search by one step
//! per forward pass ([`Llama::forward_groups`]): all queries' beams share one pass through
//! the weights, attention runs per query against its own prompt. Searches join at any
//! step and leave when their top k are final (continuous batching), so a short query
//! never waits for a long one to finish.
//!
//! The knob: `max_wait`. An idle worker that receives a query waits up to `max_wait` for
//! more before its first step, trading that much latency for fuller batches; a busy worker
//! never waits. `max_batch` bounds the queries per step (and so memory); `queue` bounds
//! the queries waiting, and a caller blocks while it is full (backpressure).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::catalog::{Catalog, CatalogSnapshot};
use crate::decode::logprobs::log_softmax_rows;
use crate::decode::{BeamState, Prefilled, Scored, SearchOptions};
use crate::error::{Error, Result};
use crate::history::UserHistory;
use crate::model::{DecodeGroup, KvCache, Model};
use crate::prompt::PromptCache;
use crate::query::{into_result, prefill_prepared, prepare, QueryOptions, QueryResult};

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    /// Most queries decoded in one step (default 16).
    pub max_batch: usize,
    /// How long an idle worker waits for more queries before its first step (default
    /// 2 ms; 0 never waits).
    pub max_wait: Duration,
    /// Queries waiting for the worker before callers block (default 64).
    pub queue: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_batch: 16,
            max_wait: Duration::from_millis(2),
            queue: 64,
        }
    }
}

struct Job {
    snap: Arc<CatalogSnapshot>,
    prefilled: Prefilled,
    search: SearchOptions,
    reply: Sender<Result<Vec<Scored>>>,
}

/// A worker thread decoding the queries of one catalogue in batches. Dropping it finishes
/// the queries already submitted and joins the thread.
pub struct Batcher {
    catalog: Arc<Catalog>,
    jobs: Option<Sender<Job>>,
    worker: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
}

/// What the worker has done so far.
#[derive(Default)]
struct Stats {
    steps: AtomicUsize,
    rows: AtomicUsize,
    widest: AtomicUsize,
}

/// [`Batcher::stats`]: forward passes run, query-steps they served, and the most queries
/// one pass served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherStats {
    pub steps: usize,
    pub query_steps: usize,
    pub widest_batch: usize,
}

impl Batcher {
    pub fn new(catalog: Arc<Catalog>, config: BatcherConfig) -> Result<Self> {
        if config.max_batch == 0 || config.queue == 0 {
            return Err(Error::invalid(
                "batcher: max_batch and queue must be at least 1",
            ));
        }
        let (tx, rx) = bounded(config.queue);
        let model = catalog.model().clone();
        let stats = Arc::new(Stats::default());
        let worker_stats = stats.clone();
        let worker = std::thread::Builder::new()
            .name("patchrec-batcher".into())
            .spawn(move || run_worker(&model, &rx, config, &worker_stats))
            .map_err(|e| Error::invalid(format!("batcher: cannot start its thread: {e}")))?;
        Ok(Batcher {
            catalog,
            jobs: Some(tx),
            worker: Some(worker),
            stats,
        })
    }

    pub fn stats(&self) -> BatcherStats {
        BatcherStats {
            steps: self.stats.steps.load(Ordering::Relaxed),
            query_steps: self.stats.rows.load(Ordering::Relaxed),
            widest_batch: self.stats.widest.load(Ordering::Relaxed),
        }
    }

    /// [`crate::recommend`], decoded by the worker together with concurrent queries.
    pub fn recommend(&self, user: &UserHistory, opts: &QueryOptions) -> Result<QueryResult> {
        self.run(user, None, opts)
    }

    /// [`crate::recommend_cached`], decoded by the worker together with concurrent queries.
    pub fn recommend_cached(
        &self,
        user: &UserHistory,
        cache: &mut PromptCache,
        opts: &QueryOptions,
    ) -> Result<QueryResult> {
        self.run(user, Some(cache), opts)
    }

    fn run(
        &self,
        user: &UserHistory,
        cache: Option<&mut PromptCache>,
        opts: &QueryOptions,
    ) -> Result<QueryResult> {
        let q = prepare(&self.catalog, user, opts)?;
        let prefilled = prefill_prepared(&self.catalog, &q, cache)?;
        let (reply, answer) = bounded(1);
        let job = Job {
            snap: q.snap.clone(),
            prefilled,
            search: q.search.clone(),
            reply,
        };
        let gone = || Error::invalid("batcher: the worker has stopped");
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        let ranked = answer.recv().map_err(|_| gone())??;
        Ok(into_result(&q, ranked))
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // Closing the channel lets the worker finish what it holds and return.
        self.jobs.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// One search in the worker: its state, its beams' cache, the last log-probabilities.
struct Active {
    job: Job,
    state: BeamState,
    beams: KvCache,
    logp: Vec<Vec<f32>>,
}

fn run_worker(model: &Model, jobs: &Receiver<Job>, config: BatcherConfig, stats: &Stats) {
    let mut active: Vec<Active> = Vec::new();
    loop {
        // Idle: block for the next query, then give others `max_wait` to join it.
        if active.is_empty() {
            let Ok(job) = jobs.recv() else {
                return; // closed and drained
            };
            admit(model, job, &mut active);
            let deadline = Instant::now() + config.max_wait;
            while active.len() < config.max_batch {
                match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => admit(model, job, &mut active),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        // Busy: whoever arrived meanwhile joins this step.
        while active.len() < config.max_batch {
            match jobs.try_recv() {
                Ok(job) => admit(model, job, &mut active),
                Err(_) => break,
            }
        }
        let queries = active.len();
        if let Err(e) = step(model, &mut active) {
            // A failed pass fails every query in it; the worker goes on with new ones.
            for a in active.drain(..) {
                let _ = a
                    .job
                    .reply
                    .send(Err(Error::invalid(format!("batched decoding: {e}"))));
            }
        }
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.rows.fetch_add(queries, Ordering::Relaxed);
        stats.widest.fetch_max(queries, Ordering::Relaxed);
    }
}

fn admit(model: &Model, mut job: Job, active: &mut Vec<Active>) {
    match BeamState::new(model, &job.snap, &job.search) {
        Ok(state) => active.push(Active {
            // Only the prompt's KV is read from here on; its first log-probabilities move.
            logp: vec![std::mem::take(&mut job.prefilled.logp)],
            beams: model.llama().new_cache(),
            job,
            state,
        }),
        Err(e) => {
            let _ = job.reply.send(Err(e));
        }
    }
}

/// Advances every active search by one step in one forward pass; answers the finished.
fn step(model: &Model, active: &mut Vec<Active>) -> Result<()> {
    let llama = model.llama();
    let mut tokens: Vec<u32> = Vec::new();
    let mut rows: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < active.len() {
        let a = &mut active[i];
        match a.state.advance(&a.job.snap, &a.logp) {
            Some(next) => {
                next.reorder(&mut a.beams, llama)?;
                tokens.extend_from_slice(&next.tokens);
                rows.push(next.tokens.len());
                i += 1;
            }
            None => {
                let done = active.swap_remove(i);
                let _ = done.job.reply.send(Ok(done.state.into_results()));
            }
        }
    }
    if active.is_empty() {
        return Ok(());
    }
    let embeds = llama.embed_ids(&tokens)?.unsqueeze(1)?;
    let mut groups: Vec<DecodeGroup> = active
        .iter_mut()
        .zip(&rows)
        .map(|(a, &rows)| DecodeGroup {
            prefix: &a.job.prefilled.cache,
            cache: &mut a.beams,
            rows,
        })
        .collect();
    let hidden = llama.forward_groups(&embeds, &mut groups)?;
    let mut logp = log_softmax_rows(&llama.logits(&hidden)?)?.into_iter();
    for (a, &n) in active.iter_mut().zip(&rows) {
        a.logp = logp.by_ref().take(n).collect();
    }
    Ok(())
}
