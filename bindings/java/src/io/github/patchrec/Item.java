package io.github.patchrec;

/** One catalogue entry. Ids are the caller's own: any 64-bit value, read as unsigned by C. */
public record Item(long id, String title) {}
