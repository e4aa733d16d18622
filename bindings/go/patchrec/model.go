package patchrec

// #include <stdlib.h>
// #include <patchrec.h>
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Model is a loaded checkpoint: decoder weights, tokenizer and prompt template. It is
// immutable and safe for concurrent use by multiple goroutines. Catalogues hold their own
// reference to the weights, so a Model may be closed while its catalogues are in use.
type Model struct {
	// mu is read-held by every call and write-held by Close, which thus waits for
	// the calls in flight instead of freeing the handle under them.
	mu  sync.RWMutex
	ptr *C.patchrec_model_t
}

// ModelOptions says how to load a model; the zero value asks for the defaults.
type ModelOptions struct {
	// Device is "cpu" or "cuda:N" (a library built with the cuda feature); empty means
	// "cpu". LoadModel checks the name.
	Device string
	// Quantization serves the model from quantized weights: "q8_0", "q4_0" or "bf16";
	// empty means the checkpoint's f32 weights. Scores change slightly; such a model cannot be
	// trained.
	Quantization string
}

// LoadModel loads the checkpoint directory checkpointDir (config.json,
// model.safetensors, tokenizer.json, patchrec.json); options may be nil for the
// defaults. A missing directory is StatusIO and a malformed file StatusFormat, both
// naming the file.
func LoadModel(checkpointDir string, options *ModelOptions) (*Model, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	dir, err := cString("checkpoint_dir", checkpointDir)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(dir))
	cOptions := C.patchrec_model_options_new()
	defer C.patchrec_model_options_free(cOptions)
	if options != nil {
		setters := []struct {
			name, value string
			set         func(*C.char, **C.patchrec_error_t) C.patchrec_status_t
		}{
			{"device", options.Device, func(s *C.char, e **C.patchrec_error_t) C.patchrec_status_t {
				return C.patchrec_model_options_set_device(cOptions, s, e)
			}},
			{"quantization", options.Quantization, func(s *C.char, e **C.patchrec_error_t) C.patchrec_status_t {
				return C.patchrec_model_options_set_quantization(cOptions, s, e)
			}},
		}
		for _, s := range setters {
			if err := setStringOption(s.name, s.value, s.set); err != nil {
				return nil, err
			}
		}
	}
	var ptr *C.patchrec_model_t
	var cError *C.patchrec_error_t
	if err := takeError(C.patchrec_model_load(dir, cOptions, &ptr, &cError), cError); err != nil {
		return nil, err
	}
	model := &Model{ptr: ptr}
	runtime.SetFinalizer(model, func(m *Model) { m.Close() })
	return model, nil
}

// Close releases the model after the calls in flight return; catalogues made from it
// keep working. It always returns nil, closing again included; the error is there so
// that a Model is an io.Closer.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	C.patchrec_model_free(m.ptr)
	m.ptr = nil
	runtime.SetFinalizer(m, nil)
	return nil
}

// setStringOption passes value to one string setter of the model options; an empty value
// keeps the default.
func setStringOption(name, value string, set func(*C.char, **C.patchrec_error_t) C.patchrec_status_t) error {
	if value == "" {
		return nil
	}
	cValue, err := cString(name, value)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cValue))
	var cError *C.patchrec_error_t
	return takeError(set(cValue, &cError), cError)
}
