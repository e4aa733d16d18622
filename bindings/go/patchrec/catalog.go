package patchrec

// #include <stdlib.h>
// #include <patchrec.h>
import "C"

import (
	"fmt"
	"math"
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

// Remove removes the items ids, all or nothing: an id that is not registered (or is
// given twice) is StatusUnknownItem naming it, and the catalogue is unchanged. A removed
// item is never recommended or ranked, and appending it to a history is
// StatusUnknownItem; a history that already holds it still works, showing its last title,
// which Title still returns. Queries already running keep the catalogue they started
// with. A removed id may be registered again. No ids is no change.
func (c *Catalog) Remove(ids ...uint64) error {
	array := cIDs(ids)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return closedError("Catalog")
	}
	var cError *C.patchrec_error_t
	return takeError(C.patchrec_catalog_remove(c.ptr, firstOrNil(array), C.size_t(len(array)), &cError), cError)
}

// SetTitle changes the title of registered item id (StatusUnknownItem otherwise, a
// removed item included); the title is refused as Add would refuse it. From then on the
// item is recommended, ranked and shown in histories with the new title; queries already
// running keep the old one. On failure the catalogue is unchanged.
func (c *Catalog) SetTitle(id uint64, title string) error {
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
	return takeError(C.patchrec_catalog_set_title(c.ptr, C.uint64_t(id), cTitle, &cError), cError)
}

// NoKVBudget, as SetKVBudget's bytes, lifts the bound; as KVStats.Capacity, it says that
// none is set. It is C's SIZE_MAX.
const NoKVBudget uint64 = math.MaxUint64

// KVStats is a catalogue's KV budget, as Catalog.KVStats reports it (patchrec_kv_stats_t).
// Without a budget nothing is counted: Capacity is NoKVBudget and the rest are 0.
type KVStats struct {
	// Capacity is the budget in bytes, or NoKVBudget when none is set.
	Capacity uint64
	// BytesHeld is the bytes of prompt KV that this catalogue's users hold now.
	BytesHeld uint64
	// UsersHeld is how many users hold KV now.
	UsersHeld int
	// Hits counts the queries that found their user's KV cached, Misses those that found
	// none (a new user, or one evicted).
	Hits, Misses uint64
	// Evictions counts the users' KV dropped to stay within the budget.
	Evictions uint64
}

// SetKVBudget bounds the bytes of prompt KV that the users queried against this
// catalogue hold together (each User keeps its last prompt's KV, so that the next query
// prefills only what changed): beyond bytes, the least recently used users' KV is
// dropped. An evicted user keeps its history, and its next query prefills its whole
// prompt, with the same answer. NoKVBudget lifts the bound (a value above what size_t
// holds counts as NoKVBudget); lowering it evicts at once.
func (c *Catalog) SetKVBudget(bytes uint64) error {
	size := ^C.size_t(0)
	if bytes < uint64(size) {
		size = C.size_t(bytes)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return closedError("Catalog")
	}
	var cError *C.patchrec_error_t
	return takeError(C.patchrec_catalog_set_kv_budget(c.ptr, size, &cError), cError)
}

// PatchStorage is how a catalogue keeps its items' patches (patchrec_patch_storage_t).
type PatchStorage uint32

const (
	// PatchesF32 computes each patch at registration and keeps it in f32 (the model's
	// hidden size x 4 bytes per item).
	PatchesF32 PatchStorage = C.PATCHREC_PATCHES_F32
	// PatchesF16 keeps them in f16: half the bytes; scores move by f16 rounding.
	PatchesF16 PatchStorage = C.PATCHREC_PATCHES_F16
	// PatchesOnDemand keeps none: each is computed from its title's tokens when a prompt
	// needs it, with the values PatchesF32 keeps (answers are identical). The default.
	PatchesOnDemand PatchStorage = C.PATCHREC_PATCHES_ON_DEMAND
)

// SetPatchStorage sets how the catalogue keeps its items' patches; the items registered
// so far are converted once, and queries already running keep the catalogue they started
// with.
func (c *Catalog) SetPatchStorage(storage PatchStorage) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return closedError("Catalog")
	}
	var cError *C.patchrec_error_t
	return takeError(C.patchrec_catalog_set_patch_storage(c.ptr, C.uint32_t(storage), &cError), cError)
}

// KVStats returns the KV budget's figures: the budget, what the users hold now, and the
// hits, misses and evictions counted since it was set.
func (c *Catalog) KVStats() (KVStats, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return KVStats{}, closedError("Catalog")
	}
	var stats C.patchrec_kv_stats_t
	var cError *C.patchrec_error_t
	if err := takeError(C.patchrec_catalog_kv_stats(c.ptr, &stats, &cError), cError); err != nil {
		return KVStats{}, err
	}
	capacity := uint64(stats.capacity)
	if stats.capacity == ^C.size_t(0) {
		capacity = NoKVBudget
	}
	return KVStats{
		Capacity:  capacity,
		BytesHeld: uint64(stats.bytes_held),
		UsersHeld: int(stats.users_held),
		Hits:      uint64(stats.hits),
		Misses:    uint64(stats.misses),
		Evictions: uint64(stats.evictions),
	}, nil
}

// Len returns the number of items that can be recommended (registered, not removed); 0
// after Close.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return int(C.patchrec_catalog_len(c.ptr))
}

// Title returns the title of item id; an unregistered id is StatusUnknownItem. A removed
// item's is its last title.
func (c *Catalog) Title(id uint64) (string, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return "", closedError("Catalog")
	}
	// With no room the library only reports the length. Any other failure, such as an
	// unknown id, recurs in the next call, which reports it. A title changed in between
	// (SetTitle) may be longer, so read again until it fits.
	var length C.size_t
	C.patchrec_catalog_title(c.ptr, C.uint64_t(id), nil, 0, &length, nil)
	for {
		buffer := make([]C.char, length+1)
		var cError *C.patchrec_error_t
		status := C.patchrec_catalog_title(c.ptr, C.uint64_t(id), &buffer[0], C.size_t(len(buffer)), &length, &cError)
		if status == C.PATCHREC_BUFFER_TOO_SMALL && length+1 > C.size_t(len(buffer)) {
			C.patchrec_error_free(cError)
			continue
		}
		if err := takeError(status, cError); err != nil {
			return "", err
		}
		return C.GoStringN(&buffer[0], C.int(length)), nil
	}
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

// cIDs copies item ids into an array for C.
func cIDs(ids []uint64) []C.uint64_t {
	out := make([]C.uint64_t, len(ids))
	for i, id := range ids {
		out[i] = C.uint64_t(id)
	}
	return out
}
