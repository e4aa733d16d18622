package io.github.patchrec;

/**
 * A catalogue's KV budget, as {@link Catalog#kvStats()} reports it
 * ({@code patchrec_kv_stats_t}). Without a budget nothing is counted: {@code capacity} is
 * {@link Catalog#NO_KV_BUDGET} and the rest are 0.
 *
 * @param capacity the budget in bytes, or {@link Catalog#NO_KV_BUDGET} when none is set
 * @param bytesHeld the bytes of prompt KV that the catalogue's users hold now
 * @param usersHeld how many users hold KV now
 * @param hits the queries that found their user's KV cached
 * @param misses the queries that found none (a new user, or one evicted)
 * @param evictions the users' KV dropped to stay within the budget
 */
public record KvStats(long capacity, long bytesHeld, long usersHeld, long hits, long misses, long evictions) {
    /** Whether a budget is set, that is, {@code capacity} is not {@link Catalog#NO_KV_BUDGET}. */
    public boolean hasBudget() {
        return capacity != Catalog.NO_KV_BUDGET;
    }
}
