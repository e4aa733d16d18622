package patchrec

// #cgo pkg-config: patchrec
// #include <patchrec.h>
import "C"

import (
	"fmt"
	"sync"
)

// ABIVersion is the C ABI version this package was compiled for: PATCHREC_ABI_VERSION
// from the patchrec.h that cgo found.
const ABIVersion = C.PATCHREC_ABI_VERSION

// Version returns the library's version, such as "0.1.0".
func Version() string {
	return C.GoString(C.patchrec_version())
}

var abi struct {
	once sync.Once
	err  error
}

// checkABI fails unless the libpatchrec loaded at run time implements the ABI that this
// package was compiled against: a program built with one header and run with another
// library would otherwise call functions whose signatures may have changed.
func checkABI() error {
	abi.once.Do(func() {
		abi.err = compareABI(uint32(C.patchrec_abi_version()), ABIVersion)
	})
	return abi.err
}

func compareABI(library, compiledFor uint32) error {
	if library == compiledFor {
		return nil
	}
	return &Error{
		Status: StatusUnsupported,
		Message: fmt.Sprintf("libpatchrec implements C ABI version %d, but this Go package was "+
			"compiled for version %d: rebuild it against the installed patchrec.h", library, compiledFor),
	}
}
