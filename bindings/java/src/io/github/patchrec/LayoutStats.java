package io.github.patchrec;

/**
 * How a history is laid out in the prompt: its length in positions (tokens and patches)
 * and the paper's compression ratio of the history (1 for vanilla).
 */
public record LayoutStats(long promptLength, double compressionRatio) {}
