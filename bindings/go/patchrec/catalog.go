package patchrec

// #include <stdlib.h>
// #include <patchrec.h>
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Catalog holds the items a model may recommend, each title tokenised and compressed
// into an item patch once, at registration. It is safe for concurrent use by multiple
// goroutines, registrations included; a query sees the catalogue as it was when the query
// started. It keeps its model's weights alive, so it may outlive the Model handle.
type Catalog struct {
	// mu is read-held by every call and write-held by Close, which thus waits for
	// the calls in flight instead of freeing the handle under them.
	mu  sync.RWMutex
	ptr *C.patchrec_catalog_t
}

// Item is one catalogue entry. IDs are the caller's own, any uint64.
type Item struct {
	ID    uint64
	Title string
}

// NewCatalog makes an empty catalogue for model.
func NewCatalog(model *Model) (*Catalog, error) {
	model.mu.RLock()
	defer model.mu.RUnlock()
	if model.ptr == nil {
		return nil, closedError("Model")
	}
	var ptr *C.patchrec_catalog_t
	var cError *C.patchrec_error_t
	if err := takeError(C.patchrec_catalog_new(model.ptr, &ptr, &cError), cError); err != nil {
		return nil, err
	}
	catalog := &Catalog{ptr: ptr}
	runtime.SetFinalizer(catalog, func(c *Catalog) { c.Close() })
	return catalog, nil
}

// Add registers one item; its title is stored trimmed. A registered id is
// StatusDuplicateItem and a title that is not UTF-8 StatusInvalidUTF8. A title is
// StatusInvalidArgument when it is longer than 4,096 bytes or than a sixteenth of the
// model's context in tokens (at most 512), holds a control character or the prompt's
// special tokens, or has no visible character. On failure the catalogue is unchanged.
func (c *Catalog) Add(id uint64, title string) error {
	cTitle, err := cString("title", title)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cTitle))
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return closedError("Catalog")
	}
	var cError *C.patchrec_error_t
	return takeError(C.patchrec_catalog_add(c.ptr, C.uint64_t(id), cTitle, &cError), cError)
}

// AddItems registers items all or nothing, each refused as Add would refuse it: after any
// failure the catalogue is unchanged. Faster than calling Add for each.
func (c *Catalog) AddItems(items []Item) error {
	ids := make([]C.uint64_t, len(items))
	titles := make([]*C.char, len(items))
	defer func() {
		for _, title := range titles {
			C.free(unsafe.Pointer(title))
		}
	}()
	for i, item := range items {
		title, err := cString(fmt.Sprintf("titles[%d]", i), item.Title)
		if err != nil {
			return err
		}
		ids[i], titles[i] = C.uint64_t(item.ID), title
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return closedError("Catalog")
	}
	var cError *C.patchrec_error_t
	status := C.patchrec_catalog_add_batch(c.ptr, firstOrNil(ids), firstOrNil(titles), C.size_t(len(items)), &cError)
	return takeError(status, cError)
}

// SetBatching makes concurrent Recommend calls on this catalogue share decoding: each
// caller still builds and prefills its own prompt, then one worker advances every waiting
// query's beams in one forward pass per step. maxBatch is the most queries per pass (0
// turns batching off); an idle worker waits up to maxWait for more queries before its
// first step. Results equal unbatched ones to float rounding. A maxBatch above 1,024, or
// a negative maxWait or one above a second, is StatusInvalidArgument, and the batching in
// force is unchanged.
func (c *Catalog) SetBatching(maxBatch int, maxWait time.Duration) error {
	n, err := cSize("maxBatch", maxBatch)
	if err != nil {
		return err
	}
	if maxWait < 0 {
		return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("`maxWait` is negative (%v)", maxWait)}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return closedError("Catalog")
	}
	var cError *C.patchrec_error_t
	status := C.patchrec_catalog_set_batching(c.ptr, n, C.uint64_t(maxWait.Microseconds()), &cError)
	return takeError(status, cError)
}

// Len returns the number of registered items; 0 after Close.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return int(C.patchrec_catalog_len(c.ptr))
}

// Title returns the title of item id; an unregistered id is StatusUnknownItem.
func (c *Catalog) Title(id uint64) (string, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return "", closedError("Catalog")
	}
	// With no room the library only reports the length. Any other failure, such as an
	// unknown id, recurs in the second call, which reports it.
	var length C.size_t
	C.patchrec_catalog_title(c.ptr, C.uint64_t(id), nil, 0, &length, nil)
	buffer := make([]C.char, length+1)
	var cError *C.patchrec_error_t
	status := C.patchrec_catalog_title(c.ptr, C.uint64_t(id), &buffer[0], C.size_t(len(buffer)), &length, &cError)
	if err := takeError(status, cError); err != nil {
		return "", err
	}
	return C.GoStringN(&buffer[0], C.int(length)), nil
}

// Close frees the catalogue after the calls in flight return; users built with it stay
// valid, as they hold only item ids. It always returns nil, closing again included; the
// error is there so that a Catalog is an io.Closer.
func (c *Catalog) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	C.patchrec_catalog_free(c.ptr)
	c.ptr = nil
	runtime.SetFinalizer(c, nil)
	return nil
}

// firstOrNil points at a slice's first element, for C arrays that may be NULL when empty.
func firstOrNil[T any](s []T) *T {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}
