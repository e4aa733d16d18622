package io.github.patchrec;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A model on the test checkpoint with movies.tsv registered, and the users a test makes,
 * all closed together. The paths are relative to bindings/java, where Maven runs the tests
 * (pom.xml's surefire workingDirectory).
 */
final class Fixture implements AutoCloseable {
    /** The catalogue the checkpoint's tokenizer was trained on (`patchrec init --items`). */
    static final Path ITEMS = Path.of("../../examples/cpp/movies.tsv");
    static final Path HEADER = Path.of("../../include/patchrec.h");

    /**
     * The query compared with the C API, and timed by the Latency program;
     * scripts/test-bindings.sh gives the C reference the same one for the latency numbers.
     */
    static final long[] QUERY_HISTORY = {1, 5, 9, 13, 21, 34, 41, 55};
    static final int QUERY_K = 10;

    final Model model;
    final Catalog catalog;
    private final List<User> users = new ArrayList<>();

    Fixture() {
        model = Model.load(checkpoint());
        catalog = new Catalog(model);
        catalog.addAll(items());
    }

    /** A user with {@code history}, closed with the fixture. */
    User user(long... history) {
        User user = new User();
        users.add(user);
        user.append(catalog, history);
        return user;
    }

    @Override
    public void close() {
        users.forEach(User::close);
        catalog.close();
        model.close();
    }

    /** The tiny test model; the tests fail rather than skip without one, so CI cannot pass empty. */
    static Path checkpoint() {
        return Path.of(requiredEnvironment("PATCHREC_TEST_CHECKPOINT",
                "scripts/test-bindings.sh makes a tiny checkpoint and sets it"));
    }

    /**
     * The tiny synthetic dataset the training tests run on (`patchrec synth`); like the
     * checkpoint, the tests fail without one.
     */
    static Path dataset() {
        return Path.of(requiredEnvironment("PATCHREC_TEST_DATASET",
                "scripts/test-bindings.sh makes a tiny dataset with `patchrec synth` and sets it"));
    }

    static List<Item> items() {
        List<Item> items = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(ITEMS, StandardCharsets.UTF_8)) {
                String[] fields = line.split("\t", 2);
                if (fields.length == 2) {
                    items.add(new Item(Long.parseLong(fields[0]), fields[1]));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return items;
    }

    /**
     * The ranking bindings/reference/recommend.c gives through the C API (the program is
     * built by scripts/test-bindings.sh, its path in PATCHREC_TEST_C_REFERENCE).
     */
    static List<Recommendation> cReference(long[] history, int k) throws IOException, InterruptedException {
        String program = requiredEnvironment("PATCHREC_TEST_C_REFERENCE",
                "scripts/test-bindings.sh builds bindings/reference/recommend.c and sets it");
        StringBuilder ids = new StringBuilder();
        for (long id : history) {
            ids.append(ids.length() == 0 ? "" : ",").append(Long.toUnsignedString(id));
        }
        Process process = new ProcessBuilder(program, checkpoint().toString(), ITEMS.toString(), ids.toString(),
                Integer.toString(k)).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(process.waitFor() == 0 && !output.isBlank(), program + " failed or printed nothing");
        List<Recommendation> ranking = new ArrayList<>();
        for (String line : output.strip().split("\n")) {
            String[] fields = line.split(" ");
            ranking.add(new Recommendation(Long.parseUnsignedLong(fields[0]), Float.parseFloat(fields[1])));
        }
        return ranking;
    }

    private static String requiredEnvironment(String name, String how) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            fail(name + " is not set; " + how);
        }
        return value;
    }
}
