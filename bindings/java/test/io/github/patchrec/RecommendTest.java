package io.github.patchrec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class RecommendTest {
    @Test
    void matchesTheCApi() throws Exception {
        List<Recommendation> want = Fixture.cReference(Fixture.QUERY_HISTORY, Fixture.QUERY_K);
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(Fixture.QUERY_K)) {
            List<Recommendation> got = fixture.catalog.recommend(fixture.user(Fixture.QUERY_HISTORY), options);
            assertEquals(Fixture.QUERY_K, want.size());
            // Records compare floats bit for bit: the binding must pass the library's scores through untouched.
            assertEquals(want, got);
            for (int i = 1; i < got.size(); i++) {
                assertTrue(got.get(i).score() <= got.get(i - 1).score(), "best first");
            }
        }
    }

    @Test
    void defaultOptionsGiveTen() {
        try (Fixture fixture = new Fixture()) {
            assertEquals(10, fixture.catalog.recommend(fixture.user(Fixture.QUERY_HISTORY)).size());
        }
    }

    @Test
    void excludeHistoryLeavesOnlyUnseenItems() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(fixture.catalog.size()).excludeHistory(true)) {
            List<Recommendation> top = fixture.catalog.recommend(fixture.user(Fixture.QUERY_HISTORY), options);
            assertEquals(fixture.catalog.size() - Fixture.QUERY_HISTORY.length, top.size());
            for (Recommendation r : top) {
                assertFalse(Arrays.stream(Fixture.QUERY_HISTORY).anyMatch(id -> id == r.itemId()),
                        "history item " + r.itemId() + " recommended");
            }
        }
    }

    @Test
    void pftSCompressesTheHistory() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().layout(Layout.VANILLA, 0)) {
            User user = fixture.user(Fixture.QUERY_HISTORY);
            LayoutStats vanilla = fixture.catalog.layoutStats(user, options);
            LayoutStats compressed = fixture.catalog.layoutStats(user, options.layout(Layout.PFT_S, 2));
            assertEquals(1.0, vanilla.compressionRatio());
            assertTrue(compressed.compressionRatio() > 1.0, compressed.toString());
            assertTrue(compressed.promptLength() < vanilla.promptLength(), compressed + " vs " + vanilla);
        }
    }

    /** A user keeps its prompt's KV between queries; each answer must equal a fresh user's. */
    @Test
    void streamLayoutCachedQueriesEqualFreshOnes() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(Fixture.QUERY_K).layout(Layout.STREAM_S, 3)) {
            User user = fixture.user();
            long[] history = Fixture.QUERY_HISTORY;
            for (int i = 0; i < history.length; i++) {
                user.append(fixture.catalog, history[i]);
                List<Recommendation> cached = fixture.catalog.recommend(user, options);
                List<Recommendation> fresh =
                        fixture.catalog.recommend(fixture.user(Arrays.copyOf(history, i + 1)), options);
                assertEquals(fresh.size(), cached.size());
                for (int r = 0; r < fresh.size(); r++) {
                    assertEquals(fresh.get(r).itemId(), cached.get(r).itemId(), "after " + (i + 1) + " items, rank " + (r + 1));
                    assertEquals(fresh.get(r).score(), cached.get(r).score(), 1e-4f);
                }
            }
        }
    }

    /**
     * A session gap groups a timestamped history by visit (two items each here): the prompt differs
     * from the counted sessions', a cached user still answers as a fresh one, and a gap with another
     * layout, a negative or a fractional gap are invalid arguments.
     */
    @Test
    void sessionGapGroupsByVisit() {
        long[] history = Fixture.QUERY_HISTORY;
        Instant[] times = new Instant[history.length];
        Instant start = Instant.ofEpochSecond(1_700_000_000L);
        for (int i = 0; i < times.length; i++) {
            times[i] = start.plus(Duration.ofDays(i / 2)).plus(Duration.ofMinutes(i % 2));
        }
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(Fixture.QUERY_K).layout(Layout.STREAM_S, 4)) {
            User all = fixture.user();
            all.appendWithTimes(fixture.catalog, history, times);
            LayoutStats counted = fixture.catalog.layoutStats(all, options);
            LayoutStats visits = fixture.catalog.layoutStats(all, options.sessionGap(Duration.ofHours(1)));
            assertTrue(visits.promptLength() < counted.promptLength(), visits + " vs " + counted);
            assertTrue(visits.compressionRatio() > counted.compressionRatio(), visits + " vs " + counted);
            User user = fixture.user();
            for (int i = 0; i < history.length; i++) {
                user.appendWithTimes(fixture.catalog, new long[] {history[i]}, new Instant[] {times[i]});
                User fresh = fixture.user();
                fresh.appendWithTimes(fixture.catalog, Arrays.copyOf(history, i + 1), Arrays.copyOf(times, i + 1));
                List<Recommendation> want = fixture.catalog.recommend(fresh, options);
                List<Recommendation> got = fixture.catalog.recommend(user, options);
                for (int r = 0; r < want.size(); r++) {
                    assertEquals(want.get(r).itemId(), got.get(r).itemId(), "after " + (i + 1) + " items, rank " + (r + 1));
                    assertEquals(want.get(r).score(), got.get(r).score(), 1e-4f);
                }
            }
            assertEquals(counted, fixture.catalog.layoutStats(all, options.sessionGap(Duration.ZERO)));
            for (Duration bad : new Duration[] {Duration.ofSeconds(-1), Duration.ofMillis(1500)}) {
                PatchrecException e = assertThrows(PatchrecException.class, () -> options.sessionGap(bad));
                assertEquals(Status.INVALID_ARGUMENT, e.status(), e.getMessage());
            }
            options.sessionGap(Duration.ofHours(1)).layout(Layout.PFT_S, 4);
            PatchrecException e = assertThrows(PatchrecException.class, () -> fixture.catalog.recommend(user, options));
            assertEquals(Status.INVALID_ARGUMENT, e.status(), e.getMessage());
            assertTrue(e.detail().contains("stream-s"), e.getMessage());
        }
    }

    /** Exact ranking equals a beam as wide as the catalogue, whatever beam width is set. */
    @Test
    void exactRankingEqualsAFullWidthBeam() {
        try (Fixture fixture = new Fixture();
                QueryOptions exact = new QueryOptions().k(5).beamWidth(1).exact(true);
                QueryOptions wide = new QueryOptions().k(5).beamWidth(fixture.catalog.size())) {
            User user = fixture.user(Fixture.QUERY_HISTORY);
            List<Recommendation> got = fixture.catalog.recommend(user, exact);
            List<Recommendation> want = fixture.catalog.recommend(user, wide);
            assertEquals(want.size(), got.size());
            for (int r = 0; r < want.size(); r++) {
                assertEquals(want.get(r).itemId(), got.get(r).itemId(), "rank " + (r + 1));
                assertEquals(want.get(r).score(), got.get(r).score(), 1e-4f);
            }
        }
    }

    @Test
    void nullOptionsMeanTheDefaults() {
        try (Fixture fixture = new Fixture();
                QueryOptions defaults = new QueryOptions()) {
            User user = fixture.user(Fixture.QUERY_HISTORY);
            assertEquals(fixture.catalog.layoutStats(user, defaults), fixture.catalog.layoutStats(user, null));
            assertEquals(fixture.catalog.recommend(user, defaults), fixture.catalog.recommend(user, null));
        }
    }
}
