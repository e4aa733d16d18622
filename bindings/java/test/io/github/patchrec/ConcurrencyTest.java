package io.github.patchrec;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

class ConcurrencyTest {
    private static final int THREADS = 8;

    private static long[] history(int thread) {
        return new long[] {thread + 1, thread + 11, thread + 21, thread + 31};
    }

    /**
     * Many threads query one model and catalogue at once, sharing one QueryOptions, each
     * with its own User, and get exactly what the same queries give one at a time.
     */
    @Test
    void concurrentQueriesMatchSequentialOnes() throws Exception {
        final int queriesEach = 3;
        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(5)) {
            List<List<Recommendation>> alone = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                alone.add(fixture.catalog.recommend(fixture.user(history(t)), options));
            }
            List<Future<List<List<Recommendation>>>> results = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                long[] threadHistory = history(t);
                results.add(pool.submit(() -> {
                    try (User user = new User()) {
                        user.append(fixture.catalog, threadHistory);
                        List<List<Recommendation>> rankings = new ArrayList<>();
                        for (int q = 0; q < queriesEach; q++) {
                            rankings.add(fixture.catalog.recommend(user, options));
                        }
                        return rankings;
                    }
                }));
            }
            for (int t = 0; t < THREADS; t++) {
                for (List<Recommendation> ranking : results.get(t).get()) {
                    assertEquals(alone.get(t), ranking, "thread " + t);
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /** With batching on, concurrent queries share forward passes and still answer as alone. */
    @Test
    void batchedQueriesMatchSequentialOnes() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(5)) {
            List<List<Recommendation>> alone = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                alone.add(fixture.catalog.recommend(fixture.user(history(t)), options));
            }
            fixture.catalog.batching(8, Duration.ofMillis(50));
            List<Future<List<Recommendation>>> results = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                long[] threadHistory = history(t);
                results.add(pool.submit(() -> {
                    try (User user = new User()) {
                        user.append(fixture.catalog, threadHistory);
                        return fixture.catalog.recommend(user, options);
                    }
                }));
            }
            for (int t = 0; t < THREADS; t++) {
                List<Recommendation> batched = results.get(t).get();
                for (int r = 0; r < alone.get(t).size(); r++) {
                    assertEquals(alone.get(t).get(r).itemId(), batched.get(r).itemId(), "thread " + t);
                    assertEquals(alone.get(t).get(r).score(), batched.get(r).score(), 1e-4f);
                }
            }
            fixture.catalog.batching(0, Duration.ZERO);
        } finally {
            pool.shutdownNow();
        }
    }

    /** Batching beyond the library's limits is refused, naming the number. */
    @Test
    void batchingLimits() {
        try (Fixture fixture = new Fixture()) {
            Catalog catalog = fixture.catalog;
            CatalogTest.assertFails(Status.INVALID_ARGUMENT, "negative", () -> catalog.batching(-1, Duration.ZERO));
            CatalogTest.assertFails(Status.INVALID_ARGUMENT, "negative", () -> catalog.batching(1, Duration.ofNanos(-1)));
            CatalogTest.assertFails(Status.INVALID_ARGUMENT, "1025", () -> catalog.batching(1025, Duration.ZERO));
            CatalogTest.assertFails(Status.INVALID_ARGUMENT, "2000000", () -> catalog.batching(8, Duration.ofSeconds(2)));
            CatalogTest.assertFails(Status.INVALID_ARGUMENT, "max_wait",
                    () -> catalog.batching(8, Duration.ofSeconds(Long.MAX_VALUE)));
            catalog.batching(1024, Duration.ofSeconds(1));
            catalog.batching(0, Duration.ZERO);
        }
    }

    /**
     * Closing a catalogue while threads query it waits for the queries in flight; later
     * ones fail cleanly instead of reaching freed memory.
     */
    @Test
    void closeWaitsForQueriesInFlight() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        CountDownLatch started = new CountDownLatch(THREADS);
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(3)) {
            List<Future<Status>> endings = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                endings.add(pool.submit(() -> {
                    try (User user = new User()) {
                        user.append(fixture.catalog, Fixture.QUERY_HISTORY);
                        started.countDown();
                        while (true) {
                            fixture.catalog.recommend(user, options);
                        }
                    } catch (PatchrecException e) {
                        return e.status();
                    }
                }));
            }
            started.await();
            fixture.catalog.close();
            for (Future<Status> ending : endings) {
                assertEquals(Status.NULL_ARGUMENT, ending.get());
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
