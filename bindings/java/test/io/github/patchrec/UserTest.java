package io.github.patchrec;

import static io.github.patchrec.CatalogTest.assertFails;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Instant;
import org.junit.jupiter.api.Test;

class UserTest {
    @Test
    void appendIsAllOrNothing() {
        try (Fixture fixture = new Fixture()) {
            User user = fixture.user(1, 2);
            assertFails(Status.UNKNOWN_ITEM, "999", () -> user.append(fixture.catalog, 3, 999));
            assertEquals(2, user.size());
            user.appendWithTimes(fixture.catalog, new long[] {3, 4}, new Instant[] {Instant.ofEpochSecond(1_000_000), null});
            assertEquals(4, user.size());
            assertFails(Status.INVALID_ARGUMENT, "1 item ids but 0 times",
                    () -> user.appendWithTimes(fixture.catalog, new long[] {5}, new Instant[0]));
            user.clear();
            assertEquals(0, user.size());
            assertEquals(10, fixture.catalog.recommend(fixture.user(1)).size(), "a one-item history");
        }
    }
}
