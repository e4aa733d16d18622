package io.github.patchrec;

import static io.github.patchrec.CatalogTest.assertFails;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class RankTest {
    /** In no test catalogue. */
    private static final long UNKNOWN_ID = 987654321L;

    /** The exact top-5 query with {@code layout} and {@code param} (null layout: the checkpoint's). */
    private static QueryOptions exactTop5(Layout layout, int param) {
        QueryOptions options = new QueryOptions().k(5).exact(true);
        return layout == null ? options : options.layout(layout, param);
    }

    /** Recommend's answer for {@code user}, which must hold 5 items. */
    private static List<Recommendation> top5(Fixture fixture, User user, QueryOptions options) {
        List<Recommendation> top = fixture.catalog.recommend(user, options);
        assertEquals(5, top.size(), "recommend's answer");
        return top;
    }

    /** {@code top}'s ids last to first, then the second of them again. */
    private static long[] reversedWithDuplicate(List<Recommendation> top) {
        long[] ids = new long[top.size() + 1];
        for (int i = 0; i < top.size(); i++) {
            ids[i] = top.get(top.size() - 1 - i).itemId();
        }
        ids[top.size()] = ids[1];
        return ids;
    }

    /** {@code got} must be {@code want}'s items in {@code want}'s order, scores within 1e-4. */
    private static void assertSameRanking(String what, List<Recommendation> want, List<Recommendation> got) {
        assertEquals(want.size(), got.size(), what + ": " + got + ", want " + want);
        for (int i = 0; i < want.size(); i++) {
            assertEquals(want.get(i).itemId(), got.get(i).itemId(), what + ", position " + (i + 1) + ": " + got);
            assertEquals(want.get(i).score(), got.get(i).score(), 1e-4f, what + ", position " + (i + 1));
        }
    }

    /**
     * Ranking recommend's exact top 5, reversed and with one id twice, gives that top 5 back: the
     * same ids best first, each once, with recommend's scores. Under two layouts, whose scores
     * differ, so the options must reach C.
     */
    @Test
    void scoresAsRecommend() {
        try (Fixture fixture = new Fixture();
                QueryOptions vanilla = exactTop5(Layout.VANILLA, 0);
                QueryOptions pftS = exactTop5(Layout.PFT_S, 2)) {
            List<Float> bestScores = new ArrayList<>();
            for (QueryOptions options : new QueryOptions[] {vanilla, pftS}) {
                User user = fixture.user(Fixture.QUERY_HISTORY);
                List<Recommendation> top = top5(fixture, user, options);
                long[] candidates = reversedWithDuplicate(top);
                assertSameRanking("rank of recommend's top 5", top, fixture.catalog.rank(user, candidates, options));
                assertSameRanking("the same, in score order and failing on unknown ids explicitly", top,
                        fixture.catalog.rank(user, candidates, options, RankOrder.SCORE, UnknownCandidates.FAIL));
                // A fresh user, with no prompt KV cached, answers alike.
                assertSameRanking("rank for a fresh user", top,
                        fixture.catalog.rank(fixture.user(Fixture.QUERY_HISTORY), candidates, options));
                bestScores.add(top.get(0).score());
            }
            assertNotEquals(bestScores.get(0), bestScores.get(1),
                    "vanilla and PFT-S:2 give the same best score: the test cannot tell the layouts apart");
        }
    }

    /** Without options (null or none) rank uses the checkpoint's layout, as recommend does. */
    @Test
    void defaultOptions() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = exactTop5(null, 0)) {
            User user = fixture.user(Fixture.QUERY_HISTORY);
            List<Recommendation> top = top5(fixture, user, options);
            long[] candidates = reversedWithDuplicate(top);
            assertSameRanking("rank with no options", top, fixture.catalog.rank(user, candidates));
            assertSameRanking("rank with null options", top, fixture.catalog.rank(user, candidates, null));
        }
    }

    /** Input order keeps the candidates' order, a duplicate at its first occurrence, with the best-first scores. */
    @Test
    void inputOrderKeepsTheCandidatesOrder() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = exactTop5(null, 0)) {
            User user = fixture.user(Fixture.QUERY_HISTORY);
            List<Recommendation> top = top5(fixture, user, options);
            long[] candidates = reversedWithDuplicate(top);
            Map<Long, Float> scores = new HashMap<>();
            for (Recommendation r : fixture.catalog.rank(user, candidates, options)) {
                scores.put(r.itemId(), r.score());
            }
            List<Recommendation> want = new ArrayList<>();
            for (int i = 0; i < top.size(); i++) {
                want.add(new Recommendation(candidates[i], scores.get(candidates[i])));
            }
            assertSameRanking("rank in input order", want,
                    fixture.catalog.rank(user, candidates, options, RankOrder.INPUT, UnknownCandidates.FAIL));
            // A duplicate stays at its first occurrence, not its last.
            long first = top.get(2).itemId();
            List<Recommendation> got = fixture.catalog.rank(user,
                    new long[] {first, top.get(0).itemId(), first, top.get(1).itemId()}, null, RankOrder.INPUT,
                    UnknownCandidates.FAIL);
            assertEquals(List.of(first, top.get(0).itemId(), top.get(1).itemId()),
                    got.stream().map(Recommendation::itemId).toList());
        }
    }

    /** An unknown candidate fails naming it; with SKIP it is left out. */
    @Test
    void unknownCandidatesFailOrAreSkipped() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = exactTop5(null, 0)) {
            Catalog catalog = fixture.catalog;
            User user = fixture.user(Fixture.QUERY_HISTORY);
            List<Recommendation> top = top5(fixture, user, options);
            long[] candidates = {top.get(1).itemId(), UNKNOWN_ID, top.get(0).itemId()};
            assertFails(Status.UNKNOWN_ITEM, "987654321", () -> catalog.rank(user, candidates));
            assertFails(Status.UNKNOWN_ITEM, "987654321", () -> catalog.rank(user, candidates, options));
            assertFails(Status.UNKNOWN_ITEM, "987654321",
                    () -> catalog.rank(user, candidates, options, RankOrder.INPUT, UnknownCandidates.FAIL));
            assertSameRanking("rank skipping an unknown id", top.subList(0, 2),
                    catalog.rank(user, candidates, options, RankOrder.SCORE, UnknownCandidates.SKIP));
            assertSameRanking("rank skipping an unknown id, in input order", List.of(top.get(1), top.get(0)),
                    catalog.rank(user, candidates, options, RankOrder.INPUT, UnknownCandidates.SKIP));
            assertEquals(List.of(), catalog.rank(user, new long[] {UNKNOWN_ID, UNKNOWN_ID + 1}, null,
                    RankOrder.SCORE, UnknownCandidates.SKIP), "only unknown ids, skipped");
        }
    }

    @Test
    void noCandidatesGiveAnEmptyAnswer() {
        try (Fixture fixture = new Fixture()) {
            User user = fixture.user(Fixture.QUERY_HISTORY);
            assertEquals(List.of(), fixture.catalog.rank(user, new long[0]));
            assertEquals(List.of(), fixture.catalog.rank(user, new long[0], null, RankOrder.INPUT, UnknownCandidates.SKIP));
        }
    }

    /** The binding's own checks: null arguments, and options checked as recommend checks them. */
    @Test
    void badArguments() {
        try (Fixture fixture = new Fixture();
                QueryOptions gapWithPftS = new QueryOptions().layout(Layout.PFT_S, 2).sessionGap(Duration.ofHours(1))) {
            Catalog catalog = fixture.catalog;
            User user = fixture.user(Fixture.QUERY_HISTORY);
            long[] one = {1};
            assertFails(Status.NULL_ARGUMENT, "candidates", () -> catalog.rank(user, null));
            assertFails(Status.NULL_ARGUMENT, "user", () -> catalog.rank(null, one));
            assertFails(Status.NULL_ARGUMENT, "order", () -> catalog.rank(user, one, null, null, UnknownCandidates.FAIL));
            assertFails(Status.NULL_ARGUMENT, "unknown", () -> catalog.rank(user, one, null, RankOrder.SCORE, null));
            assertFails(Status.INVALID_ARGUMENT, "stream-s", () -> catalog.rank(user, one, gapWithPftS));
        }
    }
}
