package io.github.patchrec;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** Java cannot include patchrec.h, so these tests hold the binding's copies of its numbers to it. */
class AbiTest {
    @Test
    void constantsMatchTheHeader() throws IOException {
        String header = Files.readString(Fixture.HEADER);
        Matcher version = Pattern.compile("#define PATCHREC_ABI_VERSION (\\d+)").matcher(header);
        assertTrue(version.find(), "no PATCHREC_ABI_VERSION in " + Fixture.HEADER);
        assertEquals(Integer.parseInt(version.group(1)), Patchrec.ABI_VERSION);
        for (Status status : Status.values()) {
            if (status != Status.UNRECOGNIZED) {
                String constant = "PATCHREC_" + status.name();
                assertTrue(header.contains(constant + " = " + status.code() + ","), constant);
                assertEquals(constant, LibPatchrec.statusName(status.code()));
            }
        }
        for (Layout layout : Layout.values()) {
            String constant = "PATCHREC_LAYOUT_" + layout.name();
            assertTrue(header.contains(constant + " = " + layout.code + ","), constant);
        }
    }

    @Test
    void loadedLibraryImplementsThisAbi() {
        assertEquals(Patchrec.ABI_VERSION, Patchrec.libraryAbiVersion());
        assertFalse(Patchrec.version().isEmpty());
    }

    @Test
    void mismatchIsAClearError() {
        assertNull(LibPatchrec.abiMismatch(1, 1, 8));
        PatchrecException version = LibPatchrec.abiMismatch(2, 1, 8);
        assertEquals(Status.UNSUPPORTED, version.status());
        assertTrue(version.detail().contains("implements C ABI version 2, but this Java binding was written for version 1"),
                version.getMessage());
        PatchrecException sizeT = LibPatchrec.abiMismatch(1, 1, 4);
        assertTrue(sizeT.detail().contains("size_t has 4 bytes"), sizeT.getMessage());
    }
}
