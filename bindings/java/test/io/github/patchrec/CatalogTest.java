package io.github.patchrec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

class CatalogTest {
    /** Runs {@code call}, which must fail with {@code status} and a message containing {@code needle}. */
    static PatchrecException assertFails(Status status, String needle, Executable call) {
        PatchrecException e = assertThrows(PatchrecException.class, call);
        assertEquals(status, e.status(), e.getMessage());
        assertEquals(status.code(), e.code());
        assertTrue(e.detail().contains(needle), e.getMessage() + " lacks " + needle);
        return e;
    }

    @Test
    void titlesRoundTrip() {
        List<Item> items = Fixture.items();
        try (Fixture fixture = new Fixture()) {
            assertEquals(items.size(), fixture.catalog.size());
            for (Item item : items) {
                assertEquals(item.title(), fixture.catalog.title(item.id()));
            }
            assertEquals("Amélie (2001)", fixture.catalog.title(41), "a non-ASCII title");
            assertFails(Status.UNKNOWN_ITEM, "999", () -> fixture.catalog.title(999));
        }
    }

    @Test
    void badRegistrationsChangeNothing() {
        try (Fixture fixture = new Fixture()) {
            Catalog catalog = fixture.catalog;
            int size = catalog.size();
            assertFails(Status.DUPLICATE_ITEM, "item id 2", () -> catalog.add(2, "Heat again"));
            assertFails(Status.INVALID_UTF8, "title", () -> catalog.add(1000, "Caf\uD800 (1999)"));
            assertFails(Status.INVALID_ARGUMENT, "NUL", () -> catalog.add(1000, "Half\0Title"));
            assertFails(Status.INVALID_ARGUMENT, "no visible characters", () -> catalog.add(1000, "  "));
            assertFails(Status.INVALID_ARGUMENT, "no visible characters", () -> catalog.add(1000, "\u200B\u2060"));
            assertFails(Status.INVALID_ARGUMENT, "control character", () -> catalog.add(1000, "Line\nBreak"));
            assertFails(Status.INVALID_ARGUMENT, "4096", () -> catalog.add(1000, "a".repeat(4097)));
            assertFails(Status.INVALID_ARGUMENT, "tokens", () -> catalog.add(1000, "x ".repeat(1500)));
            assertFails(Status.NULL_ARGUMENT, "title", () -> catalog.add(1000, null));
            assertFails(Status.DUPLICATE_ITEM, "item id 1",
                    () -> catalog.addAll(List.of(new Item(1001, "Ran (1985)"), new Item(1, "Toy Story again"))));
            assertFails(Status.INVALID_UTF8, "titles[1]",
                    () -> catalog.addAll(List.of(new Item(1001, "Ran (1985)"), new Item(1002, "\uDC00"))));
            assertEquals(size, catalog.size(), "failed registrations are all or nothing");

            catalog.add(1000, "Brazil (1985)");
            catalog.addAll(List.of());
            assertEquals(size + 1, catalog.size());
            assertEquals("Brazil (1985)", catalog.title(1000));
        }
    }

    @Test
    void emptyCatalogueCannotRecommend() {
        try (Model model = Model.load(Fixture.checkpoint());
                Catalog catalog = new Catalog(model);
                User user = new User()) {
            assertFails(Status.INVALID_ARGUMENT, "empty", () -> catalog.recommend(user));
        }
    }
}
