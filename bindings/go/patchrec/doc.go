// Package patchrec is the Go binding of libpatchrec: LLM sequential recommendation with
// PatchRec's multi-grained history compression, over the library's C ABI (patchrec.h).
//
// Load a checkpoint with LoadModel, register the items it may recommend in a Catalog,
// record each user's interactions in a User, and ask Catalog.Recommend for the next
// items, tuned by QueryOptions, a plain struct whose zero value (or nil) means the
// defaults; a ranking service whose candidates retrieval found asks Catalog.Rank to
// score them on the same scale, tuned by RankOptions. Catalog.Remove and
// Catalog.SetTitle change a catalogue while it serves, QueryOptions.Allow and
// QueryOptions.Deny filter one query's answer, and Catalog.SetKVBudget bounds the prompt
// KV that the catalogue's users keep between queries (Catalog.KVStats reports it). Model,
// Catalog and User own C memory: call Close when done (each is an io.Closer, whose Close
// always returns nil). A finalizer frees what a caller forgot, but only when the garbage
// collector runs, which is late for handles holding model weights.
//
// # Concurrency
//
// The C header's rule, that a const handle may be used by many threads at once and a
// non-const one needs exclusive access, maps onto the types as follows:
//
//   - Model and Catalog are safe for concurrent use by multiple goroutines, Close
//     included: Close waits for the calls in flight.
//   - User is not safe for concurrent use: give each goroutine its own.
//   - QueryOptions and RankOptions are values that queries only read, so any number of
//     concurrent Recommend and Rank calls may share one as long as no goroutine changes
//     it meanwhile.
//
// # Errors
//
// Every failure is an *Error carrying the library's Status and message; use errors.As
// to read them. Using a handle after Close is an error with StatusNullArgument, the
// status C gives a NULL handle. An invalid query option is StatusInvalidArgument with a
// message that names the field, such as "QueryOptions.K is negative (-1)".
//
// # Building
//
// The package links the installed library through pkg-config (package "patchrec"), so
// cgo needs to find patchrec.pc, and the program needs libpatchrec.so.<ABI> (the
// library's SONAME) at run time. For a
// library installed from a source tree with scripts/install.sh PREFIX:
//
//	export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
//	export LD_LIBRARY_PATH=PREFIX/lib   # or CGO_LDFLAGS=-Wl,-rpath,PREFIX/lib
//	go test ./...
//
// The first LoadModel or NewUser checks that the library implements the C ABI version
// this package was compiled for (ABIVersion) and fails with StatusUnsupported otherwise.
//
// # Training
//
// TrainFile runs the stages of a training configuration file, as `patchrec train` reads
// it, and TrainTOML those of a configuration given as TOML text; both report every
// optimizer step to an optional progress function, which can stop the run. A stopped run
// is an *Error with StatusStopped, and the same call with resume continues it. Load the
// checkpoints they write with LoadModel.
package patchrec
