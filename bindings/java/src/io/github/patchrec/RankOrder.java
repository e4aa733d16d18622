package io.github.patchrec;

/** The order of {@link Catalog#rank}'s answer. */
public enum RankOrder {
    /** Best first (candidates with equal scores keep their order). */
    SCORE(0),
    /** The candidates' order, a duplicated id at its first occurrence ({@code PATCHREC_RANK_INPUT_ORDER}). */
    INPUT(LibPatchrec.RANK_INPUT_ORDER);

    /** The {@code patchrec_rank} flag. */
    final int flag;

    RankOrder(int flag) {
        this.flag = flag;
    }
}
