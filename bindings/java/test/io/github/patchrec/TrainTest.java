package io.github.patchrec;

import static io.github.patchrec.CatalogTest.assertFails;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The tests of tests/c/test_train.c, through {@link Patchrec#trainFile} and {@link Patchrec#trainToml}. */
class TrainTest {
    /** The tiny from-scratch model and the four-step PFT-I stage (named pft-i2) of the C test. */
    static final String TINY_MODEL = """
            vocab_size = 300
            hidden = 32
            layers = 1
            heads = 2
            kv_heads = 1
            """;

    static final String TINY_STAGE = """
            kind = "pft-i"
            m = 2
            max_history = 6
            max_steps = 4
            batch_size = 2
            micro_batch = 2
            learning_rate = 0.01
            """;

    /** The C test's configuration as TOML text: TINY_MODEL trained by TINY_STAGE, writing into {@code out}. */
    static String config(Path out) {
        return config(out.toAbsolutePath().toString(), TINY_MODEL, TINY_STAGE);
    }

    /**
     * A configuration as TOML text: a from-scratch model with the fields {@code model} of
     * {@code [model.init]}, trained on the tiny dataset by one stage with the fields
     * {@code stage}, writing into {@code out} (taken from the base folder when relative).
     */
    static String config(String out, String model, String stage) {
        return "out = " + tomlString(out) + "\ndata = " + tomlString(Fixture.dataset().toAbsolutePath().toString())
                + "\n\n[model.init]\n" + model + "\n[[stage]]\n" + stage;
    }

    private static String tomlString(String text) {
        return "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    /** Where {@link #config}'s run leaves its one stage's checkpoint. */
    static Path finalCheckpoint(Path out) {
        return out.resolve("01-pft-i2");
    }

    static void assertFinished(Path out) {
        assertTrue(Files.isRegularFile(finalCheckpoint(out).resolve("model.safetensors")), "the final checkpoint in " + out);
    }

    /** Records the reports it is given and stops at call {@code stopAt} (never when 0). */
    static final class ProgressLog {
        final int stopAt;
        final List<TrainProgress> reports = new ArrayList<>();

        ProgressLog(int stopAt) {
            this.stopAt = stopAt;
        }

        boolean report(TrainProgress p) {
            reports.add(p);
            return reports.size() != stopAt;
        }

        /** Asserts that the reports are steps {@code first}, {@code first + 1}, ... of the stage, with sane numbers. */
        void assertSteps(long first, int n) {
            assertEquals(n, reports.size(), reports.toString());
            for (int i = 0; i < n; i++) {
                TrainProgress p = reports.get(i);
                assertEquals("pft-i2", p.stage(), p.toString());
                assertEquals(0, p.stageIndex(), p.toString());
                assertEquals(first + i, p.step(), p.toString());
                assertEquals(4, p.totalSteps(), p.toString());
                assertTrue(p.loss() > 0 && p.learningRate() > 0 && p.tokensPerSecond() > 0, p.toString());
            }
        }
    }

    /**
     * A run stopped from the callback refuses to start again without resume, and resumes
     * from the same configuration as a file.
     */
    @Test
    void stopThenResume(@TempDir Path dir) throws IOException {
        Path out = dir.resolve("run");
        String config = config(out);

        ProgressLog first = new ProgressLog(2);
        PatchrecException stopped =
                assertThrows(PatchrecException.class, () -> Patchrec.trainToml(config, null, false, first::report));
        assertEquals(Status.STOPPED, stopped.status(), stopped.getMessage());
        assertTrue(stopped.detail().contains("call trainToml with resume"), stopped.getMessage());
        first.assertSteps(1, 2);

        assertFails(Status.INVALID_ARGUMENT, "not empty", () -> Patchrec.trainToml(config, null, false, null));

        // The configuration's paths are absolute, so the file's folder does not matter.
        Path file = Files.writeString(dir.resolve("train.toml"), config);
        ProgressLog rest = new ProgressLog(0);
        Patchrec.trainFile(file, true, rest::report);
        rest.assertSteps(3, 2);
        assertFinished(out);
        Model.load(finalCheckpoint(out)).close();
    }

    /** trainFile takes relative paths from the file's folder, and the callback may be null. */
    @Test
    void fileRelativePaths(@TempDir Path dir) throws IOException {
        Path file = Files.writeString(dir.resolve("train.toml"), config("run", TINY_MODEL, TINY_STAGE));
        Patchrec.trainFile(file.toString(), false, null);
        assertFinished(dir.resolve("run"));
        assertFalse(Files.exists(Path.of("run")), "the run also wrote into the working directory");
    }

    /** trainToml takes relative paths from baseDir. */
    @Test
    void tomlBaseDir(@TempDir Path dir) {
        Patchrec.trainToml(config("run", TINY_MODEL, TINY_STAGE), dir.toString(), false, null);
        assertFinished(dir.resolve("run"));
        assertFalse(Files.exists(Path.of("run")), "the run also wrote into the working directory");
    }

    /**
     * An exception from the callback stops training without crossing into native code, and
     * trainFile rethrows it; the stopped run then resumes.
     */
    @Test
    void callbackExceptionIsRethrown(@TempDir Path dir) throws IOException {
        Path file = Files.writeString(dir.resolve("train.toml"), config(dir.resolve("run")));
        IllegalStateException thrown = new IllegalStateException("from the callback");
        List<Long> steps = new ArrayList<>();
        IllegalStateException caught = assertThrows(IllegalStateException.class,
                () -> Patchrec.trainFile(file, false, p -> {
                    steps.add(p.step());
                    throw thrown;
                }));
        assertSame(thrown, caught);
        assertEquals(List.of(1L), steps, "the callback ran once, then training stopped");

        ProgressLog rest = new ProgressLog(0);
        Patchrec.trainFile(file, true, rest::report);
        rest.assertSteps(2, 3);
    }

    /** A second training on an output folder that a running one holds is {@link Status#IO}. */
    @Test
    void outputFolderInUse(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("run");
        String config = config(out);
        CountDownLatch atFirstStep = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            Future<?> first = pool.submit(() -> Patchrec.trainToml(config, null, false, p -> {
                if (p.step() == 1) {
                    atFirstStep.countDown();
                    try {
                        release.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                return true;
            }));
            while (!atFirstStep.await(10, TimeUnit.MILLISECONDS)) {
                if (first.isDone()) {
                    first.get(); // throws what ended it
                    fail("the first training ended before its first report");
                }
            }
            try {
                // With resume, as without it the folder, not empty, would be refused before its lock.
                assertFails(Status.IO, "another training", () -> Patchrec.trainToml(config, null, true, null));
            } finally {
                release.countDown();
            }
            first.get();
            assertFinished(out);
        } finally {
            pool.shutdownNow();
        }
    }

    /** A model too large for the machine is refused before anything is allocated. */
    @Test
    void outOfMemory(@TempDir Path dir) {
        String model = TINY_MODEL.replace("hidden = 32", "hidden = 1000000");
        assertFails(Status.OUT_OF_MEMORY, "hidden", () -> Patchrec.trainToml(
                config(dir.resolve("run").toString(), model, TINY_STAGE), null, false, null));
    }

    /** A stage whose loss becomes NaN or infinite stops and keeps the resume state of its last good step. */
    @Test
    void nonFinite(@TempDir Path dir) {
        // Adam's first updates move each weight by ~1e38, so the weights soon overflow.
        String stage = TINY_STAGE.replace("learning_rate = 0.01", "learning_rate = 1e38")
                .replace("max_steps = 4", "max_steps = 8\ncheckpoint_every = 1");
        Path out = dir.resolve("run");
        List<TrainProgress> reports = new ArrayList<>();
        assertFails(Status.NON_FINITE, "learning_rate", () -> Patchrec.trainToml(
                config(out.toString(), TINY_MODEL, stage), null, false, reports::add));
        assertTrue(Files.isRegularFile(out.resolve("01-pft-i2.resume").resolve("trainer.json")),
                "the resume state after " + reports.size() + " good steps");
    }

    /** A mistyped path is a missing file named in the error, never taken for TOML text; TOML text given as a path is one too. */
    @Test
    void missingFile(@TempDir Path dir) {
        Path missing = dir.resolve("mising.toml");
        List<TrainProgress> reports = new ArrayList<>();
        assertFails(Status.IO, missing.toString(), () -> Patchrec.trainFile(missing, false, reports::add));
        assertEquals(List.of(), reports, "a failed start called the callback");
        assertFails(Status.IO, "out = ", () -> Patchrec.trainFile(config(dir.resolve("run")), false, null));
        assertFalse(Files.exists(dir.resolve("run")), "TOML text given as a path started a run");
    }

    /**
     * A malformed configuration file is {@link Status#FORMAT} naming the file and the field;
     * as text, {@link Status#INVALID_ARGUMENT} naming the field. Bad strings never reach C.
     */
    @Test
    void badConfigurations(@TempDir Path dir) throws IOException {
        String bad = "[[stage]]\nkind = \"nope\"\n";
        Path file = Files.writeString(dir.resolve("bad.toml"), bad);
        PatchrecException e = assertFails(Status.FORMAT, "unknown variant `nope`", () -> Patchrec.trainFile(file, false, null));
        assertTrue(e.detail().contains(file.toString()), e.getMessage());
        assertFails(Status.INVALID_ARGUMENT, "unknown variant `nope`", () -> Patchrec.trainToml(bad, null, false, null));

        assertFails(Status.INVALID_ARGUMENT, "`path` contains a NUL", () -> Patchrec.trainFile("train.toml\0", false, null));
        assertFails(Status.INVALID_ARGUMENT, "`toml` contains a NUL", () -> Patchrec.trainToml("out = \"x\"\0", null, false, null));
        assertFails(Status.INVALID_ARGUMENT, "`baseDir` contains a NUL", () -> Patchrec.trainToml(bad, "dir\0", false, null));
        assertFails(Status.NULL_ARGUMENT, "`toml`", () -> Patchrec.trainToml(null, null, false, null));
        assertFails(Status.NULL_ARGUMENT, "`path`", () -> Patchrec.trainFile((Path) null, false, null));
        assertFails(Status.NULL_ARGUMENT, "`path`", () -> Patchrec.trainFile((String) null, false, null));
    }
}
