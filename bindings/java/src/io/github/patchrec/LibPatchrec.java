package io.github.patchrec;

import com.sun.jna.Callback;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.util.function.ToIntFunction;

/**
 * The C functions of {@code patchrec.h}, bound with JNA's direct mapping, its fastest
 * call path, and the helpers every class uses to call them.
 *
 * <p>Type mapping: {@code size_t} is a Java {@code long} (so 64-bit platforms only, which
 * {@link #requireAbi} checks); a {@code size_t *} or {@code double *} out-param is a
 * one-element array; C strings are NUL-terminated UTF-8 byte arrays from
 * {@link #cString}, never Java {@code String}s, which JNA would encode with the platform
 * charset; {@code bool} is a {@code byte}, as JNA passes a Java {@code boolean} as a
 * 4-byte int. Statuses are {@code int}; ids are {@code uint64_t} carried in a
 * {@code long}.
 */
final class LibPatchrec {
    static {
        Native.register(LibPatchrec.class, "patchrec");
    }

    static final int OK = 0;
    /** Bytes per {@code patchrec_recommendation_t}: a uint64_t, a float, 4 bytes of padding. */
    static final int RECOMMENDATION_SIZE = 16;
    static final int RECOMMENDATION_SCORE_OFFSET = 8;
    /**
     * The fields of {@code patchrec_kv_stats_t} as the header declares them (AbiTest holds
     * the list to the header): six 8-byte fields on a 64-bit platform, at these offsets.
     */
    static final String[] KV_STATS_FIELDS = {
        "size_t capacity",
        "size_t bytes_held",
        "size_t users_held",
        "uint64_t hits",
        "uint64_t misses",
        "uint64_t evictions",
    };

    static final int KV_STATS_SIZE = 48;
    static final int KV_STATS_CAPACITY_OFFSET = 0;
    static final int KV_STATS_BYTES_HELD_OFFSET = 8;
    static final int KV_STATS_USERS_HELD_OFFSET = 16;
    static final int KV_STATS_HITS_OFFSET = 24;
    static final int KV_STATS_MISSES_OFFSET = 32;
    static final int KV_STATS_EVICTIONS_OFFSET = 40;

    /** The {@code patchrec_rank} flags {@code PATCHREC_RANK_INPUT_ORDER} and {@code PATCHREC_RANK_SKIP_UNKNOWN}. */
    static final int RANK_INPUT_ORDER = 1;
    static final int RANK_SKIP_UNKNOWN = 2;

    /**
     * The fields of {@code patchrec_train_progress_t} as the header declares them, and
     * their byte offsets on a 64-bit platform (AbiTest holds the list to the header).
     */
    static final String[] TRAIN_PROGRESS_FIELDS = {
        "const char *stage",
        "uint32_t stage_index",
        "uint64_t step",
        "uint64_t total_steps",
        "double loss",
        "double learning_rate",
        "double tokens_per_second",
    };

    static final int TRAIN_PROGRESS_STAGE_OFFSET = 0;
    static final int TRAIN_PROGRESS_STAGE_INDEX_OFFSET = 8;
    static final int TRAIN_PROGRESS_STEP_OFFSET = 16;
    static final int TRAIN_PROGRESS_TOTAL_STEPS_OFFSET = 24;
    static final int TRAIN_PROGRESS_LOSS_OFFSET = 32;
    static final int TRAIN_PROGRESS_LEARNING_RATE_OFFSET = 40;
    static final int TRAIN_PROGRESS_TOKENS_PER_SECOND_OFFSET = 48;

    /**
     * {@code patchrec_train_callback_t}: {@code progress} points to a
     * {@code patchrec_train_progress_t} valid during the call; the C {@code bool} result
     * is a byte, 0 to stop.
     */
    interface TrainCallback extends Callback {
        byte invoke(Pointer progress, Pointer userData);
    }

    private LibPatchrec() {}

    static native int patchrec_catalog_new(Pointer model, PointerByReference out, PointerByReference error);

    static native int patchrec_catalog_add(Pointer catalog, long id, byte[] title, PointerByReference error);

    static native int patchrec_catalog_add_batch(
            Pointer catalog, long[] ids, Pointer titles, long n, PointerByReference error);

    static native int patchrec_catalog_remove(Pointer catalog, long[] ids, long n, PointerByReference error);

    static native int patchrec_catalog_set_title(Pointer catalog, long id, byte[] title, PointerByReference error);

    static native int patchrec_catalog_set_kv_budget(Pointer catalog, long bytes, PointerByReference error);

    static native int patchrec_catalog_set_patch_storage(Pointer catalog, int storage, PointerByReference error);

    static native int patchrec_catalog_kv_stats(Pointer catalog, Pointer out, PointerByReference error);

    static native long patchrec_catalog_len(Pointer catalog);

    static native int patchrec_catalog_set_batching(
            Pointer catalog, long maxBatch, long maxWaitMicros, PointerByReference error);

    static native int patchrec_catalog_title(
            Pointer catalog, long id, byte[] buf, long cap, long[] len, PointerByReference error);

    static native void patchrec_catalog_free(Pointer catalog);

    static native Pointer patchrec_error_message(Pointer error);

    static native void patchrec_error_free(Pointer error);

    static native int patchrec_model_load(
            byte[] checkpointDir, Pointer options, PointerByReference out, PointerByReference error);

    static native void patchrec_model_free(Pointer model);

    static native Pointer patchrec_model_options_new();

    static native int patchrec_model_options_set_device(Pointer options, byte[] device, PointerByReference error);

    static native int patchrec_model_options_set_quantization(
            Pointer options, byte[] quantization, PointerByReference error);

    static native void patchrec_model_options_free(Pointer options);

    static native Pointer patchrec_query_options_new();

