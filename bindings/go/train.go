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
// // patchrec_train with the trampoline, or no callback when handle is 0. The handle
// // travels as an integer so that Go never turns it into a pointer.
// static patchrec_status_t patchrec_go_train(const char *config, bool resume, uintptr_t handle,
// 		patchrec_error_t **error) {
// 	return patchrec_train(config, resume, handle == 0 ? NULL : patchrec_go_train_progress,
// 		(void *)handle, error);
// }
import "C"

import (
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// TrainProgress is one optimizer step's report, passed to Train's progress function.
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
	// How a call of progress ended without returning, for Train to re-raise; see
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

// Train runs the training stages of config: the path of a TOML file, or the TOML text
// itself (relative paths in it are then taken from the working directory), in the format
// `patchrec train` reads (docs/TRAINING.md in the source tree). It blocks until training
// ends and returns nil when every stage finished, with the checkpoints in the
// configuration's output folder, such as OUT/01-pft-i5 for a one-stage run; load them
// with LoadModel.
//
// With resume, an interrupted run in the output folder continues where it stopped;
// without it, a non-empty output folder is StatusInvalidArgument.
//
// progress, which may be nil, is called after every optimizer step. Returning false stops
// training: the trainer writes its resume state and Train returns an *Error with Status
// StatusStopped (use errors.As), after which Train with resume continues the run.
//
// progress runs on a goroutine of its own while Train waits, so a panic in it never
// unwinds through the library: it stops training, as returning false does, and Train
// re-raises it with the same value once the library has returned. The same holds for
// runtime.Goexit, so t.Fatal in progress ends a test cleanly.
func Train(config string, resume bool, progress func(TrainProgress) bool) error {
	if err := checkABI(); err != nil {
		return err
	}
	cConfig, err := cString("config", config)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cConfig))
	var handle C.uintptr_t
	run := &trainRun{progress: progress}
	if progress != nil {
		h := cgo.NewHandle(run)
		defer h.Delete()
		handle = C.uintptr_t(h)
	}
	var cError *C.patchrec_error_t
	status := C.patchrec_go_train(cConfig, C.bool(resume), handle, &cError)
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
			Message: "the progress function stopped training; call Train with resume to continue",
		}
	}
	return takeError(status, cError)
}
