package patchrec_test

import (
	"math"
	"testing"

	"github.com/patchrec/patchrec/bindings/go/patchrec"
)

// unknownID is in no test catalogue.
const unknownID uint64 = 987654321

// rankFixture is a user with queryHistory and Recommend's exact top 5 for it with query.
func rankFixture(t *testing.T, catalog *patchrec.Catalog, query *patchrec.QueryOptions) (*patchrec.User, []patchrec.Recommendation) {
	t.Helper()
	user := newUser(t, catalog, queryHistory...)
	top, err := catalog.Recommend(user, query)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 5 {
		t.Fatalf("Recommend gave %d items, want 5", len(top))
	}
	return user, top
}

// exactTop5 is the exact top-5 query with layout (nil: the checkpoint's).
func exactTop5(layout *patchrec.LayoutChoice) *patchrec.QueryOptions {
	return &patchrec.QueryOptions{K: 5, Exact: true, Layout: layout}
}

// reversedWithDuplicate is top's ids last to first, then the second of them again.
func reversedWithDuplicate(top []patchrec.Recommendation) []uint64 {
	ids := make([]uint64, 0, len(top)+1)
	for i := len(top) - 1; i >= 0; i-- {
		ids = append(ids, top[i].ItemID)
	}
	return append(ids, ids[1])
}

// requireSameRanking fails t unless got is want's items in want's order with scores
// within 1e-4.
func requireSameRanking(t *testing.T, what string, got, want []patchrec.Recommendation) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d items %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range want {
		if got[i].ItemID != want[i].ItemID || math.Abs(float64(got[i].Score-want[i].Score)) > 1e-4 {
			t.Errorf("%s, position %d: got %v, want %v", what, i+1, got[i], want[i])
		}
	}
}

// rank is catalog.Rank, failing t on error.
func rank(t *testing.T, catalog *patchrec.Catalog, user *patchrec.User, candidates []uint64, options *patchrec.RankOptions) []patchrec.Recommendation {
	t.Helper()
	ranked, err := catalog.Rank(user, candidates, options)
	if err != nil {
		t.Fatalf("Rank(%v, %+v): %v", candidates, options, err)
	}
	return ranked
}

// Ranking Recommend's exact top 5, reversed and with one id twice, gives that top 5 back:
// the same ids best first, each once, with Recommend's scores. Under two layouts, whose
// scores differ, so the query options must reach C.
func TestRankScoresAsRecommend(t *testing.T) {
	catalog := newCatalog(t)
	var tops [][]patchrec.Recommendation
	for _, layout := range []*patchrec.LayoutChoice{
		{Kind: patchrec.LayoutVanilla},
		{Kind: patchrec.LayoutPFTS, Param: 2},
	} {
		query := exactTop5(layout)
		user, top := rankFixture(t, catalog, query)
		candidates := reversedWithDuplicate(top)
		got := rank(t, catalog, user, candidates, &patchrec.RankOptions{Query: query})
		requireSameRanking(t, "Rank of Recommend's top 5", got, top)
		// A fresh user, with no prompt KV cached, answers alike.
		fresh := rank(t, catalog, newUser(t, catalog, queryHistory...), candidates, &patchrec.RankOptions{Query: query})
		requireSameRanking(t, "Rank for a fresh user", fresh, top)
		tops = append(tops, top)
	}
	if tops[0][0].Score == tops[1][0].Score {
		t.Fatalf("vanilla and PFT-S:2 give the same best score %v: the test cannot tell the layouts apart", tops[0][0].Score)
	}
	// nil options are the zero RankOptions: the checkpoint's layout, best first.
	user, top := rankFixture(t, catalog, exactTop5(nil))
	for _, options := range []*patchrec.RankOptions{nil, {}, {Query: &patchrec.QueryOptions{}}} {
		requireSameRanking(t, "Rank with default options", rank(t, catalog, user, reversedWithDuplicate(top), options), top)
	}
	// The query options are checked as Recommend checks them.
	_, err := catalog.Rank(user, []uint64{1}, &patchrec.RankOptions{Query: &patchrec.QueryOptions{MaxItems: -1}})
	requireError(t, err, patchrec.StatusInvalidArgument, "QueryOptions.MaxItems is negative (-1)")
	_, err = catalog.Rank(user, []uint64{1}, &patchrec.RankOptions{
		Query: &patchrec.QueryOptions{Layout: &patchrec.LayoutChoice{Kind: patchrec.LayoutPFTS}},
	})
	requireError(t, err, patchrec.StatusInvalidArgument, "QueryOptions.Layout")
}

