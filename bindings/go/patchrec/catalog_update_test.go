package patchrec_test

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/patchrec/patchrec/bindings/go/patchrec"
)

// recommendAll is catalog.Recommend with K the catalogue's size and any other options
// of extra, failing t on error.
func recommendAll(t *testing.T, catalog *patchrec.Catalog, user *patchrec.User, extra patchrec.QueryOptions) []patchrec.Recommendation {
	t.Helper()
	extra.K = catalog.Len()
	top, err := catalog.Recommend(user, &extra)
	if err != nil {
		t.Fatalf("Recommend(%+v): %v", extra, err)
	}
	return top
}

// idSet is the item ids of ranking, sorted.
func idSet(ranking []patchrec.Recommendation) []uint64 {
	ids := make([]uint64, len(ranking))
	for i, r := range ranking {
		ids[i] = r.ItemID
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Two removed items leave the count and are never recommended or ranked again; a history
// that held one before still works, and the removed ones cannot be appended.
func TestRemoveItems(t *testing.T) {
	catalog := newCatalog(t)
	size := catalog.Len()
	holder := newUser(t, catalog, 1, 3) // holds 3 before it is removed
	lastTitle, err := catalog.Title(3)
	if err != nil {
		t.Fatal(err)
	}
	if err := catalog.Remove(3, 7); err != nil {
		t.Fatal(err)
	}
	if catalog.Len() != size-2 {
		t.Fatalf("Len() = %d after removing two of %d", catalog.Len(), size)
	}
	for _, user := range []*patchrec.User{holder, newUser(t, catalog, queryHistory...)} {
		top := recommendAll(t, catalog, user, patchrec.QueryOptions{})
		if len(top) != size-2 {
			t.Errorf("k = %d gave %d items", size-2, len(top))
		}
		for _, r := range top {
			if r.ItemID == 3 || r.ItemID == 7 {
				t.Errorf("removed item %d recommended: %v", r.ItemID, top)
			}
		}
	}
	_, err = catalog.Rank(holder, []uint64{1, 3}, nil)
	requireError(t, err, patchrec.StatusUnknownItem, "3")
	if ranked := rank(t, catalog, holder, []uint64{7, 1, 3}, &patchrec.RankOptions{SkipUnknown: true}); len(ranked) != 1 || ranked[0].ItemID != 1 {
		t.Errorf("ranking removed items with SkipUnknown: %v, want item 1 alone", ranked)
	}
	requireError(t, holder.Append(catalog, 7), patchrec.StatusUnknownItem, "7")
	if holder.Len() != 2 {
		t.Errorf("a failed append changed the history: Len() = %d", holder.Len())
	}
	// A removed item's title is its last one.
	if title, err := catalog.Title(3); err != nil || title != lastTitle {
		t.Errorf("Title(3) of the removed item = %q, %v; want %q", title, err, lastTitle)
	}
	// It may be registered again, and is then recommended again.
	if err := catalog.Add(7, "Brazil (1985)"); err != nil {
		t.Fatal(err)
	}
	top := recommendAll(t, catalog, holder, patchrec.QueryOptions{Allow: []uint64{7}})
	if len(top) != 1 || top[0].ItemID != 7 {
		t.Errorf("the registered-again item: %v", top)
	}
}

// A removal that names an unknown id, or one id twice, fails as a whole.
func TestRemoveUnknownChangesNothing(t *testing.T) {
	catalog := newCatalog(t)
	size := catalog.Len()
	user := newUser(t, catalog, queryHistory...)
	before := recommendAll(t, catalog, user, patchrec.QueryOptions{})
	requireError(t, catalog.Remove(2, unknownID), patchrec.StatusUnknownItem, fmt.Sprint(unknownID))
	requireError(t, catalog.Remove(4, 4), patchrec.StatusUnknownItem, "4")
	if err := catalog.Remove(); err != nil {
		t.Errorf("removing no ids: %v", err)
	}
	if catalog.Len() != size {
		t.Fatalf("failed removals changed the catalogue: Len() = %d, want %d", catalog.Len(), size)
	}
	if title, err := catalog.Title(2); err != nil || title == "" {
		t.Errorf("Title(2) after the failed removal: %q, %v", title, err)
	}
	requireSameRanking(t, "after the failed removals", recommendAll(t, catalog, user, patchrec.QueryOptions{}), before)
}

// A retitled item reads back with its new title, and is scored as if it had been
// registered with it; bad titles and unknown ids change nothing.
func TestSetTitle(t *testing.T) {
	const retitled = "Fargo Redux (2026)"
	model := loadModel(t)
	catalog := newCatalogFor(t, model)
	if err := catalog.SetTitle(3, retitled); err != nil {
		t.Fatal(err)
	}
	if title, err := catalog.Title(3); err != nil || title != retitled {
		t.Fatalf("Title(3) = %q, %v; want %q", title, err, retitled)
	}
	// A longer title than the first Title call's buffer held, and back: each reads back.
	long := "The Good, the Bad and the Ugly: Extended Director's Cut (1966)"
	for _, title := range []string{long, retitled} {
		if err := catalog.SetTitle(3, title); err != nil {
			t.Fatal(err)
		}
		if got, err := catalog.Title(3); err != nil || got != title {
			t.Errorf("Title(3) = %q, %v; want %q", got, err, title)
		}
	}

	requireError(t, catalog.SetTitle(unknownID, "Brazil (1985)"), patchrec.StatusUnknownItem, fmt.Sprint(unknownID))
	requireError(t, catalog.SetTitle(3, "  "), patchrec.StatusInvalidArgument, "no visible characters")
	requireError(t, catalog.SetTitle(3, "Half\x00Title"), patchrec.StatusInvalidArgument, "NUL")
	requireError(t, catalog.SetTitle(3, "Caf\xe9 (1999)"), patchrec.StatusInvalidUTF8, "title")
	if err := catalog.Remove(5); err != nil {
		t.Fatal(err)
	}
	requireError(t, catalog.SetTitle(5, "Gone (2000)"), patchrec.StatusUnknownItem, "5")
	if title, err := catalog.Title(3); err != nil || title != retitled {
		t.Errorf("failed retitles changed item 3: %q, %v", title, err)
	}

	// The same items registered with the new title from the start, less item 5.
	fresh, err := patchrec.NewCatalog(model)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, fresh)
	var items []patchrec.Item
	var ids []uint64
	for _, item := range catalogItems(t) {
		if item.ID == 5 {
			continue
		}
		if item.ID == 3 {
			item.Title = retitled
		}
		items = append(items, item)
		ids = append(ids, item.ID)
	}
	if err := fresh.AddItems(items); err != nil {
		t.Fatal(err)
	}
	inOrder := &patchrec.RankOptions{InputOrder: true}
	got := rank(t, catalog, newUser(t, catalog, 1, 3, 9), ids, inOrder)
	want := rank(t, fresh, newUser(t, fresh, 1, 3, 9), ids, inOrder)
	requireSameRanking(t, "the retitled catalogue against one registered with the new title", got, want)
}

// Title keeps reading whole titles while another goroutine retitles the item between a
// short and a long title, so that the length Title first asks for is often stale.
func TestTitleWhileRetitling(t *testing.T) {
	const retitles = 300
	catalog := newCatalog(t)
	titles := []string{"The Godfather (1972)", "The Godfather: The Extended Cut, Restored and Remastered (1972)"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < retitles; i++ {
			if err := catalog.SetTitle(2, titles[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Read until the writer is done, so that every read overlaps the retitling.
	for reads := 0; ; reads++ {
		select {
		case <-done:
			if reads == 0 {
				t.Error("no read overlapped the retitling")
			}
			return
		default:
		}
		title, err := catalog.Title(2)
		if err != nil || (title != titles[0] && title != titles[1]) {
			t.Errorf("read %d: %q, %v", reads, title, err)
			<-done
			return
		}
	}
}

// An allow-list less a deny-list leaves exactly the allowed items not denied, scored as
// Rank scores them; an empty allow-list allows nothing; Rank ignores both lists.
func TestAllowAndDeny(t *testing.T) {
	catalog := newCatalog(t)
	user := newUser(t, catalog, queryHistory...)
	filtered := recommendAll(t, catalog, user, patchrec.QueryOptions{Allow: []uint64{2, 3, 4, unknownID}, Deny: []uint64{3}})
	if ids := idSet(filtered); len(ids) != 2 || ids[0] != 2 || ids[1] != 4 {
		t.Fatalf("allow {2, 3, 4} deny {3}: %v, want items 2 and 4", filtered)
	}
	scored := rank(t, catalog, user, []uint64{filtered[0].ItemID, filtered[1].ItemID}, &patchrec.RankOptions{InputOrder: true})
	requireSameRanking(t, "the filtered answer against Rank", filtered, scored)

	if empty := recommendAll(t, catalog, user, patchrec.QueryOptions{Allow: []uint64{}}); len(empty) != 0 {
		t.Errorf("an empty allow-list: %v, want nothing", empty)
	}
	if unknown := recommendAll(t, catalog, user, patchrec.QueryOptions{Allow: []uint64{unknownID}}); len(unknown) != 0 {
		t.Errorf("an allow-list of an unknown id: %v, want nothing", unknown)
	}
	// nil Allow is no allow-list: every item but the denied ones.
	denied := recommendAll(t, catalog, user, patchrec.QueryOptions{Deny: []uint64{2, unknownID}})
	if len(denied) != catalog.Len()-1 {
		t.Errorf("deny {2}: %d items, want %d", len(denied), catalog.Len()-1)
	}
	for _, r := range denied {
		if r.ItemID == 2 {
			t.Errorf("denied item 2 recommended")
		}
	}
	// Empty lists are the defaults.
	defaults := recommendAll(t, catalog, user, patchrec.QueryOptions{})
	requireSameRanking(t, "nil Allow, empty Deny", recommendAll(t, catalog, user, patchrec.QueryOptions{Deny: []uint64{}}), defaults)

	query := &patchrec.QueryOptions{Allow: []uint64{2}, Deny: []uint64{3}}
	if ranked := rank(t, catalog, user, []uint64{2, 3, 4}, &patchrec.RankOptions{Query: query}); len(ranked) != 3 {
		t.Errorf("Rank with filtering query options: %v, want all three candidates", ranked)
	}
}

// A one-byte KV budget holds nothing, yet answers as no budget; a large one holds the
// user's KV and counts a hit for a repeated query; NoKVBudget lifts it.
func TestKVBudget(t *testing.T) {
	catalog := newCatalog(t)
	options := &patchrec.QueryOptions{K: queryK}
	user := newUser(t, catalog, queryHistory...)
	if patchrec.NoKVBudget != math.MaxUint64 {
		t.Fatalf("NoKVBudget = %d, want SIZE_MAX on a 64-bit platform", patchrec.NoKVBudget)
	}
	stats := kvStats(t, catalog)
	if stats != (patchrec.KVStats{Capacity: patchrec.NoKVBudget}) {
		t.Errorf("a new catalogue's KV stats: %+v, want no budget and nothing counted", stats)
	}
	want, err := catalog.Recommend(user, options)
	if err != nil {
		t.Fatal(err)
	}

	if err := catalog.SetKVBudget(1); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*patchrec.User{user, newUser(t, catalog, queryHistory...)} {
		got, err := catalog.Recommend(u, options)
		if err != nil {
			t.Fatal(err)
		}
		requireSameRanking(t, "under a one-byte KV budget", got, want)
	}
	// Each query's KV is larger than the budget, so it is dropped at once and counted.
	stats = kvStats(t, catalog)
	if stats.Capacity != 1 || stats.BytesHeld != 0 || stats.UsersHeld != 0 || stats.Evictions != 2 ||
		stats.Hits+stats.Misses != 2 || stats.Misses < 1 {
		t.Errorf("one-byte budget after two queries: %+v, want capacity 1, nothing held, 2 evictions, "+
			"2 lookups, the new user's a miss", stats)
	}

	const large = 1 << 40
	if err := catalog.SetKVBudget(large); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		got, err := catalog.Recommend(user, options)
		if err != nil {
			t.Fatal(err)
		}
		requireSameRanking(t, "under a large KV budget", got, want)
	}
	// The counters go on across budget changes: a miss (the KV was dropped), then a hit,
	// and nothing more evicted.
	stats = kvStats(t, catalog)
	if stats.Capacity != large || stats.BytesHeld == 0 || stats.BytesHeld > large || stats.UsersHeld != 1 ||
		stats.Evictions != 2 || stats.Hits+stats.Misses != 4 || stats.Hits < 1 || stats.Misses < 2 {
		t.Errorf("large budget after a repeated query: %+v, want one user's KV held, a miss then a hit, "+
			"no more evictions", stats)
	}

	if err := catalog.SetKVBudget(patchrec.NoKVBudget); err != nil {
		t.Fatal(err)
	}
	if stats := kvStats(t, catalog); stats.Capacity != patchrec.NoKVBudget {
		t.Errorf("after lifting the budget: %+v, want capacity NoKVBudget", stats)
	}
}

// Patches kept in f16 or computed on demand answer as f32 ones do (on demand: the same
// values; f16: the same ranking here); an unknown storage is refused.
func TestPatchStorage(t *testing.T) {
	catalog := newCatalog(t)
	options := &patchrec.QueryOptions{K: queryK}
	user := newUser(t, catalog, queryHistory...)
	want, err := catalog.Recommend(user, options)
	if err != nil {
		t.Fatal(err)
	}
	for _, storage := range []patchrec.PatchStorage{patchrec.PatchesOnDemand, patchrec.PatchesF16, patchrec.PatchesF32} {
		if err := catalog.SetPatchStorage(storage); err != nil {
			t.Fatal(err)
		}
		got, err := catalog.Recommend(user, options)
		if err != nil {
			t.Fatal(err)
		}
		requireSameRanking(t, fmt.Sprintf("patch storage %d", storage), got, want)
	}
	err = catalog.SetPatchStorage(patchrec.PatchStorage(7))
	var perr *patchrec.Error
	if !errors.As(err, &perr) || perr.Status != patchrec.StatusInvalidArgument ||
		!strings.Contains(perr.Message, "patch storage 7") {
		t.Errorf("SetPatchStorage(7) = %v, want an invalid argument naming it", err)
	}
}

// kvStats is catalog.KVStats, failing t on error.
func kvStats(t *testing.T, catalog *patchrec.Catalog) patchrec.KVStats {
	t.Helper()
	stats, err := catalog.KVStats()
	if err != nil {
		t.Fatal(err)
	}
	return stats
}
