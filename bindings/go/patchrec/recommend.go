package patchrec

// #include <patchrec.h>
import "C"

import "runtime"

// Recommendation is one recommended item.
type Recommendation struct {
	ItemID uint64
	// Score is the log-probability of the item's title given the prompt; higher is better.
	Score float32
}

// LayoutStats describes how a history is laid out in the prompt.
type LayoutStats struct {
	// PromptLen is the prompt's length in positions (tokens and patches).
	PromptLen int
	// CompressionRatio is the paper's compression ratio of the history; 1 for vanilla.
	CompressionRatio float64
}

// Recommend returns the next items for user, best first: options.K of them (10 by
// default), fewer only when the catalogue, less any excluded history, is smaller. options
// may be nil for the defaults, as may its fields be zero; an invalid field is
// StatusInvalidArgument naming it, such as "QueryOptions.K". The call needs exclusive
// access to user; c and options may serve other queries at the same time. An empty
// catalogue is StatusInvalidArgument; a history item missing from c StatusUnknownItem.
func (c *Catalog) Recommend(user *User, options *QueryOptions) ([]Recommendation, error) {
	cOptions, err := options.toC()
	if err != nil {
		return nil, err
	}
	defer C.patchrec_query_options_free(cOptions)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := queryHandles(c, user); err != nil {
		return nil, err
	}
	// With no room the library only reports how many items the answer can hold (k, or
	// the catalogue's size when smaller), before any work. Any other failure recurs in
	// the second call, which reports it.
	var k C.size_t
	C.patchrec_recommend(c.ptr, user.ptr, cOptions, nil, 0, &k, nil)
	items := make([]C.patchrec_recommendation_t, k)
	var n C.size_t
	var cError *C.patchrec_error_t
	status := C.patchrec_recommend(c.ptr, user.ptr, cOptions, firstOrNil(items), k, &n, &cError)
	runtime.KeepAlive(user)
	if err := takeError(status, cError); err != nil {
		return nil, err
	}
	top := make([]Recommendation, n)
	for i := range top {
		top[i] = Recommendation{ItemID: uint64(items[i].item_id), Score: float32(items[i].score)}
	}
	return top, nil
}

// LayoutStats reports how user's history would be laid out for a query with options
// (nil for the defaults), without running the model. It only reads user, so it may run
// alongside other reads of the same User, but not alongside a change to it.
func (c *Catalog) LayoutStats(user *User, options *QueryOptions) (LayoutStats, error) {
	cOptions, err := options.toC()
	if err != nil {
		return LayoutStats{}, err
	}
	defer C.patchrec_query_options_free(cOptions)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := queryHandles(c, user); err != nil {
		return LayoutStats{}, err
	}
	var promptLen C.size_t
	var ratio C.double
	var cError *C.patchrec_error_t
	status := C.patchrec_user_layout_stats(user.ptr, c.ptr, cOptions, &promptLen, &ratio, &cError)
	runtime.KeepAlive(user)
	if err := takeError(status, cError); err != nil {
		return LayoutStats{}, err
	}
	return LayoutStats{PromptLen: int(promptLen), CompressionRatio: float64(ratio)}, nil
}

// queryHandles checks that a query's handles are open. The caller holds c.mu for
// reading.
func queryHandles(c *Catalog, user *User) error {
	switch {
	case c.ptr == nil:
		return closedError("Catalog")
	case user.ptr == nil:
		return closedError("User")
	}
	return nil
}
