package io.github.patchrec;

import static io.github.patchrec.LibPatchrec.*;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import com.sun.jna.StringArray;
import com.sun.jna.ptr.PointerByReference;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;

/**
 * The items a model may recommend, each title tokenised and compressed into an item patch
 * once, at registration. Thread-safe, registrations included: a query sees the catalogue
 * as it was when the query started. It keeps its model's weights alive, so it may outlive
 * the {@link Model}.
 */
public final class Catalog extends NativeHandle {
    /**
     * As {@link #kvBudget}'s {@code bytes}, lifts the bound; as {@link KvStats#capacity()},
     * says that none is set. It is C's {@code SIZE_MAX} read as a signed {@code long}.
     */
    public static final long NO_KV_BUDGET = -1L;

    /** An empty catalogue for {@code model}. */
    public Catalog(Model model) {
        super(newCatalog(model), LibPatchrec::patchrec_catalog_free);
    }

    private static Pointer newCatalog(Model model) {
        return model.withPointer(handle -> {
            PointerByReference catalog = new PointerByReference();
            check(error -> patchrec_catalog_new(handle, catalog, error));
            return catalog.getValue();
        });
    }

    /**
     * Registers one item; its title is stored trimmed. A registered id is
     * {@link Status#DUPLICATE_ITEM}. A title is {@link Status#INVALID_ARGUMENT} when it is
     * longer than 4,096 bytes or than a sixteenth of the model's context in tokens (at most
     * 512), holds a control character or the prompt's special tokens, or has no visible
     * character. On failure the catalogue is unchanged.
     */
    public void add(long id, String title) {
        byte[] text = cString("title", title);
        call((catalog, error) -> patchrec_catalog_add(catalog, id, text, error));
    }

    /**
     * Registers {@code items} all or nothing, each refused as {@link #add} would refuse it;
     * faster than {@link #add} for each.
     */
    public void addAll(List<Item> items) {
        long[] ids = new long[items.size()];
        String[] titles = new String[items.size()];
        for (int i = 0; i < ids.length; i++) {
            // Checked here, as StringArray would encode a NUL or an unpaired surrogate silently.
            cString("titles[" + i + "]", items.get(i).title());
            ids[i] = items.get(i).id();
            titles[i] = items.get(i).title();
        }
        StringArray cTitles = new StringArray(titles, "UTF-8");
        call((catalog, error) -> patchrec_catalog_add_batch(catalog, ids, cTitles, ids.length, error));
    }

    /**
     * Makes concurrent {@link #recommend} calls on this catalogue share decoding: each caller still
     * builds and prefills its own prompt, then one worker advances every waiting query's beams in
     * one forward pass per step. {@code maxBatch} is the most queries per pass (0 turns batching
     * off); an idle worker waits up to {@code maxWait} for more queries before its first step.
     * Results equal unbatched ones to float rounding. A {@code maxBatch} above 1,024, or a
     * negative {@code maxWait} or one above a second, is {@link Status#INVALID_ARGUMENT},
     * and the batching in force is unchanged.
     */
    public void batching(int maxBatch, Duration maxWait) {
        if (maxBatch < 0 || maxWait.isNegative()) {
            throw new PatchrecException(
                    Status.INVALID_ARGUMENT, "batching(" + maxBatch + ", " + maxWait + "): negative");
        }
        // toNanos() overflows past 292 years; any wait that long is refused all the same.
        long micros = maxWait.getSeconds() > 1_000_000 ? Long.MAX_VALUE : maxWait.toNanos() / 1000;
        call((catalog, error) -> patchrec_catalog_set_batching(catalog, maxBatch, micros, error));
    }

    /**
     * Removes the items {@code ids}, all or nothing: an id that is not registered (or is
     * given twice) is {@link Status#UNKNOWN_ITEM} naming it, and the catalogue is unchanged.
     * A removed item is never recommended or ranked, and appending it to a history is
     * {@link Status#UNKNOWN_ITEM}; a history that already holds it still works, showing its
     * last title, which {@link #title} still returns. Queries already running keep the
     * catalogue they started with. A removed id may be registered again. No ids is no
     * change.
     */
    public void remove(long... ids) {
        requireNonNull("ids", ids);
        call((catalog, error) -> patchrec_catalog_remove(catalog, ids, ids.length, error));
    }

    /**
     * Changes the title of registered item {@code id} ({@link Status#UNKNOWN_ITEM}
     * otherwise, a removed item included); the title is refused as {@link #add} would refuse
     * it. From then on the item is recommended, ranked and shown in histories with the new
     * title; queries already running keep the old one. On failure the catalogue is
     * unchanged.
     */
    public void setTitle(long id, String title) {
        byte[] text = cString("title", title);
        call((catalog, error) -> patchrec_catalog_set_title(catalog, id, text, error));
    }

