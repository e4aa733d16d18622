/**
 * libpatchrec for Java; see the package {@link io.github.patchrec}. JNA calls the C
 * library, and its types never appear in the API, so a service needs JNA at run time
 * but does not read it.
 */
module io.github.patchrec {
    requires com.sun.jna;

    exports io.github.patchrec;
}
