package io.github.patchrec;

/**
 * A failed call: the library's status code and its message, which names the file, field,
 * tensor, item or parameter at fault. {@link #getMessage()} starts with the status's C
 * name, such as {@code PATCHREC_UNKNOWN_ITEM: }.
 */
public final class PatchrecException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int code;
    private final String detail;

    PatchrecException(int code, String detail) {
        super(LibPatchrec.statusName(code) + ": " + detail);
        this.code = code;
        this.detail = detail;
    }

    PatchrecException(Status status, String detail) {
        this(status.code(), detail);
    }

    /** The C status code, also for a status this binding predates. */
    public int code() {
        return code;
    }

    public Status status() {
        return Status.of(code);
    }

    /** The library's message without the status name. */
    public String detail() {
        return detail;
    }
}
