package patchrec

import (
	"errors"
	"strings"
	"testing"
)

func TestABIMismatchIsAClearError(t *testing.T) {
	if err := compareABI(ABIVersion, ABIVersion); err != nil {
		t.Fatalf("matching versions: %v", err)
	}
	err := compareABI(2, 1)
	var failure *Error
	if !errors.As(err, &failure) || failure.Status != StatusUnsupported ||
		!strings.Contains(failure.Message, "implements C ABI version 2, but this Go package was compiled for version 1") {
		t.Fatalf("got %v", err)
	}
	if err := checkABI(); err != nil {
		t.Fatalf("the library under test: %v", err)
	}
}
