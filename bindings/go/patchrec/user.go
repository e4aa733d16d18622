package patchrec

// #include <patchrec.h>
import "C"

import (
	"fmt"
	"runtime"
	"time"
)

// User is one user's interactions, oldest first. It is not safe for concurrent use:
// appending, clearing, Recommend and Rank need exclusive access, so give each goroutine
// its own User. It holds only item ids, so it may outlive the catalogue it was built with.
type User struct {
	ptr *C.patchrec_user_t
}

// NewUser makes an empty history.
func NewUser() (*User, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var ptr *C.patchrec_user_t
	var cError *C.patchrec_error_t
	if err := takeError(C.patchrec_user_new(&ptr, &cError), cError); err != nil {
		return nil, err
	}
	user := &User{ptr: ptr}
	runtime.SetFinalizer(user, func(u *User) { u.Close() })
	return user, nil
}

// Append adds interactions with itemIDs, oldest first, at unknown times. It is all or
// nothing: every id must be in catalog, else StatusUnknownItem and the history is
// unchanged.
func (u *User) Append(catalog *Catalog, itemIDs ...uint64) error {
	return u.appendBatch(catalog, itemIDs, nil)
}

// AppendWithTimes is Append with the time of each interaction: times holds one per id,
// and a zero time.Time means unknown. The library keeps whole seconds.
func (u *User) AppendWithTimes(catalog *Catalog, itemIDs []uint64, times []time.Time) error {
	if len(times) != len(itemIDs) {
		return &Error{
			Status:  StatusInvalidArgument,
			Message: fmt.Sprintf("%d item ids but %d times", len(itemIDs), len(times)),
		}
	}
	timestamps := make([]C.int64_t, len(times))
	for i, t := range times {
		if t.IsZero() {
			timestamps[i] = C.PATCHREC_NO_TIMESTAMP
		} else {
			timestamps[i] = C.int64_t(t.Unix())
		}
	}
	return u.appendBatch(catalog, itemIDs, timestamps)
}

// appendBatch calls patchrec_user_append_batch; timestamps is nil (none known) or one
// per id.
func (u *User) appendBatch(catalog *Catalog, itemIDs []uint64, timestamps []C.int64_t) error {
	if u.ptr == nil {
		return closedError("User")
	}
	ids := make([]C.uint64_t, len(itemIDs))
	for i, id := range itemIDs {
		ids[i] = C.uint64_t(id)
	}
	catalog.mu.RLock()
	defer catalog.mu.RUnlock()
	if catalog.ptr == nil {
		return closedError("Catalog")
	}
	var cError *C.patchrec_error_t
	status := C.patchrec_user_append_batch(u.ptr, catalog.ptr, firstOrNil(ids), firstOrNil(timestamps),
		C.size_t(len(ids)), &cError)
	runtime.KeepAlive(u)
	return takeError(status, cError)
}

// Len returns the number of interactions; 0 after Close.
func (u *User) Len() int {
	n := int(C.patchrec_user_len(u.ptr))
	runtime.KeepAlive(u)
	return n
}

// Clear removes every interaction.
func (u *User) Clear() {
	C.patchrec_user_clear(u.ptr)
	runtime.KeepAlive(u)
}

// Close frees the history. It always returns nil, closing again included; the error is
// there so that a User is an io.Closer.
func (u *User) Close() error {
	C.patchrec_user_free(u.ptr)
	u.ptr = nil
	runtime.SetFinalizer(u, nil)
	return nil
}
