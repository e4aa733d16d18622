package io.github.patchrec;

/** How the history is written into the prompt ({@code patchrec_layout_t}). */
public enum Layout {
    /** Every history item as its title's text. */
    VANILLA(0),
    /** PFT-I: the latest M items as text, older ones as item patches. */
    PFT_I(1),
    /** PFT-S: the latest L items as text, the L before as item patches, older groups of L as session patches. */
    PFT_S(2),
    /**
     * Stream-aligned PFT-S: groups of L from the start of the user's stream, the newest (open) group
     * as text, the one before as item patches, older groups as session patches. An append changes only
     * the prompt's end, so a query after it prefills little (the user keeps its prompt's KV). Needs
     * K &gt;= L.
     */
    STREAM_S(3),
    /**
     * Adaptive: per user, the layout with the most history as text (vanilla, else PFT-I with the largest
     * M, else PFT-S with the largest L) whose whole prompt fits in {@code param} positions; when none
     * fits, the smallest prompt.
     */
    BUDGET(4);

    final int code;

    Layout(int code) {
        this.code = code;
    }
}
