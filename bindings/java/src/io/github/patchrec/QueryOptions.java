package io.github.patchrec;

import static io.github.patchrec.LibPatchrec.*;

import com.sun.jna.Pointer;
import java.time.Duration;

/**
 * How to answer a query; the setters chain. New options hold the defaults: k = 10, beam
 * width 20, the checkpoint's layout and history truncation, history items not excluded,
 * no allow- or deny-list.
 *
 * <p>Not thread-safe while being set. Once no thread changes them, any number of
 * concurrent {@link Catalog#recommend} and {@link Catalog#rank} calls may share one
 * {@code QueryOptions}. {@link Catalog#rank} uses only the layout, history truncation and
 * session gap.
 */
public final class QueryOptions extends NativeHandle {
    public QueryOptions() {
        super(newOptions(), LibPatchrec::patchrec_query_options_free);
    }

    private static Pointer newOptions() {
        requireAbi();
        return patchrec_query_options_new();
    }

    /** How many items a query returns, at least 1. */
    public QueryOptions k(int k) {
        long n = cSize("k", k);
        call((options, error) -> patchrec_query_options_set_k(options, n, error));
        return this;
    }

    /** The beam width of the constrained search; a width below k is raised to k. */
    public QueryOptions beamWidth(int beamWidth) {
        long n = cSize("beam_width", beamWidth);
        call((options, error) -> patchrec_query_options_set_beam_width(options, n, error));
        return this;
    }

    /** The layout; {@code param} is M for PFT-I, L (at least 1) for PFT-S, ignored for vanilla. */
    public QueryOptions layout(Layout layout, int param) {
        long n = cSize("param", param);
        call((options, error) -> patchrec_query_options_set_layout(options, layout.code, n, error));
        return this;
    }

    /** The history truncation K: a query shows only the latest {@code maxItems} interactions. */
    public QueryOptions maxItems(int maxItems) {
        long n = cSize("max_items", maxItems);
        call((options, error) -> patchrec_query_options_set_max_items(options, n, error));
        return this;
    }

    /**
     * The session gap of {@link Layout#STREAM_S}: a session then also closes when an interaction
     * comes more than {@code gap} after the one before it (the timestamps given to {@code append}),
     * so a session is one visit of at most L items. {@link Duration#ZERO} turns it off, also where
     * the checkpoint sets one. Whole seconds, not negative. While a gap is set, a query with another
     * layout fails with {@link Status#INVALID_ARGUMENT}.
     */
    public QueryOptions sessionGap(Duration gap) {
        if (gap.isNegative() || gap.getNano() != 0) {
            throw new PatchrecException(Status.INVALID_ARGUMENT, "session gap " + gap + ": must be whole seconds, not negative");
        }
        long seconds = gap.getSeconds();
        call((options, error) -> patchrec_query_options_set_session_gap(options, seconds, error));
        return this;
    }

    /** Whether a query may return items already in the user's history; by default it may. */
    public QueryOptions excludeHistory(boolean exclude) {
        byte flag = (byte) (exclude ? 1 : 0);
        call((options, error) -> patchrec_query_options_set_exclude_history(options, flag, error));
        return this;
    }

    /**
     * Whether to rank the whole catalogue exactly instead of by beam search, so no beam can miss the
     * best item (the beam width is then unused); slower on large catalogues. Default false.
     */
    public QueryOptions exact(boolean exact) {
        byte flag = (byte) (exact ? 1 : 0);
        call((options, error) -> patchrec_query_options_set_exact(options, flag, error));
        return this;
    }

    /**
     * Recommends only the items {@code ids} (ids the catalogue does not hold are ignored):
     * the answer is that of a catalogue holding only them, and the search never expands a
     * branch of the title tree that leads to none of them. No ids ({@code allow()}) allows
     * nothing, so the answer is empty. Replaces an earlier allow-list; {@link #clearFilters}
     * removes it.
     */
    public QueryOptions allow(long... ids) {
        requireNonNull("ids", ids);
        call((options, error) -> patchrec_query_options_set_allow(options, ids, ids.length, error));
        return this;
    }

    /**
     * Never recommends the items {@code ids}, even where {@link #allow} lists them (ids the
     * catalogue does not hold are ignored). Replaces an earlier deny-list; no ids deny
     * nothing.
     */
    public QueryOptions deny(long... ids) {
        requireNonNull("ids", ids);
        call((options, error) -> patchrec_query_options_set_deny(options, ids, ids.length, error));
        return this;
    }

    /** Removes the allow- and deny-lists: every item may be recommended again. */
    public QueryOptions clearFilters() {
        call(LibPatchrec::patchrec_query_options_clear_filters);
        return this;
    }
}
