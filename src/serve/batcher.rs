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
//! the submissions waiting, and a caller blocks while it is full (backpressure).
//!
//! A caller that holds several queries at once hands them over together
//! ([`Batcher::recommend_many`]): they reach the worker as one submission, so they share
//! their first step whatever the timing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::catalog::{Catalog, CatalogSnapshot};
use crate::decode::{BeamState, BeamStep, Scored, SearchOptions};
use crate::error::{Error, Result};
use crate::history::UserHistory;
use crate::model::{DecodeGroup, Model, TreeKv};
use crate::prompt::Prefilled;
use crate::prompt::PromptCache;
use crate::query::{
    into_result, prefill_prepared, prepare, PreparedQuery, QueryOptions, QueryResult,
};

/// How a [`Batcher`] batches. `BatcherConfig::default()` and the `with_*` setters build
/// one; [`BatcherConfig::validate`] bounds each field.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct BatcherConfig {
    /// Most queries decoded in one step (default 16).
    pub max_batch: usize,
    /// How long an idle worker waits for more queries before its first step (default
    /// 2 ms; 0 never waits).
    pub max_wait: Duration,
    /// Submissions (one query, or the queries of one [`Batcher::recommend_many`]) waiting
    /// for the worker before callers block (default 64).
    pub queue: usize,
}

setters!(BatcherConfig {
    with_max_batch => max_batch: usize,
    with_max_wait => max_wait: Duration,
    with_queue => queue: usize,
});

/// The longest `max_wait` allowed. A wait is latency added to a lone query; beyond a
/// second it is a misconfiguration (a wait of `u64::MAX` microseconds would never end).
pub const MAX_BATCH_WAIT: Duration = Duration::from_secs(1);
/// The most queries one pass may decode: the pass's rows (beams x queries) are allocated
/// up front, and 1,024 queries of 20 beams are already far past any speed-up.
pub const MAX_BATCH_QUERIES: usize = 1024;

impl BatcherConfig {
    /// Fails, naming the field, when a value is out of range.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch == 0 || self.max_batch > MAX_BATCH_QUERIES {
            return Err(Error::invalid(format!(
                "batcher: max_batch must be within 1..={MAX_BATCH_QUERIES}, not {}",
                self.max_batch
            )));
        }
        if self.queue == 0 || self.queue > 1 << 20 {
            return Err(Error::invalid(format!(
                "batcher: queue must be within 1..={}, not {}",
                1 << 20,
                self.queue
            )));
        }
        if self.max_wait > MAX_BATCH_WAIT {
            return Err(Error::invalid(format!(
                "batcher: max_wait must be at most {} us, not {} us",
                MAX_BATCH_WAIT.as_micros(),
                self.max_wait.as_micros()
            )));
        }
        Ok(())
    }
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

/// Where the worker's answer to one query arrives.
type Answer = Receiver<Result<Vec<Scored>>>;

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
    jobs: Option<Sender<Vec<Job>>>,
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
#[non_exhaustive]
pub struct BatcherStats {
    /// Forward passes run, one decode step each.
    pub steps: usize,
    /// Query-steps those passes served (their queries summed): over `steps`, the mean batch.
    pub query_steps: usize,
    /// The most queries one pass served.
    pub widest_batch: usize,
}

