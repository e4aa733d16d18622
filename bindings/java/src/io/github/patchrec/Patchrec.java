package io.github.patchrec;

/** Library-wide facts. */
public final class Patchrec {
    /**
     * The C ABI version this binding was written for: {@code PATCHREC_ABI_VERSION} in the
     * {@code patchrec.h} it follows. Model, User and QueryOptions refuse to start with a
     * library that implements another.
     */
    public static final int ABI_VERSION = 1;

    private Patchrec() {}

    /** The library's version, such as {@code "0.1.0"}. */
    public static String version() {
        return LibPatchrec.patchrec_version().getString(0, "UTF-8");
    }

    /** The C ABI version the loaded library implements. */
    public static int libraryAbiVersion() {
        return LibPatchrec.patchrec_abi_version();
    }
}
