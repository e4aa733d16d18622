package io.github.patchrec;

import static io.github.patchrec.CatalogTest.assertFails;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class ErrorTest {
    @Test
    void loadFailures() {
        assertFails(Status.IO, "/nonexistent/patchrec-checkpoint",
                () -> Model.load(Path.of("/nonexistent/patchrec-checkpoint")));
        assertFails(Status.INVALID_ARGUMENT, "tpu", () -> Model.load(Fixture.checkpoint(), "tpu"));
        assertFails(Status.INVALID_UTF8, "device", () -> Model.load(Fixture.checkpoint(), "cpu\uD800"));
        Model.load(Fixture.checkpoint(), "cpu").close();
        assertFails(Status.INVALID_ARGUMENT, "q5_k", () -> Model.load(Fixture.checkpoint(), "cpu", "q5_k"));
        Model.load(Fixture.checkpoint(), "cpu", "q8_0").close();
    }

    @Test
    void queryOptionFailures() {
        try (QueryOptions options = new QueryOptions()) {
            assertFails(Status.INVALID_ARGUMENT, "k must be at least 1", () -> options.k(0));
            assertFails(Status.INVALID_ARGUMENT, "`k` is negative", () -> options.k(-1));
            assertFails(Status.INVALID_ARGUMENT, "group size L", () -> options.layout(Layout.PFT_S, 0));
        }
    }

    @Test
    void messageStartsWithTheStatusName() {
        try (Fixture fixture = new Fixture()) {
            PatchrecException e = assertFails(Status.UNKNOWN_ITEM, "999", () -> fixture.user(999));
            assertTrue(e.getMessage().startsWith("PATCHREC_UNKNOWN_ITEM: "), e.getMessage());
        }
    }

    @Test
    void unknownCodesStayReadable() {
        PatchrecException e = new PatchrecException(9999, "from a newer library");
        assertEquals(Status.UNRECOGNIZED, e.status());
        assertEquals(9999, e.code());
        assertEquals("PATCHREC_UNKNOWN_STATUS: from a newer library", e.getMessage());
    }
}
