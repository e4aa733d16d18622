package patchrec

// #include <patchrec.h>
import "C"

import "runtime"

// RankOptions says how Rank answers. Like QueryOptions it is a plain value: the zero
// value, like a nil *RankOptions, asks for the defaults (the default query options, best
// first, an unknown candidate an error), and Rank only reads it during the call.
type RankOptions struct {
	// Query gives the prompt: its Layout, MaxItems and SessionGap apply as in Recommend
	// (so a Rank with the options of a Recommend sees the same prompt, and reuses the
	// User's KV of it); its K, BeamWidth, ExcludeHistory, Exact, Allow and Deny do not
	// (Rank scores every candidate it is given). nil means the defaults. An invalid field
	// is an error all the same, as in Recommend.
	Query *QueryOptions
	// InputOrder answers in the candidates' order instead of best first.
	InputOrder bool
	// SkipUnknown leaves out candidate ids the catalogue does not hold instead of
	// failing with StatusUnknownItem.
	SkipUnknown bool
}

// flags returns o's patchrec_rank flags; nil o has none.
func (o *RankOptions) flags() C.uint32_t {
	var flags C.uint32_t
	if o != nil && o.InputOrder {
		flags |= C.PATCHREC_RANK_INPUT_ORDER
	}
	if o != nil && o.SkipUnknown {
		flags |= C.PATCHREC_RANK_SKIP_UNKNOWN
	}
	return flags
}

// Rank scores candidates, item ids that retrieval found, for user: each one's Score is
// the log-probability of its title given the user's prompt, as Recommend scores the items
// it returns, so the two answers are on one scale. The answer holds one entry per
// distinct candidate, best first, or with options.InputOrder in the candidates' order, a
// duplicated id at its first occurrence; no candidates give an empty answer. An id the
// catalogue does not hold is StatusUnknownItem naming it, or with options.SkipUnknown is
// left out. options may be nil for the defaults; see RankOptions. As for Recommend, the
// call needs exclusive access to user (it keeps the prompt's KV, shared with Recommend);
// c and options may serve other calls at the same time. A history item missing from c
// is StatusUnknownItem.
func (c *Catalog) Rank(user *User, candidates []uint64, options *RankOptions) ([]Recommendation, error) {
	var query *QueryOptions
	if options != nil {
		query = options.Query
	}
	cOptions, err := query.toC()
	if err != nil {
		return nil, err
	}
	defer C.patchrec_query_options_free(cOptions)
	ids := make([]C.uint64_t, len(candidates))
	for i, id := range candidates {
		ids[i] = C.uint64_t(id)
	}
	// One entry per distinct candidate at most, so room for all of them is enough.
	items := make([]C.patchrec_recommendation_t, len(ids))
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := queryHandles(c, user); err != nil {
		return nil, err
	}
	var n C.size_t
	var cError *C.patchrec_error_t
	status := C.patchrec_rank(c.ptr, user.ptr, cOptions, firstOrNil(ids), C.size_t(len(ids)), options.flags(),
		firstOrNil(items), C.size_t(len(items)), &n, &cError)
	runtime.KeepAlive(user)
	if err := takeError(status, cError); err != nil {
		return nil, err
	}
	ranked := make([]Recommendation, n)
	for i := range ranked {
		ranked[i] = Recommendation{ItemID: uint64(items[i].item_id), Score: float32(items[i].score)}
	}
	return ranked, nil
}
