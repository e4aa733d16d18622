package patchrec_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	patchrec "github.com/patchrec/patchrec/bindings/go"
)

// The tests of tests/c/test_train.c, through Train.

// datasetDir is the tiny synthetic dataset the training tests run on, from
// PATCHREC_TEST_DATASET; like the checkpoint, its absence fails the tests.
func datasetDir(t testing.TB) string {
	dir := os.Getenv("PATCHREC_TEST_DATASET")
	if dir == "" {
		t.Fatal("PATCHREC_TEST_DATASET is not set; scripts/test-bindings.sh makes a tiny dataset " +
			"with `patchrec synth` and sets it")
	}
	return dir
}

// trainConfig is the C test's configuration as TOML text: a tiny from-scratch model and
// one four-step PFT-I stage (named pft-i2) writing into out.
func trainConfig(t testing.TB, out string) string {
	quote := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `out = "` + quote.Replace(out) + `"` + "\n" +
		`data = "` + quote.Replace(datasetDir(t)) + `"` + "\n" + `
[model.init]
vocab_size = 300
hidden = 32
layers = 1
heads = 2
kv_heads = 1

[[stage]]
kind = "pft-i"
m = 2
max_history = 6
max_steps = 4
batch_size = 2
micro_batch = 2
learning_rate = 0.01
`
}

// finalCheckpoint is where trainConfig's run leaves its one stage's checkpoint.
func finalCheckpoint(out string) string {
	return filepath.Join(out, "01-pft-i2")
}

// progressLog records the reports it is given and stops at call stopAt (never when 0).
type progressLog struct {
	t       *testing.T
	stopAt  int
	reports []patchrec.TrainProgress
}

func (l *progressLog) report(p patchrec.TrainProgress) bool {
	l.reports = append(l.reports, p)
	return len(l.reports) != l.stopAt
}

// requireSteps fails l.t unless the reports are steps first, first+1, ... of the stage,
// with sane numbers.
func (l *progressLog) requireSteps(first uint64, n int) {
	l.t.Helper()
	if len(l.reports) != n {
		l.t.Fatalf("the progress function saw %d steps, want %d: %+v", len(l.reports), n, l.reports)
	}
	for i, p := range l.reports {
		if p.Stage != "pft-i2" || p.StageIndex != 0 || p.Step != first+uint64(i) || p.TotalSteps != 4 ||
			!(p.Loss > 0) || !(p.LearningRate > 0) || !(p.TokensPerSecond > 0) {
			l.t.Errorf("report %d is not step %d of 4 of stage 0, pft-i2, with positive numbers: %+v", i, first+uint64(i), p)
		}
	}
}

func TestTrainStopAndResume(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	config := trainConfig(t, out)

	first := &progressLog{t: t, stopAt: 2}
	err := patchrec.Train(config, false, first.report)
	var stopped *patchrec.Error
	if !errors.As(err, &stopped) || stopped.Status != patchrec.StatusStopped {
		t.Fatalf("stopping at step 2 gave %v, want a *patchrec.Error with %v", err, patchrec.StatusStopped)
	}
	first.requireSteps(1, 2)

	requireError(t, patchrec.Train(config, false, nil), patchrec.StatusInvalidArgument, "not empty")

	rest := &progressLog{t: t}
	if err := patchrec.Train(config, true, rest.report); err != nil {
		t.Fatalf("resuming: %v", err)
	}
	rest.requireSteps(3, 2)
	if _, err := os.Stat(filepath.Join(finalCheckpoint(out), "model.safetensors")); err != nil {
		t.Fatalf("the final checkpoint: %v", err)
	}
	model, err := patchrec.LoadModel(finalCheckpoint(out), nil)
	if err != nil {
		t.Fatalf("loading the trained checkpoint: %v", err)
	}
	model.Close()
}

// A configuration file's path works as well as its text, and progress may be nil.
func TestTrainFromFileWithoutProgress(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	path := filepath.Join(dir, "train.toml")
	if err := os.WriteFile(path, []byte(trainConfig(t, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := patchrec.Train(path, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(finalCheckpoint(out), "model.safetensors")); err != nil {
		t.Fatalf("the final checkpoint: %v", err)
	}
}

type progressPanic struct{ step uint64 }

// A panic in the progress function stops training without unwinding through the library,
// and Train re-raises it; the stopped run then resumes.
func TestTrainProgressPanic(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	config := trainConfig(t, out)
	recovered := func() (value any) {
		defer func() { value = recover() }()
		err := patchrec.Train(config, false, func(p patchrec.TrainProgress) bool {
			panic(progressPanic{p.Step})
		})
		t.Errorf("Train returned %v instead of re-raising the panic", err)
		return nil
	}()
	if recovered != (progressPanic{1}) {
		t.Fatalf("recovered %#v, want the progress function's panic at step 1", recovered)
	}
	rest := &progressLog{t: t}
	if err := patchrec.Train(config, true, rest.report); err != nil {
		t.Fatalf("resuming after the panic: %v", err)
	}
	rest.requireSteps(2, 3)
}

// runtime.Goexit in the progress function (t.Fatal calls it) stops training without ending
// the library's thread, and Train then calls it on the caller's goroutine.
func TestTrainProgressGoexit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	config := trainConfig(t, out)
	trainReturned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = patchrec.Train(config, false, func(patchrec.TrainProgress) bool {
			runtime.Goexit()
			return true
		})
		trainReturned = true
	}()
	<-done
	if trainReturned {
		t.Fatal("Train returned instead of calling runtime.Goexit")
	}
	rest := &progressLog{t: t}
	if err := patchrec.Train(config, true, rest.report); err != nil {
		t.Fatalf("resuming after the Goexit: %v", err)
	}
	rest.requireSteps(2, 3)
}

func TestTrainErrors(t *testing.T) {
	err := patchrec.Train("[[stage]]\nkind = \"nope\"\n", false, nil)
	requireError(t, err, patchrec.StatusInvalidArgument, "unknown variant `nope`")
	err = patchrec.Train("out = \"x\"\x00", false, nil)
	requireError(t, err, patchrec.StatusInvalidArgument, "`config` contains a NUL byte")
	// A path that is not a file is taken as TOML text, as in C.
	called := false
	err = patchrec.Train(filepath.Join(t.TempDir(), "missing.toml"), false, func(patchrec.TrainProgress) bool {
		called = true
		return true
	})
	requireError(t, err, patchrec.StatusInvalidArgument, "training config")
	if called {
		t.Error("a failed start called the progress function")
	}
}