    /**
     * Bounds the bytes of prompt KV that the users queried against this catalogue hold
     * together (each {@link User} keeps its last prompt's KV, so that the next query
     * prefills only what changed): beyond {@code bytes}, the least recently used users' KV
     * is dropped. An evicted user keeps its history, and its next query prefills its whole
     * prompt, with the same answer. {@link #NO_KV_BUDGET} lifts the bound; lowering it
     * evicts at once. Any other negative {@code bytes} is {@link Status#INVALID_ARGUMENT}.
     */
    public void kvBudget(long bytes) {
        long n = bytes == NO_KV_BUDGET ? NO_KV_BUDGET : cSize("bytes", bytes);
        call((catalog, error) -> patchrec_catalog_set_kv_budget(catalog, n, error));
    }

    /**
     * Sets how the catalogue keeps its items' patches; the items registered so far are
     * converted once, and queries already running keep the catalogue they started with.
     */
    public void patchStorage(PatchStorage storage) {
        java.util.Objects.requireNonNull(storage, "storage");
        call((catalog, error) -> patchrec_catalog_set_patch_storage(catalog, storage.value, error));
    }

    /**
     * The KV budget's figures: the budget, what the users hold now, and the hits, misses
     * and evictions counted since it was set; without a budget, {@link #NO_KV_BUDGET} and
     * nothing counted.
     */
    public KvStats kvStats() {
        return withPointer(catalog -> {
            Memory out = new Memory(KV_STATS_SIZE);
            check(error -> patchrec_catalog_kv_stats(catalog, out, error));
            return new KvStats(
                    out.getLong(KV_STATS_CAPACITY_OFFSET),
                    out.getLong(KV_STATS_BYTES_HELD_OFFSET),
                    out.getLong(KV_STATS_USERS_HELD_OFFSET),
                    out.getLong(KV_STATS_HITS_OFFSET),
                    out.getLong(KV_STATS_MISSES_OFFSET),
                    out.getLong(KV_STATS_EVICTIONS_OFFSET));
        });
    }

    /** The number of items that can be recommended (registered, not removed). */
    public int size() {
        return withPointer(catalog -> (int) patchrec_catalog_len(catalog));
    }

    /**
     * The title of item {@code id}; an unregistered id is {@link Status#UNKNOWN_ITEM}. A
     * removed item's is its last title.
     */
    public String title(long id) {
        return withPointer(catalog -> {
            long[] length = new long[1];
            // With no room the library only reports the length. Any other failure, such
            // as an unknown id, recurs in the next call, which reports it. A title changed
            // in between (setTitle) may be longer, so read again until it fits.
            patchrec_catalog_title(catalog, id, null, 0, length, null);
            for (;;) {
                byte[] buffer = new byte[(int) length[0] + 1];
                PointerByReference error = new PointerByReference();
                int status = patchrec_catalog_title(catalog, id, buffer, buffer.length, length, error);
                if (status == Status.BUFFER_TOO_SMALL.code() && length[0] + 1 > buffer.length) {
                    patchrec_error_free(error.getValue());
                    continue;
                }
                if (status != OK) {
                    throw takeError(status, error.getValue());
                }
                return new String(buffer, 0, (int) length[0], StandardCharsets.UTF_8);
            }
        });
    }

    /** {@link #recommend(User, QueryOptions)} with the default options. */
    public List<Recommendation> recommend(User user) {
        return recommend(user, null);
    }

    /**
     * The next items for {@code user}, best first: k of them (see {@link QueryOptions#k}),
     * fewer only when the catalogue, less any excluded history, is smaller.
     * {@code options} may be null for the defaults. The call needs exclusive use of
     * {@code user}; the catalogue and the options may serve other queries at the same
     * time. An empty catalogue is {@link Status#INVALID_ARGUMENT}; a history item missing
     * from the catalogue {@link Status#UNKNOWN_ITEM}.
     */
    public List<Recommendation> recommend(User user, QueryOptions options) {
        return withPointer(catalog -> user.withPointer(userHandle -> options == null
                ? recommend(catalog, userHandle, null)
                : options.withPointer(optionsHandle -> recommend(catalog, userHandle, optionsHandle))));
    }

