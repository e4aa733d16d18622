package patchrec

// #include <patchrec.h>
import "C"

import (
	"fmt"
	"strings"
)

// Status is a libpatchrec status code (patchrec_status_t). The numbers are stable and
// only ever appended to, so a newer library may return one that has no constant here;
// String still names it.
type Status uint32

// The statuses of patchrec.h; see there for when each occurs.
const (
	StatusOK              Status = C.PATCHREC_OK
	StatusInvalidArgument Status = C.PATCHREC_INVALID_ARGUMENT
	StatusNullArgument    Status = C.PATCHREC_NULL_ARGUMENT
	StatusInvalidUTF8     Status = C.PATCHREC_INVALID_UTF8
	StatusIO              Status = C.PATCHREC_IO
	StatusFormat          Status = C.PATCHREC_FORMAT
	StatusUnsupported     Status = C.PATCHREC_UNSUPPORTED
	StatusUnknownItem     Status = C.PATCHREC_UNKNOWN_ITEM
	StatusDuplicateItem   Status = C.PATCHREC_DUPLICATE_ITEM
	StatusBufferTooSmall  Status = C.PATCHREC_BUFFER_TOO_SMALL
	StatusTokenizer       Status = C.PATCHREC_TOKENIZER
	StatusTensor          Status = C.PATCHREC_TENSOR
	StatusPanic           Status = C.PATCHREC_PANIC
	StatusStopped         Status = C.PATCHREC_STOPPED
	StatusOutOfMemory     Status = C.PATCHREC_OUT_OF_MEMORY
	StatusNonFinite       Status = C.PATCHREC_NON_FINITE
)

// String returns the status constant's C name, such as "PATCHREC_UNKNOWN_ITEM".
func (s Status) String() string {
	return C.GoString(C.patchrec_status_name(C.uint32_t(s)))
}

// Error is a failed call: the library's status and its message, which names the file,
// field, tensor, item or parameter at fault.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	return "patchrec: " + e.Status.String() + ": " + e.Message
}

// takeError turns a C status and error object into a Go error and frees the object.
func takeError(status C.patchrec_status_t, cError *C.patchrec_error_t) error {
	if status == C.PATCHREC_OK {
		return nil
	}
	defer C.patchrec_error_free(cError)
	return &Error{Status: Status(status), Message: C.GoString(C.patchrec_error_message(cError))}
}

// closedError is the error for a handle used after Close. C would see a NULL handle,
// hence the status, but some functions take NULL to mean "defaults" or "empty", so the
// binding checks before calling.
func closedError(typeName string) error {
	return &Error{Status: StatusNullArgument, Message: typeName + " used after Close"}
}

// cString copies s into C memory, which the caller frees with C.free. C would silently
// cut s at its first NUL byte, so one is an error.
func cString(param, s string) (*C.char, error) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return nil, &Error{
			Status:  StatusInvalidArgument,
			Message: fmt.Sprintf("`%s` contains a NUL byte at offset %d", param, i),
		}
	}
	return C.CString(s), nil
}

// cSize converts a count for C, where a negative one would wrap to a huge size_t.
func cSize(param string, n int) (C.size_t, error) {
	if n < 0 {
		return 0, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("`%s` is negative (%d)", param, n)}
	}
	return C.size_t(n), nil
}