impl Batcher {
    /// Starts the worker thread for `catalog`. Fails, naming the field, on a bad `config`,
    /// or when the thread cannot start.
    pub fn new(catalog: Arc<Catalog>, config: BatcherConfig) -> Result<Self> {
        config.validate()?;
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

    /// What the worker has done so far.
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

    /// Several queries at once, decoded together: they reach the worker as one submission
    /// and share every step while they last (up to `max_batch` at a time). Each answer is
    /// that of [`crate::recommend`] for its query, in the input's order; one query's error
    /// does not fail the others.
    pub fn recommend_many(
        &self,
        queries: &[(&UserHistory, &QueryOptions)],
    ) -> Vec<Result<QueryResult>> {
        let mut answers: Vec<Option<Result<QueryResult>>> = Vec::with_capacity(queries.len());
        let mut waiting = Vec::new();
        let mut jobs = Vec::new();
        for (i, (user, opts)) in queries.iter().enumerate() {
            match self.job(user, None, opts) {
                Ok((q, job, answer)) => {
                    jobs.push(job);
                    waiting.push((i, q, answer));
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        if self.submit(jobs).is_err() {
            for (i, _, _) in waiting.drain(..) {
                answers[i] = Some(Err(worker_gone()));
            }
        }
        for (i, q, answer) in waiting {
            answers[i] = Some(Self::receive(&q, &answer));
        }
        answers
            .into_iter()
            .map(|a| a.expect("every query answered"))
            .collect()
    }

    fn run(
        &self,
        user: &UserHistory,
        cache: Option<&mut PromptCache>,
        opts: &QueryOptions,
    ) -> Result<QueryResult> {
        let (q, job, answer) = self.job(user, cache, opts)?;
        self.submit(vec![job])?;
        Self::receive(&q, &answer)
    }

    /// Prepares and prefills a query on the caller's thread; the worker only decodes.
    fn job(
        &self,
        user: &UserHistory,
        cache: Option<&mut PromptCache>,
        opts: &QueryOptions,
    ) -> Result<(PreparedQuery, Job, Answer)> {
        let q = prepare(&self.catalog, user, opts)?;
        let prefilled = prefill_prepared(&self.catalog, &q, cache)?;
        let (reply, answer) = bounded(1);
        let job = Job {
            snap: q.snap.clone(),
            prefilled,
            search: q.search.clone(),
            reply,
        };
        Ok((q, job, answer))
    }

    fn submit(&self, jobs: Vec<Job>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let sender = self.jobs.as_ref().ok_or_else(worker_gone)?;
        sender.send(jobs).map_err(|_| worker_gone())
    }

    fn receive(q: &PreparedQuery, answer: &Answer) -> Result<QueryResult> {
        let ranked = answer.recv().map_err(|_| worker_gone())??;
        Ok(into_result(q, ranked))
    }
}

fn worker_gone() -> Error {
    Error::invalid("batcher: the worker has stopped")
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

/// One search in the worker: its state, its token tree, the pass it waits for.
struct Active {
    job: Job,
    state: BeamState,
    tree: TreeKv,
    next: BeamStep,
}

fn run_worker(model: &Model, jobs: &Receiver<Vec<Job>>, config: BatcherConfig, stats: &Stats) {
    let mut active: Vec<Active> = Vec::new();
    // Queries received but not yet admitted: a submission may hold more than `max_batch`.
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        // Idle: block for the next submission, then give others `max_wait` to join it.
        if active.is_empty() && pending.is_empty() {
            let Ok(first) = jobs.recv() else {
                return; // closed and drained
            };
            pending.extend(first);
            let deadline = Instant::now() + config.max_wait;
            while pending.len() < config.max_batch {
                match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(more) => pending.extend(more),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        // Busy: whoever arrived meanwhile joins this step.
        while pending.len() < config.max_batch {
            match jobs.try_recv() {
                Ok(more) => pending.extend(more),
                Err(_) => break,
            }
        }
        while active.len() < config.max_batch {
            let Some(job) = pending.pop_front() else {
                break;
            };
            admit(model, job, &mut active);
        }
        let queries = active.len();
        if queries == 0 {
            continue; // every query admitted was answered without a pass
        }
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

fn admit(model: &Model, job: Job, active: &mut Vec<Active>) {
    let started = BeamState::new(model, &job.snap, &job.search).and_then(|mut state| {
        let next = state.start(&job.snap, &job.prefilled.logp)?;
        Ok((state, next))
    });
    match started {
        Ok((state, Some(next))) => active.push(Active {
            tree: model.llama().new_tree(),
            job,
            state,
            next,
        }),
        // Nothing to decode (e.g. everything excluded): answered at once.
        Ok((state, None)) => {
            let _ = job.reply.send(Ok(state.into_results()));
        }
        Err(e) => {
            let _ = job.reply.send(Err(e));
        }
    }
}

/// Runs every active search's next pass in one forward pass; answers the finished.
fn step(model: &Model, active: &mut Vec<Active>) -> Result<()> {
    if active.is_empty() {
        return Ok(());
    }
    let llama = model.llama();
    let tokens: Vec<u32> = active
        .iter()
        .flat_map(|a| a.next.tokens.iter().copied())
        .collect();
    let embeds = llama.embed_ids(&tokens)?.unsqueeze(1)?;
    let mut groups: Vec<DecodeGroup> = active
        .iter_mut()
        .map(|a| DecodeGroup {
            prefix: &a.job.prefilled.cache,
            tree: &mut a.tree,
            contexts: &a.next.contexts,
        })
        .collect();
    let hidden = llama.forward_groups(&embeds, &mut groups)?;
    let wanted: Vec<Vec<u32>> = active
        .iter()
        .flat_map(|a| a.next.wanted.iter().cloned())
        .collect();
    let mut logp = llama.log_probs_of(&hidden, &wanted)?.into_iter();
    let outcomes: Vec<Result<Option<BeamStep>>> = active
        .iter_mut()
        .map(|a| {
            let rows: Vec<Vec<f32>> = logp.by_ref().take(a.next.rows()).collect();
            a.state.advance(&a.job.snap, rows)
        })
        .collect();
    for (mut a, outcome) in std::mem::take(active).into_iter().zip(outcomes) {
        match outcome {
            Ok(Some(next)) => {
                a.next = next;
                active.push(a);
            }
            Ok(None) => {
                let _ = a.job.reply.send(Ok(a.state.into_results()));
            }
            Err(e) => {
                let _ = a.job.reply.send(Err(e));
            }
        }
    }
    Ok(())
}
