/**
 * libpatchrec for Java: LLM sequential recommendation with PatchRec's multi-grained
 * history compression, over the library's C ABI ({@code patchrec.h}) through JNA.
 *
 * <p>Load a checkpoint with {@link io.github.patchrec.Model#load}, register the items it
 * may recommend in a {@link io.github.patchrec.Catalog}, record each user's interactions
 * in a {@link io.github.patchrec.User}, and ask {@link io.github.patchrec.Catalog#recommend}
 * for the next items, tuned by {@link io.github.patchrec.QueryOptions}; a ranking service
 * whose candidates retrieval found asks {@link io.github.patchrec.Catalog#rank} to score
 * them on the same scale. {@link io.github.patchrec.Catalog#remove} and
 * {@link io.github.patchrec.Catalog#setTitle} change a catalogue while it serves,
 * {@link io.github.patchrec.QueryOptions#allow} and
 * {@link io.github.patchrec.QueryOptions#deny} filter a query's answer, and
 * {@link io.github.patchrec.Catalog#kvBudget} bounds the prompt KV that the catalogue's
 * users keep between queries ({@link io.github.patchrec.Catalog#kvStats} reports it).
 * Every handle owns C memory and is
 * {@link java.lang.AutoCloseable}; a {@link java.lang.ref.Cleaner} frees what a caller
 * forgets, but only after garbage collection, which is late for model weights.
 *
 * <p>Threads: the C header's rule, that a const handle may be used by many threads at once
 * and a non-const one needs exclusive access, gives: {@code Model} and {@code Catalog} are
 * thread-safe; {@code User} is not; {@code QueryOptions} is not while being set, and may
 * then be shared. {@code close()} on any handle waits for the calls in flight; later calls
 * throw.
 *
 * <p>Errors: every failure, the binding's own included, is an unchecked
 * {@link io.github.patchrec.PatchrecException} with the C status. Using a closed handle is
 * {@link io.github.patchrec.Status#NULL_ARGUMENT}, the status C gives a NULL handle.
 *
 * <p>Running: JNA ({@code /usr/share/java/jna.jar} from Debian's {@code libjna-java}) beside
 * this jar, both on the class path or both on the module path, where this is the module
 * {@code io.github.patchrec} and JNA the automatic module {@code com.sun.jna}; and
 * {@code libpatchrec.so} where JNA looks for it, such as
 * {@code -Djna.library.path=PREFIX/lib} for a library installed by
 * {@code scripts/install.sh PREFIX}. Creating the first Model, User or QueryOptions checks
 * that the library implements {@link io.github.patchrec.Patchrec#ABI_VERSION}.
 *
 * <p>Training: {@link io.github.patchrec.Patchrec#trainFile(java.nio.file.Path, boolean,
 * java.util.function.Predicate)} runs the stages of a training configuration file, as
 * {@code patchrec train} reads it, and {@link io.github.patchrec.Patchrec#trainToml} those
 * of a configuration given as TOML text; both report every optimizer step to an optional
 * callback, which can stop the run. A stopped run throws a {@code PatchrecException} with
 * {@link io.github.patchrec.Status#STOPPED}, and the same call with {@code resume}
 * continues it. Load the checkpoints they write with
 * {@link io.github.patchrec.Model#load}.
 */
package io.github.patchrec;
