package io.github.patchrec;

/**
 * A libpatchrec status code ({@code patchrec_status_t}); see {@code patchrec.h} for when
 * each occurs. The numbers are stable and only ever appended to, so a newer library may
 * return one this enum does not know: that is {@link #UNRECOGNIZED}, and
 * {@link PatchrecException#code()} still holds the number.
 */
public enum Status {
    OK(0),
    INVALID_ARGUMENT(1),
    NULL_ARGUMENT(2),
    INVALID_UTF8(3),
    IO(4),
    FORMAT(5),
    UNSUPPORTED(6),
    UNKNOWN_ITEM(7),
    DUPLICATE_ITEM(8),
    BUFFER_TOO_SMALL(9),
    TOKENIZER(10),
    TENSOR(11),
    PANIC(12),
    STOPPED(13),
    OUT_OF_MEMORY(14),
    NON_FINITE(15),
    /** A code that this binding predates. */
    UNRECOGNIZED(-1);

    private final int code;

    Status(int code) {
        this.code = code;
    }

    /** The C value. */
    public int code() {
        return code;
    }

    /** The status with C value {@code code}, or {@link #UNRECOGNIZED}. */
    public static Status of(int code) {
        for (Status status : values()) {
            if (status.code == code) {
                return status;
            }
        }
        return UNRECOGNIZED;
    }
}
