package io.github.patchrec;

import static io.github.patchrec.CatalogTest.assertFails;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The tests of tests/c/test_train.c, through {@link Patchrec#train}. */
class TrainTest {
    /**
     * The C test's configuration as TOML text: a tiny from-scratch model and one four-step
     * PFT-I stage (named pft-i2) writing into {@code out}.
     */
    static String config(Path out) {
        return "out = " + tomlString(out) + "\ndata = " + tomlString(Fixture.dataset()) + "\n"
                + """
                [model.init]
                vocab_size = 300
                hidden = 32
                layers = 1
                heads = 2
                kv_heads = 1

                [[stage]]
                kind = "pft-i"
                m = 2
                max_history = 6
                max_steps = 4
                batch_size = 2
                micro_batch = 2
                learning_rate = 0.01
                """;
    }

    private static String tomlString(Path path) {
        return "\"" + path.toAbsolutePath().toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    /** Where {@link #config}'s run leaves its one stage's checkpoint. */
    static Path finalCheckpoint(Path out) {
        return out.resolve("01-pft-i2");
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

    @Test
    void stopThenResume(@TempDir Path dir) {
        Path out = dir.resolve("run");
        String config = config(out);

        ProgressLog first = new ProgressLog(2);
        PatchrecException stopped =
                assertThrows(PatchrecException.class, () -> Patchrec.train(config, false, first::report));
        assertEquals(Status.STOPPED, stopped.status(), stopped.getMessage());
        first.assertSteps(1, 2);

        assertFails(Status.INVALID_ARGUMENT, "not empty", () -> Patchrec.train(config, false, null));

        ProgressLog rest = new ProgressLog(0);
        Patchrec.train(config, true, rest::report);
        rest.assertSteps(3, 2);
        assertTrue(Files.isRegularFile(finalCheckpoint(out).resolve("model.safetensors")));
        Model.load(finalCheckpoint(out)).close();
    }

    /** A configuration file's path works as well as its text, and the callback may be null. */
    @Test
    void fromFileWithoutProgress(@TempDir Path dir) throws IOException {
        Path out = dir.resolve("run");
        Path file = Files.writeString(dir.resolve("train.toml"), config(out));
        Patchrec.train(file.toString(), false, null);
        assertTrue(Files.isRegularFile(finalCheckpoint(out).resolve("model.safetensors")));
    }

    /**
     * An exception from the callback stops training without crossing into native code, and
     * train rethrows it; the stopped run then resumes.
     */
    @Test
    void callbackExceptionIsRethrown(@TempDir Path dir) {
        Path out = dir.resolve("run");
        String config = config(out);
        IllegalStateException thrown = new IllegalStateException("from the callback");
        List<Long> steps = new ArrayList<>();
        IllegalStateException caught = assertThrows(IllegalStateException.class,
                () -> Patchrec.train(config, false, p -> {
                    steps.add(p.step());
                    throw thrown;
                }));
        assertSame(thrown, caught);
        assertEquals(List.of(1L), steps, "the callback ran once, then training stopped");

        ProgressLog rest = new ProgressLog(0);
        Patchrec.train(config, true, rest::report);
        rest.assertSteps(2, 3);
    }

    @Test
    void badConfigurations(@TempDir Path dir) {
        assertFails(Status.INVALID_ARGUMENT, "unknown variant `nope`",
                () -> Patchrec.train("[[stage]]\nkind = \"nope\"\n", false, null));
        assertFails(Status.INVALID_ARGUMENT, "NUL", () -> Patchrec.train("out = \"x\"\0", false, null));
        assertFails(Status.NULL_ARGUMENT, "config", () -> Patchrec.train(null, false, null));
        // A path that is not a file is taken as TOML text, as in C.
        List<TrainProgress> reports = new ArrayList<>();
        assertFails(Status.INVALID_ARGUMENT, "training config",
                () -> Patchrec.train(dir.resolve("missing.toml").toString(), false, reports::add));
        assertFalse(Files.exists(dir.resolve("missing.toml")));
        assertEquals(List.of(), reports, "a failed start called the callback");
    }
}