    static native int patchrec_query_options_set_k(Pointer options, long k, PointerByReference error);

    static native int patchrec_query_options_set_beam_width(
            Pointer options, long beamWidth, PointerByReference error);

    static native int patchrec_query_options_set_layout(
            Pointer options, int kind, long param, PointerByReference error);

    static native int patchrec_query_options_set_max_items(Pointer options, long maxItems, PointerByReference error);

    static native int patchrec_query_options_set_session_gap(Pointer options, long seconds, PointerByReference error);

    static native int patchrec_query_options_set_exclude_history(
            Pointer options, byte excludeHistory, PointerByReference error);

    static native int patchrec_query_options_set_exact(Pointer options, byte exact, PointerByReference error);

    static native int patchrec_query_options_set_allow(Pointer options, long[] ids, long n, PointerByReference error);

    static native int patchrec_query_options_set_deny(Pointer options, long[] ids, long n, PointerByReference error);

    static native int patchrec_query_options_clear_filters(Pointer options, PointerByReference error);

    static native void patchrec_query_options_free(Pointer options);

    static native int patchrec_recommend(
            Pointer catalog, Pointer user, Pointer options, Pointer out, long cap, long[] len,
            PointerByReference error);

    static native int patchrec_rank(
            Pointer catalog, Pointer user, Pointer options, long[] candidates, long n, int flags, Pointer out,
            long cap, long[] len, PointerByReference error);

    static native int patchrec_user_layout_stats(
            Pointer user, Pointer catalog, Pointer options, long[] promptLen, double[] compressionRatio,
            PointerByReference error);

    static native Pointer patchrec_status_name(int status);

    static native int patchrec_train_file(
            byte[] path, byte resume, TrainCallback progress, Pointer userData, PointerByReference error);

    static native int patchrec_train_toml(
            byte[] toml, byte[] baseDir, byte resume, TrainCallback progress, Pointer userData,
            PointerByReference error);

    static native int patchrec_user_new(PointerByReference out, PointerByReference error);

    static native int patchrec_user_append_batch(
            Pointer user, Pointer catalog, long[] ids, long[] timestamps, long n, PointerByReference error);

    static native long patchrec_user_len(Pointer user);

    static native void patchrec_user_clear(Pointer user);

    static native void patchrec_user_free(Pointer user);

    static native Pointer patchrec_version();

    static native int patchrec_abi_version();

    /** Calls a C function whose last parameter is the error out-param, and throws its failure. */
    static void check(ToIntFunction<PointerByReference> function) {
        PointerByReference error = new PointerByReference();
        int status = function.applyAsInt(error);
        if (status != OK) {
            throw takeError(status, error.getValue());
        }
    }

    /** The exception for a failed call; frees the C error object. */
    static PatchrecException takeError(int status, Pointer error) {
        try {
            return new PatchrecException(status, patchrec_error_message(error).getString(0, "UTF-8"));
        } finally {
            patchrec_error_free(error);
        }
    }

    static String statusName(int status) {
        return patchrec_status_name(status).getString(0, "UTF-8");
    }

    /**
     * {@code text} as NUL-terminated UTF-8 for parameter {@code param}. A NUL character
     * would cut the string short in C, and an unpaired surrogate has no UTF-8 encoding
     * (Java would silently write {@code ?}), so both are errors here.
     */
    static byte[] cString(String param, String text) {
        if (text == null) {
            throw new PatchrecException(Status.NULL_ARGUMENT, "`" + param + "` is null");
        }
        int nul = text.indexOf('\0');
        if (nul >= 0) {
            throw new PatchrecException(
                    Status.INVALID_ARGUMENT, "`" + param + "` contains a NUL character at index " + nul);
        }
        ByteBuffer encoded;
        try {
            encoded = StandardCharsets.UTF_8.newEncoder().encode(CharBuffer.wrap(text));
        } catch (CharacterCodingException e) {
            throw new PatchrecException(
                    Status.INVALID_UTF8, "`" + param + "` has an unpaired surrogate, which UTF-8 cannot encode");
        }
        byte[] bytes = new byte[encoded.remaining() + 1];
        encoded.get(bytes, 0, encoded.remaining());
        return bytes;
    }

    /** Throws {@link Status#NULL_ARGUMENT} naming {@code param} when {@code value} is null. */
    static void requireNonNull(String param, Object value) {
        if (value == null) {
            throw new PatchrecException(Status.NULL_ARGUMENT, "`" + param + "` is null");
        }
    }

    /** A count for C, where a negative one would become a huge size_t. */
    static long cSize(String param, long n) {
        if (n < 0) {
            throw new PatchrecException(Status.INVALID_ARGUMENT, "`" + param + "` is negative (" + n + ")");
        }
        return n;
    }

    /**
     * Throws unless the loaded library implements the C ABI this binding was written
     * for: with another, the functions above may have other signatures.
     */
    static void requireAbi() {
        PatchrecException mismatch = abiMismatch(patchrec_abi_version(), Patchrec.ABI_VERSION, Native.SIZE_T_SIZE);
        if (mismatch != null) {
            throw mismatch;
        }
    }

    static PatchrecException abiMismatch(int libraryVersion, int bindingVersion, int sizeTBytes) {
        if (libraryVersion != bindingVersion) {
            return new PatchrecException(Status.UNSUPPORTED, "libpatchrec implements C ABI version " + libraryVersion
                    + ", but this Java binding was written for version " + bindingVersion
                    + ": use the binding that comes with the installed library");
        }
        if (sizeTBytes != Long.BYTES) {
            return new PatchrecException(Status.UNSUPPORTED, "this Java binding passes size_t as a long, but size_t has "
                    + sizeTBytes + " bytes here");
        }
        return null;
    }
}
