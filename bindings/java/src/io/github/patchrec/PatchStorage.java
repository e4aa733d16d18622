package io.github.patchrec;

/** How a {@link Catalog} keeps its items' patches ({@code patchrec_patch_storage_t}). */
public enum PatchStorage {
    /** Computed at registration and kept in f32 (the model's hidden size x 4 bytes per item). */
    F32(0),
    /** Kept in f16: half the bytes; scores move by f16 rounding. */
    F16(1),
    /** None kept: each computed from its title's tokens when a prompt needs it, with the values {@link #F32} keeps. The default. */
    ON_DEMAND(2);

    /** The {@code patchrec_patch_storage_t} value. */
    final int value;

    PatchStorage(int value) {
        this.value = value;
    }
}
