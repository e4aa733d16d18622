import io.github.patchrec.Catalog;
import io.github.patchrec.Item;
import io.github.patchrec.Model;
import io.github.patchrec.QueryOptions;
import io.github.patchrec.User;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The Java side of bindings/reference/recommend.c's timings, with the same arguments and
 * method: java Latency CHECKPOINT_DIR ITEMS_TSV HISTORY K QUERIES LAYOUT_STATS_CALLS times
 * QUERIES identical queries after 10 untimed ones, each on its own, then
 * LAYOUT_STATS_CALLS layout-stats calls after as many untimed ones (which also lets the
 * JIT compile the binding), and prints each median.
 */
public class Latency {
    private static final int WARM_UP_QUERIES = 10;

    public static void main(String[] args) throws IOException {
        if (args.length != 6) {
            System.err.println("usage: java Latency CHECKPOINT_DIR ITEMS_TSV HISTORY K QUERIES LAYOUT_STATS_CALLS");
            System.exit(2);
        }
        List<Item> items = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[1]), StandardCharsets.UTF_8)) {
            String[] fields = line.split("\t", 2);
            if (fields.length == 2) {
                items.add(new Item(Long.parseLong(fields[0]), fields[1]));
            }
        }
        long[] history = Arrays.stream(args[2].split(",")).mapToLong(Long::parseLong).toArray();
        int queries = Integer.parseInt(args[4]);
        int layoutStatsCalls = Integer.parseInt(args[5]);
        try (Model model = Model.load(Path.of(args[0]));
                Catalog catalog = new Catalog(model);
                User user = new User();
                QueryOptions options = new QueryOptions().k(Integer.parseInt(args[3]))) {
            catalog.addAll(items);
            user.append(catalog, history);
            long recommend = medianNanos(WARM_UP_QUERIES, queries, () -> catalog.recommend(user, options));
            long layoutStats = medianNanos(layoutStatsCalls, layoutStatsCalls, () -> catalog.layoutStats(user, options));
            System.err.printf("Java: recommend median %d ns (%d calls), layout stats median %d ns (%d calls)%n",
                    recommend, queries, layoutStats, layoutStatsCalls);
        }
    }

    /** The median time of {@code repetitions} calls, each timed on its own, after {@code warmUp} untimed ones. */
    private static long medianNanos(int warmUp, int repetitions, Runnable call) {
        long[] elapsed = new long[repetitions];
        for (int r = 0; r < warmUp + repetitions; r++) {
            long start = System.nanoTime();
            call.run();
            if (r >= warmUp) {
                elapsed[r - warmUp] = System.nanoTime() - start;
            }
        }
        Arrays.sort(elapsed);
        return elapsed[repetitions / 2];
    }
}
