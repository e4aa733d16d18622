package patchrec

// #include <stdint.h>
// #include <stdlib.h>
// #include <patchrec.h>
//
// // The Go trampoline, exported from train_callback.go; cgo passes const pointers as
// // plain ones, hence the shim below with patchrec_train_callback_t's exact type.
// extern _Bool patchrecGoTrainProgress(patchrec_train_progress_t *progress, uintptr_t handle);
//
// static bool patchrec_go_train_progress(const patchrec_train_progress_t *progress, void *user_data) {
// 	return patchrecGoTrainProgress((patchrec_train_progress_t *)progress, (uintptr_t)user_data);
// }
//
// // patchrec_train_file and patchrec_train_toml with the trampoline, or no callback when
// // handle is 0. The handle travels as an integer so that Go never turns it into a pointer.
// static patchrec_train_callback_t patchrec_go_train_callback(uintptr_t handle) {
// 	return handle == 0 ? NULL : patchrec_go_train_progress;
// }
//
// static patchrec_status_t patchrec_go_train_file(const char *path, bool resume, uintptr_t handle,
// 		patchrec_error_t **error) {
// 	return patchrec_train_file(path, resume, patchrec_go_train_callback(handle), (void *)handle, error);
// }
//
// static patchrec_status_t patchrec_go_train_toml(const char *toml, const char *base_dir, bool resume,
// 		uintptr_t handle, patchrec_error_t **error) {
// 	return patchrec_train_toml(toml, base_dir, resume, patchrec_go_train_callback(handle), (void *)handle,
// 		error);
// }
import "C"

import (
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// TrainProgress is one optimizer step's report, passed to the progress function of
// TrainFile and TrainTOML.
type TrainProgress struct {
	// Stage is the stage's name: "sft", "ppt", "pft-i5", "pft-s20", ...
	Stage string
	// StageIndex is the 0-based position of the stage in the configuration.
	StageIndex int
	// Step is the number of optimizer steps done in this stage, 1 to TotalSteps.
	Step       uint64
	TotalSteps uint64
	// Loss is the mean answer-token cross-entropy of the step.
	Loss         float64
	LearningRate float64
	// TokensPerSecond counts input positions per second over the step.
	TokensPerSecond float64
}

// trainRun is what the trampoline reaches through the cgo.Handle in user_data.
type trainRun struct {
	progress func(TrainProgress) bool
	// How a call of progress ended without returning, for train to re-raise; see
	// callProgress.
	goexited   bool
	panicked   bool
	panicValue any
}

// callProgress calls progress on a goroutine of its own and waits for it, so that a
// panic or runtime.Goexit in it ends that goroutine instead of unwinding through the
// library's frames (Goexit would also end the library's thread). Either answers "stop".
func (r *trainRun) callProgress(p TrainProgress) bool {
	proceed := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Cleared below unless runtime.Goexit ends this goroutine; the deferred
		// recover() cannot tell Goexit from panic(nil), which this can.
		r.goexited = true
		func() {
			returned := false
			defer func() {
				if !returned {
					r.panicked, r.panicValue = true, recover()
				}
			}()
			proceed = r.progress(p)
			returned = true
		}()
		r.goexited = false
	}()
	<-done
	return proceed && !r.panicked && !r.goexited
}

// TrainFile runs the training stages of the TOML file at path, in the format `patchrec
// train` reads (docs/TRAINING.md in the source tree); relative paths in it are taken
// from the file's folder. It blocks until training ends and returns nil when every stage
// finished, with the checkpoints in the configuration's output folder, such as
// OUT/01-pft-i5 for a one-stage run; load them with LoadModel.
//
// With resume, an interrupted run in the output folder continues where it stopped;
// without it, a non-empty output folder is StatusInvalidArgument. An output folder that
// another training is using is StatusIO.
//
// A missing or unreadable file is StatusIO naming the path; a malformed or nonsensical
// configuration is StatusFormat naming the file and the field; a model too large for the
// machine is StatusOutOfMemory, refused before anything is allocated; and a step whose
// loss or gradient became NaN or infinite is StatusNonFinite, with the stage's last resume
// state kept.
//
// progress, which may be nil, is called after every optimizer step. Returning false stops
// training: the trainer writes its resume state and TrainFile returns an *Error with
// Status StatusStopped (use errors.As), after which TrainFile with resume continues the
// run.
//
// progress runs on a goroutine of its own while TrainFile waits, so a panic in it never
// unwinds through the library: it stops training, as returning false does, and TrainFile
// re-raises it with the same value once the library has returned. The same holds for
// runtime.Goexit, so t.Fatal in progress ends a test cleanly.
func TrainFile(path string, resume bool, progress func(TrainProgress) bool) error {
	if err := checkABI(); err != nil {
		return err
	}
	cPath, err := cString("path", path)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cPath))
	return train("TrainFile", progress, func(handle C.uintptr_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_go_train_file(cPath, C.bool(resume), handle, cError)
	})
}

// TrainTOML is TrainFile with the configuration given as TOML text. Relative paths in it
// are taken from baseDir, or from the working directory when baseDir is empty. A
// malformed or nonsensical configuration is StatusInvalidArgument naming the field;
// everything else is as for TrainFile.
func TrainTOML(toml, baseDir string, resume bool, progress func(TrainProgress) bool) error {
	if err := checkABI(); err != nil {
		return err
	}
	cTOML, err := cString("toml", toml)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cTOML))
	var cBaseDir *C.char // NULL: the working directory
	if baseDir != "" {
		if cBaseDir, err = cString("baseDir", baseDir); err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(cBaseDir))
	}
	return train("TrainTOML", progress, func(handle C.uintptr_t, cError **C.patchrec_error_t) C.patchrec_status_t {
		return C.patchrec_go_train_toml(cTOML, cBaseDir, C.bool(resume), handle, cError)
	})
}

// train runs call, one of the C training entry points, with progress behind the
// trampoline's handle (0 for none), and turns its outcome into TrainFile's and
// TrainTOML's: nil, a stop, the library's error, or progress's panic or Goexit re-raised.
// name is the caller's, for the message of a stopped run.
func train(name string, progress func(TrainProgress) bool,
	call func(handle C.uintptr_t, cError **C.patchrec_error_t) C.patchrec_status_t) error {
	var handle C.uintptr_t
	run := &trainRun{progress: progress}
	if progress != nil {
		h := cgo.NewHandle(run)
		defer h.Delete()
		handle = C.uintptr_t(h)
	}
	var cError *C.patchrec_error_t
	status := call(handle, &cError)
	if run.goexited || run.panicked {
		// The library saw a stop; whatever it returned, the panic or Goexit is the news.
		C.patchrec_error_free(cError)
		if run.goexited {
			runtime.Goexit()
		}
		panic(run.panicValue)
	}
	if status == C.PATCHREC_STOPPED {
		return &Error{
			Status:  StatusStopped,
			Message: "the progress function stopped training; call " + name + " with resume to continue",
		}
	}
	return takeError(status, cError)
}
