package io.github.patchrec;

import static io.github.patchrec.LibPatchrec.*;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.lang.ref.Reference;
import java.lang.reflect.UndeclaredThrowableException;
import java.nio.file.Path;
import java.util.function.Predicate;

/** Library-wide facts, and training. */
public final class Patchrec {
    /**
     * The C ABI version this binding was written for: {@code PATCHREC_ABI_VERSION} in the
     * {@code patchrec.h} it follows. Model, User and QueryOptions refuse to start with a
     * library that implements another.
     */
    public static final int ABI_VERSION = 2;

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
     * Runs the training stages of the TOML file at {@code path}, in the format
     * {@code patchrec train} reads ({@code docs/TRAINING.md} in the source tree); relative
     * paths in it are taken from the file's folder. Blocks until training ends and returns
     * normally when every stage finished, with the checkpoints in the configuration's
     * output folder, such as {@code OUT/01-pft-i5} for a one-stage run; load them with
     * {@link Model#load}.
     *
     * <p>With {@code resume}, an interrupted run in the output folder continues where it
     * stopped; without it, a non-empty output folder is {@link Status#INVALID_ARGUMENT}. An
     * output folder that another training is using is {@link Status#IO}.
     *
     * <p>A missing or unreadable file is {@link Status#IO} naming the path; a malformed or
     * nonsensical configuration is {@link Status#FORMAT} naming the file and the field; a
     * model too large for the machine is {@link Status#OUT_OF_MEMORY}, refused before
     * anything is allocated; and a step whose loss or gradient became NaN or infinite is
     * {@link Status#NON_FINITE}, with the stage's last resume state kept.
     *
     * <p>{@code progress}, which may be null, is called after every optimizer step;
     * returning false stops training: the trainer writes its resume state and this
     * method throws a {@link PatchrecException} with {@link Status#STOPPED}, after which
     * {@code trainFile} with {@code resume} continues the run. A stop is an exception, as
     * every other outcome but success is, so that a caller cannot mistake a stopped run
     * for a finished one.
     *
     * <p>Anything {@code progress} throws never reaches native code: it stops training,
     * as returning false does, and this method rethrows it once the library has returned
     * (a checked exception wrapped in an {@link UndeclaredThrowableException}).
     */
    public static void trainFile(Path path, boolean resume, Predicate<TrainProgress> progress) {
        trainFile(path == null ? null : path.toString(), resume, progress);
    }

    /** {@link #trainFile(Path, boolean, Predicate)} with the path as a string. */
    public static void trainFile(String path, boolean resume, Predicate<TrainProgress> progress) {
        requireAbi();
        byte[] cPath = cString("path", path);
        train("trainFile", progress,
                (callback, error) -> patchrec_train_file(cPath, (byte) (resume ? 1 : 0), callback, null, error));
    }

    /**
     * {@link #trainFile(Path, boolean, Predicate)} with the configuration given as TOML
     * text. Relative paths in it are taken from {@code baseDir}, or from the working
     * directory when {@code baseDir} is null. A malformed or nonsensical configuration is
     * {@link Status#INVALID_ARGUMENT} naming the field; everything else is as for
     * {@code trainFile}.
     */
    public static void trainToml(String toml, String baseDir, boolean resume, Predicate<TrainProgress> progress) {
        requireAbi();
        byte[] text = cString("toml", toml);
        byte[] base = baseDir == null ? null : cString("baseDir", baseDir);
        train("trainToml", progress,
                (callback, error) -> patchrec_train_toml(text, base, (byte) (resume ? 1 : 0), callback, null, error));
    }

    /** One of the C training entry points, given the callback (null for none) and the error out-param. */
    @FunctionalInterface
    private interface NativeTraining {
        int run(TrainCallback callback, PointerByReference error);
    }

    /**
     * Runs {@code training} with {@code progress} behind a C callback, and turns its outcome
     * into {@code trainFile}'s and {@code trainToml}'s: a return, a stop, the library's
     * error, or what {@code progress} threw. {@code name} is the caller's, for the message
     * of a stopped run.
     */
    private static void train(String name, Predicate<TrainProgress> progress, NativeTraining training) {
        ProgressCallback callback = progress == null ? null : new ProgressCallback(progress);
        PointerByReference error = new PointerByReference();
        int status;
        try {
            status = training.run(callback, error);
        } finally {
            // JNA keeps only a weak reference to a callback; the library calls this one
            // until the training call returns.
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
                    Status.STOPPED, "the progress callback stopped training; call " + name + " with resume to continue");
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
