package patchrec

// #include <stdint.h>
// #include <patchrec.h>
import "C"

import "runtime/cgo"

// patchrecGoTrainProgress is the progress callback that TrainFile and TrainTOML give
// patchrec_train_file and patchrec_train_toml, through the C shim in train.go; handle is
// the cgo.Handle of the run's *trainRun. It is in a file of its own because a file with
// //export may only declare C functions in its preamble, and the shim is a definition.
// Nothing here can panic once the report is copied: callProgress keeps the user's panics
// and Goexits away from the library's frames.
//
//export patchrecGoTrainProgress
func patchrecGoTrainProgress(progress *C.patchrec_train_progress_t, handle C.uintptr_t) C.bool {
	run := cgo.Handle(handle).Value().(*trainRun)
	return C.bool(run.callProgress(TrainProgress{
		// The library owns the report and its string only during the call: copy them.
		Stage:           C.GoString(progress.stage),
		StageIndex:      int(progress.stage_index),
		Step:            uint64(progress.step),
		TotalSteps:      uint64(progress.total_steps),
		Loss:            float64(progress.loss),
		LearningRate:    float64(progress.learning_rate),
		TokensPerSecond: float64(progress.tokens_per_second),
	}))
}
