package io.github.patchrec;

import static io.github.patchrec.LibPatchrec.*;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.time.Instant;

/**
 * One user's interactions, oldest first. Not thread-safe: appending, clearing,
 * {@link Catalog#recommend} and {@link Catalog#rank} need exclusive use, so give each
 * thread its own user. It holds only item ids, so it may outlive the catalogue it was
 * built with.
 */
public final class User extends NativeHandle {
    /** {@code PATCHREC_NO_TIMESTAMP}: the time of an interaction is unknown. */
    private static final long NO_TIMESTAMP = Long.MIN_VALUE;

    /** An empty history. */
    public User() {
        super(newUser(), LibPatchrec::patchrec_user_free);
    }

    private static Pointer newUser() {
        requireAbi();
        PointerByReference user = new PointerByReference();
        check(error -> patchrec_user_new(user, error));
        return user.getValue();
    }

    /**
     * Appends interactions with {@code itemIds}, oldest first, at unknown times; all or
     * nothing: every id must be in {@code catalog}, else {@link Status#UNKNOWN_ITEM} and
     * the history is unchanged.
     */
    public void append(Catalog catalog, long... itemIds) {
        appendBatch(catalog, itemIds, null);
    }

    /**
     * {@link #append(Catalog, long...)} with the time of each interaction: {@code times}
     * holds one per id, null where unknown. The library keeps whole seconds.
     */
    public void appendWithTimes(Catalog catalog, long[] itemIds, Instant[] times) {
        if (times.length != itemIds.length) {
            throw new PatchrecException(
                    Status.INVALID_ARGUMENT, itemIds.length + " item ids but " + times.length + " times");
        }
        long[] timestamps = new long[times.length];
        for (int i = 0; i < times.length; i++) {
            timestamps[i] = times[i] == null ? NO_TIMESTAMP : times[i].getEpochSecond();
        }
        appendBatch(catalog, itemIds, timestamps);
    }

    /** The catalogue's handle is taken first, as in Catalog.recommend, so that locks nest one way. */
    private void appendBatch(Catalog catalog, long[] itemIds, long[] timestamps) {
        catalog.run(catalogHandle -> call((user, error) ->
                patchrec_user_append_batch(user, catalogHandle, itemIds, timestamps, itemIds.length, error)));
    }

    /** The number of interactions. */
    public int size() {
        return withPointer(user -> (int) patchrec_user_len(user));
    }

    /** Removes every interaction. */
    public void clear() {
        run(LibPatchrec::patchrec_user_clear);
    }
}
