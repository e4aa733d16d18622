package io.github.patchrec;

import static io.github.patchrec.CatalogTest.assertFails;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** Removing and retitling items, allow- and deny-lists, and the KV budget. */
class CatalogUpdateTest {
    /** In no test catalogue. */
    private static final long UNKNOWN_ID = 987654321L;

    /** {@code catalog.recommend} with k the catalogue's size and {@code options}' other settings. */
    private static List<Recommendation> recommendAll(Catalog catalog, User user, QueryOptions options) {
        return catalog.recommend(user, options.k(catalog.size()));
    }

    private static List<Long> sortedIds(List<Recommendation> ranking) {
        return ranking.stream().map(Recommendation::itemId).sorted().toList();
    }

    /** Fails unless {@code got} is {@code want}'s items in its order with scores within 1e-4. */
    private static void assertSameRanking(String what, List<Recommendation> want, List<Recommendation> got) {
        assertEquals(want.size(), got.size(), what + ": " + got + " vs " + want);
        for (int i = 0; i < want.size(); i++) {
            assertEquals(want.get(i).itemId(), got.get(i).itemId(), what + ", position " + (i + 1));
            assertEquals(want.get(i).score(), got.get(i).score(), 1e-4f, what + ", position " + (i + 1));
        }
    }

    /**
     * Two removed items leave the count and are never recommended or ranked again; a
     * history that held one before still works, and the removed ones cannot be appended.
     */
    @Test
    void removedItemsAreNeverRecommended() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions()) {
            Catalog catalog = fixture.catalog;
            int size = catalog.size();
            User holder = fixture.user(1, 3); // holds 3 before it is removed
            String lastTitle = catalog.title(3);
            catalog.remove(3, 7);
            assertEquals(size - 2, catalog.size());
            for (User user : new User[] {holder, fixture.user(Fixture.QUERY_HISTORY)}) {
                List<Recommendation> top = recommendAll(catalog, user, options);
                assertEquals(size - 2, top.size());
                assertTrue(top.stream().noneMatch(r -> r.itemId() == 3 || r.itemId() == 7), top.toString());
            }
            assertFails(Status.UNKNOWN_ITEM, "3", () -> catalog.rank(holder, new long[] {1, 3}));
            List<Recommendation> skipped =
                    catalog.rank(holder, new long[] {7, 1, 3}, null, RankOrder.SCORE, UnknownCandidates.SKIP);
            assertEquals(List.of(1L), sortedIds(skipped));
            assertFails(Status.UNKNOWN_ITEM, "7", () -> holder.append(catalog, 7));
            assertEquals(2, holder.size(), "a failed append changes nothing");
            assertEquals(lastTitle, catalog.title(3), "a removed item's title is its last one");

            // It may be registered again, and is then recommended again.
            catalog.add(7, "Brazil (1985)");
            List<Recommendation> again = recommendAll(catalog, holder, options.allow(7));
            assertEquals(List.of(7L), sortedIds(again));
        }
    }

    /** A removal that names an unknown id, or one id twice, fails as a whole. */
    @Test
    void removingAnUnknownIdChangesNothing() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions()) {
            Catalog catalog = fixture.catalog;
            int size = catalog.size();
            User user = fixture.user(Fixture.QUERY_HISTORY);
            List<Recommendation> before = recommendAll(catalog, user, options);
            assertFails(Status.UNKNOWN_ITEM, Long.toString(UNKNOWN_ID), () -> catalog.remove(2, UNKNOWN_ID));
            assertFails(Status.UNKNOWN_ITEM, "4", () -> catalog.remove(4, 4));
            assertFails(Status.NULL_ARGUMENT, "ids", () -> catalog.remove((long[]) null));
            catalog.remove();
            assertEquals(size, catalog.size(), "failed removals are all or nothing");
            assertEquals(Fixture.items().get(1).title(), catalog.title(2));
            assertSameRanking("after the failed removals", before, recommendAll(catalog, user, options));
        }
    }

    /**
     * A retitled item reads back with its new title, and is scored as if it had been
     * registered with it; bad titles and unknown ids change nothing.
     */
    @Test
    void setTitleReadsBackAndScoresAsRegistered() {
        String retitled = "Fargo Redux (2026)";
        try (Fixture fixture = new Fixture();
                Catalog fresh = new Catalog(fixture.model)) {
            Catalog catalog = fixture.catalog;
            catalog.setTitle(3, retitled);
            assertEquals(retitled, catalog.title(3));
            // A longer title than the first title() call's buffer held, and back.
            for (String title : new String[] {"The Good, the Bad and the Ugly: Extended Director's Cut (1966)", retitled}) {
                catalog.setTitle(3, title);
                assertEquals(title, catalog.title(3));
            }
            assertFails(Status.UNKNOWN_ITEM, Long.toString(UNKNOWN_ID), () -> catalog.setTitle(UNKNOWN_ID, "Brazil (1985)"));
            assertFails(Status.INVALID_ARGUMENT, "no visible characters", () -> catalog.setTitle(3, "  "));
            assertFails(Status.INVALID_ARGUMENT, "NUL", () -> catalog.setTitle(3, "Half\0Title"));
            assertFails(Status.INVALID_UTF8, "title", () -> catalog.setTitle(3, "Caf\uD800 (1999)"));
            assertFails(Status.NULL_ARGUMENT, "title", () -> catalog.setTitle(3, null));
            catalog.remove(5);
            assertFails(Status.UNKNOWN_ITEM, "5", () -> catalog.setTitle(5, "Gone (2000)"));
            assertEquals(retitled, catalog.title(3), "failed retitles change nothing");

            // The same items registered with the new title from the start, less item 5.
            List<Item> items = new ArrayList<>();
            for (Item item : Fixture.items()) {
                if (item.id() != 5) {
                    items.add(item.id() == 3 ? new Item(3, retitled) : item);
                }
            }
            fresh.addAll(items);
            long[] ids = items.stream().mapToLong(Item::id).toArray();
            try (User user = new User();
                    User freshUser = new User()) {
                user.append(catalog, 1, 3, 9);
                freshUser.append(fresh, 1, 3, 9);
                assertSameRanking("the retitled catalogue against one registered with the new title",
                        fresh.rank(freshUser, ids, null, RankOrder.INPUT, UnknownCandidates.FAIL),
                        catalog.rank(user, ids, null, RankOrder.INPUT, UnknownCandidates.FAIL));
            }
        }
    }

    /**
     * title() keeps reading whole titles while another thread retitles the item between a
     * short and a long title, so that the length it first asks for is often stale.
     */
    @Test
    void titleWhileRetitling() throws InterruptedException {
        String[] titles = {"The Godfather (1972)", "The Godfather: The Extended Cut, Restored and Remastered (1972)"};
        try (Fixture fixture = new Fixture()) {
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread writer = new Thread(() -> {
                try {
                    for (int i = 0; i < 300; i++) {
                        fixture.catalog.setTitle(2, titles[i % 2]);
                    }
                } catch (Throwable e) {
                    failure.set(e);
                }
            });
            writer.start();
            try {
                // Read until the writer is done, so that every read overlaps the retitling.
                for (int i = 0; writer.isAlive(); i++) {
                    String title = fixture.catalog.title(2);
                    assertTrue(title.equals(titles[0]) || title.equals(titles[1]), "read " + i + ": " + title);
                }
            } finally {
                writer.join();
            }
            assertNull(failure.get(), "the retitling thread failed");
        }
    }

    /**
     * An allow-list less a deny-list leaves exactly the allowed items not denied, scored as
     * rank scores them; an empty allow-list allows nothing; clearing the lists restores the
     * full answer; rank ignores both lists.
     */
    @Test
    void allowLessDenyLeavesTheRest() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions()) {
            Catalog catalog = fixture.catalog;
            User user = fixture.user(Fixture.QUERY_HISTORY);
            List<Recommendation> all = recommendAll(catalog, user, options);

            List<Recommendation> filtered = recommendAll(catalog, user, options.allow(2, 3, 4, UNKNOWN_ID).deny(3));
            assertEquals(List.of(2L, 4L), sortedIds(filtered));
            long[] filteredIds = filtered.stream().mapToLong(Recommendation::itemId).toArray();
            assertSameRanking("the filtered answer against rank",
                    catalog.rank(user, filteredIds, null, RankOrder.INPUT, UnknownCandidates.FAIL), filtered);
            // rank scores every candidate, whatever the lists.
            assertEquals(3, catalog.rank(user, new long[] {2, 3, 4}, options).size());

            assertEquals(List.of(), recommendAll(catalog, user, options.allow()), "an empty allow-list");
            assertEquals(List.of(), recommendAll(catalog, user, options.allow(UNKNOWN_ID)), "only an unknown id");

            List<Recommendation> denied = recommendAll(catalog, user, options.clearFilters().deny(2, UNKNOWN_ID));
            assertEquals(catalog.size() - 1, denied.size());
            assertTrue(denied.stream().noneMatch(r -> r.itemId() == 2), denied.toString());

            assertSameRanking("after clearFilters", all, recommendAll(catalog, user, options.clearFilters()));
            assertSameRanking("with an empty deny-list", all, recommendAll(catalog, user, options.deny()));
            assertFails(Status.NULL_ARGUMENT, "ids", () -> options.allow((long[]) null));
            assertFails(Status.NULL_ARGUMENT, "ids", () -> options.deny((long[]) null));
        }
    }

    /** Patches kept in f16 or computed on demand answer as f32 ones do. */
    @Test
    void patchStoragesKeepTheAnswer() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(Fixture.QUERY_K)) {
            Catalog catalog = fixture.catalog;
            User user = fixture.user(Fixture.QUERY_HISTORY);
            List<Recommendation> want = catalog.recommend(user, options);
            for (PatchStorage storage : new PatchStorage[] {PatchStorage.ON_DEMAND, PatchStorage.F16, PatchStorage.F32}) {
                catalog.patchStorage(storage);
                assertSameRanking("patches " + storage, want, catalog.recommend(user, options));
            }
            assertThrows(NullPointerException.class, () -> catalog.patchStorage(null));
        }
    }

    /**
     * A one-byte KV budget holds nothing, yet answers as no budget; a large one holds the
     * user's KV and counts a hit for a repeated query; NO_KV_BUDGET lifts it.
     */
    @Test
    void kvBudgetKeepsAnswersAndCounts() {
        try (Fixture fixture = new Fixture();
                QueryOptions options = new QueryOptions().k(Fixture.QUERY_K)) {
            Catalog catalog = fixture.catalog;
            User user = fixture.user(Fixture.QUERY_HISTORY);
            assertEquals(new KvStats(Catalog.NO_KV_BUDGET, 0, 0, 0, 0, 0), catalog.kvStats(), "no budget at first");
            assertFalse(catalog.kvStats().hasBudget());
            List<Recommendation> want = catalog.recommend(user, options);

            catalog.kvBudget(1);
            for (User u : new User[] {user, fixture.user(Fixture.QUERY_HISTORY)}) {
                assertSameRanking("under a one-byte KV budget", want, catalog.recommend(u, options));
            }
            // Each query's KV is larger than the budget, so it is dropped at once and counted.
            KvStats stats = catalog.kvStats();
            assertTrue(stats.hasBudget(), stats.toString());
            assertEquals(1, stats.capacity(), stats.toString());
            assertEquals(0, stats.bytesHeld(), stats.toString());
            assertEquals(0, stats.usersHeld(), stats.toString());
            assertEquals(2, stats.evictions(), stats.toString());
            assertEquals(2, stats.hits() + stats.misses(), stats.toString());
            assertTrue(stats.misses() >= 1, "the new user's query misses: " + stats);

            long large = 1L << 40;
            catalog.kvBudget(large);
            for (int i = 0; i < 2; i++) {
                assertSameRanking("under a large KV budget", want, catalog.recommend(user, options));
            }
            // The counters go on across budget changes: a miss (the KV was dropped), then a
            // hit, and nothing more evicted.
            stats = catalog.kvStats();
            assertEquals(large, stats.capacity(), stats.toString());
            assertTrue(stats.bytesHeld() > 0 && stats.bytesHeld() <= large, stats.toString());
            assertEquals(1, stats.usersHeld(), stats.toString());
            assertEquals(2, stats.evictions(), stats.toString());
            assertEquals(4, stats.hits() + stats.misses(), stats.toString());
            assertTrue(stats.hits() >= 1 && stats.misses() >= 2, stats.toString());

            catalog.kvBudget(Catalog.NO_KV_BUDGET);
            assertEquals(Catalog.NO_KV_BUDGET, catalog.kvStats().capacity());
            assertFalse(catalog.kvStats().hasBudget());
            assertFails(Status.INVALID_ARGUMENT, "bytes", () -> catalog.kvBudget(-2));
            assertEquals(Catalog.NO_KV_BUDGET, catalog.kvStats().capacity(), "a refused budget changes nothing");
        }
    }
}