    private static List<Recommendation> recommend(Pointer catalog, Pointer user, Pointer options) {
        long[] length = new long[1];
        // With no room the library only reports how many items the answer can hold (k, or
        // the catalogue's size when smaller), before any work. Any other failure recurs in
        // the second call, which reports it.
        patchrec_recommend(catalog, user, options, null, 0, length, null);
        long k = length[0];
        Memory out = recommendationArray(k);
        check(error -> patchrec_recommend(catalog, user, options, out, k, length, error));
        return recommendations(out, length[0]);
    }

    /** {@link #rank(User, long[], QueryOptions, RankOrder, UnknownCandidates)} with the default options, best first. */
    public List<Recommendation> rank(User user, long[] candidates) {
        return rank(user, candidates, null, RankOrder.SCORE, UnknownCandidates.FAIL);
    }

    /** {@link #rank(User, long[], QueryOptions, RankOrder, UnknownCandidates)} best first. */
    public List<Recommendation> rank(User user, long[] candidates, QueryOptions options) {
        return rank(user, candidates, options, RankOrder.SCORE, UnknownCandidates.FAIL);
    }

    /**
     * Scores {@code candidates}, item ids that retrieval found, for {@code user}: each one's
     * score is the log-probability of its title given the user's prompt, as
     * {@link #recommend} scores the items it returns, so the two answers are on one scale.
     * The answer holds one entry per distinct candidate, in {@code order}: best first, or
     * the candidates' order with a duplicated id at its first occurrence; no candidates give
     * an empty answer. An id the catalogue does not hold is {@link Status#UNKNOWN_ITEM}
     * naming it, or with {@link UnknownCandidates#SKIP} is left out. {@code options} (null
     * for the defaults) gives the prompt: its layout, history truncation and session gap
     * apply as in {@link #recommend}, so with the same options both see the same prompt;
     * its k, beam width, exclusions, exactness and allow- and deny-lists do not. As for {@link #recommend}, the
     * call needs exclusive use of {@code user}, whose prompt's KV the two share; the
     * catalogue and the options may serve other calls at the same time. A history item
     * missing from the catalogue is {@link Status#UNKNOWN_ITEM}; a null argument other
     * than {@code options} is {@link Status#NULL_ARGUMENT}.
     */
    public List<Recommendation> rank(
            User user, long[] candidates, QueryOptions options, RankOrder order, UnknownCandidates unknown) {
        requireNonNull("user", user);
        requireNonNull("candidates", candidates);
        requireNonNull("order", order);
        requireNonNull("unknown", unknown);
        int flags = order.flag | unknown.flag;
        return withPointer(catalog -> user.withPointer(userHandle -> options == null
                ? rank(catalog, userHandle, null, candidates, flags)
                : options.withPointer(optionsHandle -> rank(catalog, userHandle, optionsHandle, candidates, flags))));
    }

    private static List<Recommendation> rank(
            Pointer catalog, Pointer user, Pointer options, long[] candidates, int flags) {
        long[] length = new long[1];
        // One entry per distinct candidate at most, so room for all of them is enough.
        long n = candidates.length;
        Memory out = recommendationArray(n);
        check(error -> patchrec_rank(catalog, user, options, candidates, n, flags, out, n, length, error));
        return recommendations(out, length[0]);
    }

    /** Room for {@code n} {@code patchrec_recommendation_t}s, null (which C takes) for none. */
    private static Memory recommendationArray(long n) {
        return n == 0 ? null : new Memory(n * RECOMMENDATION_SIZE);
    }

    /** The first {@code n} recommendations in {@code out}. */
    private static List<Recommendation> recommendations(Memory out, long n) {
        Recommendation[] items = new Recommendation[(int) n];
        for (int i = 0; i < items.length; i++) {
            long offset = (long) i * RECOMMENDATION_SIZE;
            items[i] = new Recommendation(out.getLong(offset), out.getFloat(offset + RECOMMENDATION_SCORE_OFFSET));
        }
        return List.of(items);
    }

    /**
     * How {@code user}'s history would be laid out for a query with {@code options} (null
     * for the defaults), without running the model. It only reads {@code user}.
     */
    public LayoutStats layoutStats(User user, QueryOptions options) {
        return withPointer(catalog -> user.withPointer(userHandle -> options == null
                ? layoutStats(catalog, userHandle, null)
                : options.withPointer(optionsHandle -> layoutStats(catalog, userHandle, optionsHandle))));
    }

    private static LayoutStats layoutStats(Pointer catalog, Pointer user, Pointer options) {
        long[] promptLength = new long[1];
        double[] ratio = new double[1];
        check(error -> patchrec_user_layout_stats(user, catalog, options, promptLength, ratio, error));
        return new LayoutStats(promptLength[0], ratio[0]);
    }
}