// InputOrder answers in the candidates' order, a duplicate at its first occurrence, with
// the scores of the best-first answer.
func TestRankInputOrder(t *testing.T) {
	catalog := newCatalog(t)
	query := exactTop5(nil)
	user, top := rankFixture(t, catalog, query)
	candidates := reversedWithDuplicate(top)
	byScore := rank(t, catalog, user, candidates, &patchrec.RankOptions{Query: query})
	scores := map[uint64]float32{}
	for _, r := range byScore {
		scores[r.ItemID] = r.Score
	}
	got := rank(t, catalog, user, candidates, &patchrec.RankOptions{Query: query, InputOrder: true})
	want := make([]patchrec.Recommendation, 0, len(top))
	for _, id := range candidates[:len(top)] {
		want = append(want, patchrec.Recommendation{ItemID: id, Score: scores[id]})
	}
	requireSameRanking(t, "Rank in input order", got, want)
	// A duplicate stays at its first occurrence, not its last.
	got = rank(t, catalog, user, []uint64{top[2].ItemID, top[0].ItemID, top[2].ItemID, top[1].ItemID},
		&patchrec.RankOptions{InputOrder: true})
	if len(got) != 3 || got[0].ItemID != top[2].ItemID || got[1].ItemID != top[0].ItemID || got[2].ItemID != top[1].ItemID {
		t.Errorf("a duplicate in input order: got %v, want ids %d, %d, %d", got, top[2].ItemID, top[0].ItemID, top[1].ItemID)
	}
}

// An unknown candidate is StatusUnknownItem naming it; SkipUnknown leaves it out.
func TestRankUnknownCandidates(t *testing.T) {
	catalog := newCatalog(t)
	query := exactTop5(nil)
	user, top := rankFixture(t, catalog, query)
	candidates := []uint64{top[1].ItemID, unknownID, top[0].ItemID}
	for _, options := range []*patchrec.RankOptions{nil, {Query: query}, {InputOrder: true}} {
		_, err := catalog.Rank(user, candidates, options)
		requireError(t, err, patchrec.StatusUnknownItem, "987654321")
	}
	got := rank(t, catalog, user, candidates, &patchrec.RankOptions{Query: query, SkipUnknown: true})
	requireSameRanking(t, "Rank skipping an unknown id", got, top[:2])
	got = rank(t, catalog, user, candidates, &patchrec.RankOptions{Query: query, SkipUnknown: true, InputOrder: true})
	requireSameRanking(t, "Rank skipping an unknown id, in input order", got, []patchrec.Recommendation{top[1], top[0]})
	got = rank(t, catalog, user, []uint64{unknownID, unknownID + 1}, &patchrec.RankOptions{SkipUnknown: true})
	if len(got) != 0 {
		t.Errorf("only unknown ids, skipped: got %v", got)
	}
}

// No candidates give an empty answer, whatever the options.
func TestRankNoCandidates(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	for _, candidates := range [][]uint64{nil, {}} {
		for _, options := range []*patchrec.RankOptions{nil, {InputOrder: true, SkipUnknown: true}} {
			if got := rank(t, catalog, user, candidates, options); len(got) != 0 {
				t.Errorf("Rank(%#v, %+v) = %v, want nothing", candidates, options, got)
			}
		}
	}
}
