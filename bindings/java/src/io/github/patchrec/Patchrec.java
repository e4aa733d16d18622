package io.github.patchrec;

import static io.github.patchrec.LibPatchrec.*;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.lang.ref.Reference;
import java.lang.reflect.UndeclaredThrowableException;
import java.util.function.Predicate;

/** Library-wide facts, and training. */
public final class Patchrec {
    /**
     * The C ABI version this binding was written for: {@code PATCHREC_ABI_VERSION} in the
     * {@code patchrec.h} it follows. Model, User and QueryOptions refuse to start with a
     * library that implements another.
     */
    public static final int ABI_VERSION = 1;

    private Patchrec() {}

    /** The library's version, such as {@code "0.1.0"}. */
    public static String version() {
        return LibPatchrec.patchrec_version().getString(0, "UTF-8");
    }

    /** The C ABI version the loaded library implements. */
    public static int libraryAbiVersion() {
        return LibPatchrec.patchrec_abi_version();
    }

    /**
     * Runs the training stages of {@code config}: the path of a TOML file, or the TOML
     * text itself (relative paths in it are then taken from the working directory), in
     * the format {@code patchrec train} reads ({@code docs/TRAINING.md} in the source
     * tree). Blocks until training ends and returns normally when every stage finished,
     * with the checkpoints in the configuration's output folder, such as
     * {@code OUT/01-pft-i5} for a one-stage run; load them with {@link Model#load}.
     *
     * <p>With {@code resume}, an interrupted run in the output folder continues where it
     * stopped; without it, a non-empty output folder is {@link Status#INVALID_ARGUMENT}.
     *
     * <p>{@code progress}, which may be null, is called after every optimizer step;
     * returning false stops training: the trainer writes its resume state and this
     * method throws a {@link PatchrecException} with {@link Status#STOPPED}, after which
     * {@code train} with {@code resume} continues the run. A stop is an exception, as every other outcome but success is, so that a
     * caller cannot mistake a stopped run for a finished one.
     *
     * <p>Anything {@code progress} throws never reaches native code: it stops training,
     * as returning false does, and this method rethrows it once the library has returned
     * (a checked exception wrapped in an {@link UndeclaredThrowableException}).
     */
    public static void train(String config, boolean resume, Predicate<TrainProgress> progress) {
        requireAbi();
        byte[] text = cString("config", config);
        ProgressCallback callback = progress == null ? null : new ProgressCallback(progress);
        PointerByReference error = new PointerByReference();
        int status;
        try {
            status = patchrec_train(text, (byte) (resume ? 1 : 0), callback, null, error);
        } finally {
            // JNA keeps only a weak reference to a callback; the library calls this one
            // until patchrec_train returns.
            Reference.reachabilityFence(callback);
        }
        Throwable thrown = callback == null ? null : callback.thrown;
        if (thrown != null) {
            // The library saw a stop; the callback's exception is the news.
            if (status != OK && status != Status.STOPPED.code()) {
                thrown.addSuppressed(takeError(status, error.getValue()));
            }
            if (thrown instanceof RuntimeException e) {
                throw e;
            }
            if (thrown instanceof Error e) {
                throw e;
            }
            throw new UndeclaredThrowableException(thrown);
        }
        if (status == Status.STOPPED.code()) {
            throw new PatchrecException(
                    Status.STOPPED, "the progress callback stopped training; call train with resume to continue");
        }
        if (status != OK) {
            throw takeError(status, error.getValue());
        }
    }

    /** The C callback around a {@code progress} predicate; keeps what it throws from native code. */
    private static final class ProgressCallback implements TrainCallback {
        private final Predicate<TrainProgress> progress;
        /**
         * What {@code progress} threw, if it did; then training was told to stop. Volatile
         * as the header does not promise which thread runs the callback.
         */
        volatile Throwable thrown;

        ProgressCallback(Predicate<TrainProgress> progress) {
            this.progress = progress;
        }

        @Override
        public byte invoke(Pointer report, Pointer userData) {
            try {
                if (thrown != null) {
                    return 0;
                }
                TrainProgress p = new TrainProgress(
                        report.getPointer(TRAIN_PROGRESS_STAGE_OFFSET).getString(0, "UTF-8"),
                        report.getInt(TRAIN_PROGRESS_STAGE_INDEX_OFFSET),
                        report.getLong(TRAIN_PROGRESS_STEP_OFFSET),
                        report.getLong(TRAIN_PROGRESS_TOTAL_STEPS_OFFSET),
                        report.getDouble(TRAIN_PROGRESS_LOSS_OFFSET),
                        report.getDouble(TRAIN_PROGRESS_LEARNING_RATE_OFFSET),
                        report.getDouble(TRAIN_PROGRESS_TOKENS_PER_SECOND_OFFSET));
                return (byte) (progress.test(p) ? 1 : 0);
            } catch (Throwable e) {
                thrown = e;
                return 0;
            }
        }
    }
}
