package patchrec

// #include <patchrec.h>
import "C"

import (
	"fmt"
	"runtime"
	"time"
)

// Layout is how the history is written into the prompt (patchrec_layout_t).
type Layout uint32

const (
	// LayoutVanilla writes every history item as its title's text.
	LayoutVanilla Layout = C.PATCHREC_LAYOUT_VANILLA
	// LayoutPFTI writes the latest M items as text, older ones as item patches.
	LayoutPFTI Layout = C.PATCHREC_LAYOUT_PFT_I
	// LayoutPFTS writes the latest L items as text, the L before as item patches, and
	// older groups of L as session patches.
	LayoutPFTS Layout = C.PATCHREC_LAYOUT_PFT_S
	// LayoutStreamS groups the history by L from the start of the user's stream: the
	// newest (open) group as text, the one before as item patches, older groups as
	// session patches. An append then changes only the prompt's end, so a query after it
	// prefills little (the User keeps its prompt's KV). Needs K >= L.
	LayoutStreamS Layout = C.PATCHREC_LAYOUT_STREAM_S
	// LayoutBudget picks per user the layout with the most history as text (vanilla,
	// else PFT-I with the largest M, else PFT-S with the largest L) whose whole prompt
	// fits in param positions; when none fits, the smallest prompt.
	LayoutBudget Layout = C.PATCHREC_LAYOUT_BUDGET
)

// QueryOptions says how to answer a query. New options hold the defaults: k = 10, beam
// width 20, the checkpoint's layout and history truncation, history items not excluded.
//
// Its setters are not safe for concurrent use. Once no goroutine changes it, any number
// of concurrent Recommend calls may share it; it must not be closed while they run.
type QueryOptions struct {
	ptr *C.patchrec_query_options_t
}

// NewQueryOptions returns options holding the defaults.
func NewQueryOptions() (*QueryOptions, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	options := &QueryOptions{ptr: C.patchrec_query_options_new()}
	runtime.SetFinalizer(options, (*QueryOptions).Close)
	return options, nil
}

// SetK sets how many items a query returns, at least 1.
func (o *QueryOptions) SetK(k int) error {
	n, err := cSize("k", k)
	if err != nil {
		return err
	}
	return o.set(func(ptr *C.patchrec_query_options_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_query_options_set_k(ptr, n, cError)
	})
}

// SetBeamWidth sets the beam width of the constrained search; a width below k is raised
// to k.
func (o *QueryOptions) SetBeamWidth(width int) error {
	n, err := cSize("beam_width", width)
	if err != nil {
		return err
	}
	return o.set(func(ptr *C.patchrec_query_options_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_query_options_set_beam_width(ptr, n, cError)
	})
}

// SetLayout sets the layout; param is M for LayoutPFTI, L (at least 1) for LayoutPFTS and
// LayoutStreamS, the prompt's budget in positions for LayoutBudget, and ignored for
// LayoutVanilla.
func (o *QueryOptions) SetLayout(layout Layout, param int) error {
	n, err := cSize("param", param)
	if err != nil {
		return err
	}
	return o.set(func(ptr *C.patchrec_query_options_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_query_options_set_layout(ptr, C.uint32_t(layout), n, cError)
	})
}

// SetMaxItems sets the history truncation K: a query shows only the latest maxItems
// interactions.
func (o *QueryOptions) SetMaxItems(maxItems int) error {
	n, err := cSize("max_items", maxItems)
	if err != nil {
		return err
	}
	return o.set(func(ptr *C.patchrec_query_options_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_query_options_set_max_items(ptr, n, cError)
	})
}

// SetSessionGap sets the session gap of LayoutStreamS: a session then also closes when an
// interaction comes more than gap after the one before it (the timestamps given to
// Append), so a session is one visit of at most L items. 0 turns it off, also where the
// checkpoint sets one. gap must be whole seconds and not negative. While a gap is set, a
// query with another layout fails with StatusInvalidArgument.
func (o *QueryOptions) SetSessionGap(gap time.Duration) error {
	if gap < 0 || gap%time.Second != 0 {
		return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("session gap %v: must be whole seconds, not negative", gap)}
	}
	seconds := C.uint64_t(gap / time.Second)
	return o.set(func(ptr *C.patchrec_query_options_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_query_options_set_session_gap(ptr, seconds, cError)
	})
}

// SetExcludeHistory, when exclude is true, keeps queries from returning items already
// in the user's history. The default is false, as in the paper's protocol.
func (o *QueryOptions) SetExcludeHistory(exclude bool) error {
	return o.set(func(ptr *C.patchrec_query_options_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_query_options_set_exclude_history(ptr, C.bool(exclude), cError)
	})
}

// SetExact, when exact is true, ranks the whole catalogue exactly instead of by beam
// search, so no beam can miss the best item (the beam width is then unused). Slower on
// large catalogues; the default is false.
func (o *QueryOptions) SetExact(exact bool) error {
	return o.set(func(ptr *C.patchrec_query_options_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_query_options_set_exact(ptr, C.bool(exact), cError)
	})
}

// set runs one C setter on the handle; on failure the options are unchanged.
func (o *QueryOptions) set(setter func(*C.patchrec_query_options_t, **C.patchrec_error_t) C.patchrec_status_t) error {
	if o.ptr == nil {
		return closedError("QueryOptions")
	}
	var cError *C.patchrec_error_t
	status := setter(o.ptr, &cError)
	runtime.KeepAlive(o)
	return takeError(status, cError)
}

// Close frees the options. Closing again does nothing.
func (o *QueryOptions) Close() {
	C.patchrec_query_options_free(o.ptr)
	o.ptr = nil
	runtime.SetFinalizer(o, nil)
}
