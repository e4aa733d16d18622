package io.github.patchrec;

/** What {@link Catalog#rank} does with a candidate id that the catalogue does not hold. */
public enum UnknownCandidates {
    /** The call throws a {@link PatchrecException} with {@link Status#UNKNOWN_ITEM} naming the id. */
    FAIL(0),
    /** The id is left out of the answer ({@code PATCHREC_RANK_SKIP_UNKNOWN}). */
    SKIP(LibPatchrec.RANK_SKIP_UNKNOWN);

    /** The {@code patchrec_rank} flag. */
    final int flag;

    UnknownCandidates(int flag) {
        this.flag = flag;
    }
}
