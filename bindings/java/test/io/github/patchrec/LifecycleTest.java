package io.github.patchrec;

import static io.github.patchrec.CatalogTest.assertFails;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.lang.ref.WeakReference;
import org.junit.jupiter.api.Test;

class LifecycleTest {
    @Test
    void handlesFailAfterClose() {
        Model model = Model.load(Fixture.checkpoint());
        Catalog catalog = new Catalog(model);
        catalog.addAll(Fixture.items());
        User user = new User();
        User otherUser = new User();
        QueryOptions options = new QueryOptions().k(3);
        user.append(catalog, Fixture.QUERY_HISTORY);

        model.close();
        model.close();
        assertEquals(3, catalog.recommend(user, options).size(), "the catalogue outlives its model handle");
        assertEquals(2, catalog.rank(user, new long[] {1, 2}, options).size(), "rank after the model handle's close()");
        assertFails(Status.NULL_ARGUMENT, "Model used after close()", () -> new Catalog(model));

        options.close();
        assertFails(Status.NULL_ARGUMENT, "QueryOptions used after close()", () -> catalog.recommend(user, options));
        assertFails(Status.NULL_ARGUMENT, "QueryOptions used after close()",
                () -> catalog.rank(user, new long[] {1, 2}, options));
        assertFails(Status.NULL_ARGUMENT, "QueryOptions used after close()", () -> options.k(2));
        assertFails(Status.NULL_ARGUMENT, "QueryOptions used after close()", () -> options.allow(1, 2));
        assertFails(Status.NULL_ARGUMENT, "QueryOptions used after close()", () -> options.deny());
        assertFails(Status.NULL_ARGUMENT, "QueryOptions used after close()", options::clearFilters);

        user.close();
        assertFails(Status.NULL_ARGUMENT, "User used after close()", () -> catalog.recommend(user));
        // Also with no candidates, for which C would take a NULL array.
        for (long[] candidates : new long[][] {{1, 2}, {}}) {
            assertFails(Status.NULL_ARGUMENT, "User used after close()", () -> catalog.rank(user, candidates));
        }
        assertFails(Status.NULL_ARGUMENT, "User used after close()", () -> user.append(catalog, 1));
        assertFails(Status.NULL_ARGUMENT, "User used after close()", user::size);

        catalog.close();
        catalog.close();
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> catalog.add(1000, "Brazil (1985)"));
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> catalog.title(1));
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> catalog.remove(1));
        // Also with no ids, for which C would take a NULL array.
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> catalog.remove());
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> catalog.setTitle(1, "Toy Story 2 (1999)"));
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> catalog.kvBudget(1));
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", catalog::kvStats);
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> catalog.layoutStats(otherUser, null));
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> catalog.recommend(otherUser));
        for (long[] candidates : new long[][] {{1, 2}, {}}) {
            assertFails(Status.NULL_ARGUMENT, "Catalog used after close()",
                    () -> catalog.rank(otherUser, candidates, null, RankOrder.INPUT, UnknownCandidates.SKIP));
        }
        assertFails(Status.NULL_ARGUMENT, "Catalog used after close()", () -> otherUser.append(catalog, 1));
        otherUser.close();
    }

    /**
     * A handle nobody closed can still be collected (and its C object freed by the
     * cleaner): a cleaning action that captured its owner would keep it alive forever.
     */
    @Test
    void forgottenHandlesAreCollectable() throws InterruptedException {
        WeakReference<User> forgotten = new WeakReference<>(new User());
        for (int i = 0; i < 100 && forgotten.get() != null; i++) {
            System.gc();
            Thread.sleep(10);
        }
        assertNull(forgotten.get(), "an unclosed User was never collected");
    }
}
