package patchrec_test

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkRecommend times the query that TestRecommendMatchesCAPI checks, one call at a
// time, and reports the median as median-ns/op, for comparison with the C reference's
// median on the same query (scripts/test-bindings.sh --latency runs both).
func BenchmarkRecommend(b *testing.B) {
	catalog := newCatalog(b)
	user := newUser(b, catalog, queryHistory...)
	options := newQueryOptions(b, queryK)
	const warmUp = 10
	for i := 0; i < warmUp; i++ {
		if _, err := catalog.Recommend(user, options); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range elapsed {
		start := time.Now()
		_, err := catalog.Recommend(user, options)
		elapsed[i] = time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	sort.Slice(elapsed, func(i, j int) bool { return elapsed[i] < elapsed[j] })
	b.ReportMetric(float64(elapsed[len(elapsed)/2].Nanoseconds()), "median-ns/op")
}
