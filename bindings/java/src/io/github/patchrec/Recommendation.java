package io.github.patchrec;

/**
 * One recommended item; {@code score} is the log-probability of its title given the
 * prompt, higher is better.
 */
public record Recommendation(long itemId, float score) {}
