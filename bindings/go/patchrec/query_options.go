package patchrec

// #include <patchrec.h>
import "C"

import (
	"fmt"
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
	// fits in Param positions; when none fits, the smallest prompt.
	LayoutBudget Layout = C.PATCHREC_LAYOUT_BUDGET
)

// LayoutChoice is a layout with its parameter, for QueryOptions.Layout.
type LayoutChoice struct {
	Kind Layout
	// Param is M for LayoutPFTI, L (at least 1) for LayoutPFTS and LayoutStreamS, the
	// prompt's budget in positions for LayoutBudget, and ignored for LayoutVanilla.
	Param int
}

// NoSessionGap, as QueryOptions.SessionGap, turns the session gap off, also where the
// checkpoint sets one: sessions then close only when they hold L items.
const NoSessionGap time.Duration = -1

// QueryOptions says how to answer a query. It is a plain value: the zero value, like a
// nil *QueryOptions, asks for the defaults, and each field left at its zero value keeps
// its default. Recommend, Rank (as RankOptions.Query) and LayoutStats only read it
// during the call and keep no reference, so one QueryOptions may serve any number of
// concurrent queries as long as no goroutine changes it meanwhile.
type QueryOptions struct {
	// K is how many items a query returns; 0 means 10.
	K int
	// BeamWidth is the beam width of the constrained search; 0 means 20. A width below K
	// is raised to K.
	BeamWidth int
	// Layout is how the history is written into the prompt; nil means the checkpoint's
	// layout (its patchrec.json).
	Layout *LayoutChoice
	// MaxItems is the history truncation (the paper's K, not the field K above): a query
	// shows only the latest MaxItems interactions. 0 means the checkpoint's (100 unless
	// its patchrec.json says otherwise).
	MaxItems int
	// SessionGap is the session gap of LayoutStreamS: a session then also closes when an
	// interaction comes more than SessionGap after the one before it (the times given to
	// AppendWithTimes), so a session is one visit of at most L items. 0 means the
	// checkpoint's gap, which applies only when the query's layout is LayoutStreamS;
	// NoSessionGap turns the gap off, also where the checkpoint sets one; any other value
	// must be a positive whole number of seconds. While a gap is set here, a query with
	// another layout fails with StatusInvalidArgument.
	SessionGap time.Duration
	// ExcludeHistory keeps queries from returning items already in the user's history.
	// The default, false, is the paper's protocol.
	ExcludeHistory bool
	// Exact ranks the whole catalogue exactly instead of by beam search, so no beam can
	// miss the best item (BeamWidth is then unused). Slower on large catalogues.
	Exact bool
	// Allow, when not nil, lets a query recommend only these items (ids the catalogue
	// does not hold are ignored): the answer is that of a catalogue holding only them,
	// and the search never expands a branch of the title tree that leads to none of them.
	// nil means no allow-list, every item allowed; a non-nil empty slice
	// (make([]uint64, 0) or []uint64{}) allows nothing, so the answer is empty.
	Allow []uint64
	// Deny keeps a query from recommending these items, even where Allow lists them (ids
	// the catalogue does not hold are ignored). nil or empty denies nothing.
	Deny []uint64
}

// invalidField is the error for a field that C would refuse, or could not be given
// (a negative count would wrap to a huge size_t).
func invalidField(field, format string, args ...any) error {
	return &Error{Status: StatusInvalidArgument, Message: "QueryOptions." + field + " " + fmt.Sprintf(format, args...)}
}

// validate refuses in Go what cannot reach C: negative counts and session gaps that are
// neither whole seconds nor NoSessionGap.
func (o *QueryOptions) validate() error {
	counts := []struct {
		field string
		n     int
	}{{"K", o.K}, {"BeamWidth", o.BeamWidth}, {"MaxItems", o.MaxItems}}
	for _, count := range counts {
		if count.n < 0 {
			return invalidField(count.field, "is negative (%d)", count.n)
		}
	}
	if o.Layout != nil && o.Layout.Param < 0 {
		return invalidField("Layout.Param", "is negative (%d)", o.Layout.Param)
	}
	if o.SessionGap != NoSessionGap && (o.SessionGap < 0 || o.SessionGap%time.Second != 0) {
		return invalidField("SessionGap", "is %v: want positive whole seconds, 0 for the "+
			"checkpoint's gap or NoSessionGap for none", o.SessionGap)
	}
	return nil
}

// cOptions is a C options handle being filled in by its setters; err is the first
// setter's failure, after which the others are skipped.
type cOptions struct {
	ptr *C.patchrec_query_options_t
	err error
}

// set runs one C setter; a failure becomes an *Error with C's status whose message names
// the field.
func (b *cOptions) set(field string, setter func(**C.patchrec_error_t) C.patchrec_status_t) {
	if b.err != nil {
		return
	}
	var cError *C.patchrec_error_t
	if err := takeError(setter(&cError), cError); err != nil {
		failure := err.(*Error)
		b.err = &Error{Status: failure.Status, Message: "QueryOptions." + field + ": " + failure.Message}
	}
}

// toC returns the C handle for o, or NULL for nil o (C's defaults, the same as a handle
// with nothing set); the caller frees it with C.patchrec_query_options_free. Only the
// fields that differ from their zero value are set, so the others keep C's defaults.
func (o *QueryOptions) toC() (*C.patchrec_query_options_t, error) {
	if o == nil {
		return nil, nil
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	b := cOptions{ptr: C.patchrec_query_options_new()}
	if o.K != 0 {
		b.set("K", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_k(b.ptr, C.size_t(o.K), e)
		})
	}
	if o.BeamWidth != 0 {
		b.set("BeamWidth", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_beam_width(b.ptr, C.size_t(o.BeamWidth), e)
		})
	}
	if o.Layout != nil {
		kind, param := C.uint32_t(o.Layout.Kind), C.size_t(o.Layout.Param)
		b.set("Layout", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_layout(b.ptr, kind, param, e)
		})
	}
	if o.MaxItems != 0 {
		b.set("MaxItems", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_max_items(b.ptr, C.size_t(o.MaxItems), e)
		})
	}
	if o.SessionGap != 0 {
		// C's 0 turns the gap off; leaving it unset keeps the checkpoint's.
		var seconds C.uint64_t
		if o.SessionGap != NoSessionGap {
			seconds = C.uint64_t(o.SessionGap / time.Second)
		}
		b.set("SessionGap", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_session_gap(b.ptr, seconds, e)
		})
	}
	if o.ExcludeHistory {
		b.set("ExcludeHistory", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_exclude_history(b.ptr, true, e)
		})
	}
	if o.Exact {
		b.set("Exact", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_exact(b.ptr, true, e)
		})
	}
	if o.Allow != nil {
		// A non-nil empty slice gives C n = 0, which allows nothing.
		ids := cIDs(o.Allow)
		b.set("Allow", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_allow(b.ptr, firstOrNil(ids), C.size_t(len(ids)), e)
		})
	}
	if len(o.Deny) != 0 {
		ids := cIDs(o.Deny)
		b.set("Deny", func(e **C.patchrec_error_t) C.patchrec_status_t {
			return C.patchrec_query_options_set_deny(b.ptr, firstOrNil(ids), C.size_t(len(ids)), e)
		})
	}
	if b.err != nil {
		C.patchrec_query_options_free(b.ptr)
		return nil, b.err
	}
	return b.ptr, nil
}
