package io.github.patchrec;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
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
        // And the other way round: every status the header defines has its constant here.
        Matcher statuses = Pattern.compile("enum patchrec_status_t\\b.*?\\{(.*?)\\};", Pattern.DOTALL).matcher(header);
        assertTrue(statuses.find(), "no enum patchrec_status_t in " + Fixture.HEADER);
        Matcher defined = Pattern.compile("PATCHREC_(\\w+) = (\\d+),").matcher(statuses.group(1));
        int count = 0;
        while (defined.find()) {
            count++;
            assertEquals(Integer.parseInt(defined.group(2)), Status.valueOf(defined.group(1)).code(), defined.group());
        }
        assertEquals(Status.values().length - 1, count, "the header's statuses, against Status less UNRECOGNIZED");
        for (Layout layout : Layout.values()) {
            String constant = "PATCHREC_LAYOUT_" + layout.name();
            assertTrue(header.contains(constant + " = " + layout.code + ","), constant);
        }
        // The patchrec_rank flags, and the enums that carry them (0: no flag, the default).
        assertTrue(header.contains("#define PATCHREC_RANK_INPUT_ORDER " + LibPatchrec.RANK_INPUT_ORDER + "\n"),
                "PATCHREC_RANK_INPUT_ORDER");
        assertTrue(header.contains("#define PATCHREC_RANK_SKIP_UNKNOWN " + LibPatchrec.RANK_SKIP_UNKNOWN + "\n"),
                "PATCHREC_RANK_SKIP_UNKNOWN");
        assertEquals(0, RankOrder.SCORE.flag);
        assertEquals(LibPatchrec.RANK_INPUT_ORDER, RankOrder.INPUT.flag);
        assertEquals(0, UnknownCandidates.FAIL.flag);
        assertEquals(LibPatchrec.RANK_SKIP_UNKNOWN, UnknownCandidates.SKIP.flag);
    }

    /** The fields of struct {@code name} in the header, each as "type name" with single spaces. */
    private static List<String> structFields(String name) throws IOException {
        String header = Files.readString(Fixture.HEADER);
        Matcher struct = Pattern.compile(
                "typedef struct " + name + " \\{(.*?)\\} " + name + ";", Pattern.DOTALL).matcher(header);
        assertTrue(struct.find(), "no " + name + " in " + Fixture.HEADER);
        List<String> fields = new ArrayList<>();
        for (String field : struct.group(1).replaceAll("(?s)/\\*.*?\\*/", "").replaceAll("//[^\n]*", "").split(";")) {
            if (!field.isBlank()) {
                fields.add(field.strip().replaceAll("\\s+", " "));
            }
        }
        return fields;
    }

    /** Each field's offset with natural alignment on a 64-bit platform, which requireAbi insists on. */
    private static int[] offsets(List<String> fields) {
        int[] offsets = new int[fields.size()];
        int offset = 0;
        for (int i = 0; i < fields.size(); i++) {
            int size = fields.get(i).startsWith("uint32_t ") ? 4 : 8;
            offset = (offset + size - 1) / size * size;
            offsets[i] = offset;
            offset += size;
        }
        return offsets;
    }

    /** The binding reads patchrec_kv_stats_t by offset: the header's fields must be the ones it expects. */
    @Test
    void kvStatsLayoutMatchesTheHeader() throws IOException {
        List<String> fields = structFields("patchrec_kv_stats_t");
        assertEquals(List.of(LibPatchrec.KV_STATS_FIELDS), fields);
        assertArrayEquals(offsets(fields), new int[] {
            LibPatchrec.KV_STATS_CAPACITY_OFFSET,
            LibPatchrec.KV_STATS_BYTES_HELD_OFFSET,
            LibPatchrec.KV_STATS_USERS_HELD_OFFSET,
            LibPatchrec.KV_STATS_HITS_OFFSET,
            LibPatchrec.KV_STATS_MISSES_OFFSET,
            LibPatchrec.KV_STATS_EVICTIONS_OFFSET,
        });
        assertEquals(8 * fields.size(), LibPatchrec.KV_STATS_SIZE);
    }

    /** The binding reads patchrec_train_progress_t by offset: the header's fields must be the ones it expects. */
    @Test
    void trainProgressLayoutMatchesTheHeader() throws IOException {
        List<String> fields = structFields("patchrec_train_progress_t");
        assertEquals(List.of(LibPatchrec.TRAIN_PROGRESS_FIELDS), fields);
        assertArrayEquals(offsets(fields), new int[] {
            LibPatchrec.TRAIN_PROGRESS_STAGE_OFFSET,
            LibPatchrec.TRAIN_PROGRESS_STAGE_INDEX_OFFSET,
            LibPatchrec.TRAIN_PROGRESS_STEP_OFFSET,
            LibPatchrec.TRAIN_PROGRESS_TOTAL_STEPS_OFFSET,
            LibPatchrec.TRAIN_PROGRESS_LOSS_OFFSET,
            LibPatchrec.TRAIN_PROGRESS_LEARNING_RATE_OFFSET,
            LibPatchrec.TRAIN_PROGRESS_TOKENS_PER_SECOND_OFFSET,
        });
    }

    @Test
    void loadedLibraryImplementsThisAbi() {
        assertEquals(Patchrec.ABI_VERSION, Patchrec.libraryAbiVersion());
        assertFalse(Patchrec.version().isEmpty());
    }

    @Test
    void mismatchIsAClearError() {
        assertNull(LibPatchrec.abiMismatch(2, 2, 8));
        PatchrecException version = LibPatchrec.abiMismatch(1, 2, 8);
        assertEquals(Status.UNSUPPORTED, version.status());
        assertTrue(version.detail().contains("implements C ABI version 1, but this Java binding was written for version 2"),
                version.getMessage());
        PatchrecException sizeT = LibPatchrec.abiMismatch(2, 2, 4);
        assertTrue(sizeT.detail().contains("size_t has 4 bytes"), sizeT.getMessage());
    }
}
