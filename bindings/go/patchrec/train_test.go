package patchrec_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/patchrec/patchrec/bindings/go/patchrec"
)

// The tests of tests/c/test_train.c, through TrainFile and TrainTOML.

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

// The tiny from-scratch model and the four-step PFT-I stage (named pft-i2) of the C test.
const (
	tinyModel = `vocab_size = 300
hidden = 32
layers = 1
heads = 2
kv_heads = 1
`
	tinyStage = `kind = "pft-i"
m = 2
max_history = 6
max_steps = 4
batch_size = 2
micro_batch = 2
learning_rate = 0.01
`
)

// trainConfig is the C test's configuration as TOML text: tinyModel trained by tinyStage,
// writing into out (taken from the base folder when relative).
func trainConfig(t testing.TB, out string) string {
	return trainConfigWith(t, out, tinyModel, tinyStage)
}

// trainConfigWith is a configuration as TOML text: a from-scratch model with the fields
// model of [model.init], trained on the tiny dataset by one stage with the fields stage,
// writing into out.
func trainConfigWith(t testing.TB, out, model, stage string) string {
	quote := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `out = "` + quote.Replace(out) + `"` + "\n" +
		`data = "` + quote.Replace(datasetDir(t)) + `"` + "\n\n[model.init]\n" + model + "\n[[stage]]\n" + stage
}

// writeConfig writes text into a file named name in dir and returns its path.
func writeConfig(t testing.TB, dir, name, text string) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// requireCheckpoint fails t unless a finished run left its stage's checkpoint in out.
func requireCheckpoint(t *testing.T, out string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(finalCheckpoint(out), "model.safetensors")); err != nil {
		t.Fatalf("the final checkpoint: %v", err)
	}
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

// A run stopped from the progress function refuses to start again without resume, and
// resumes from the same configuration as a file.
func TestTrainStopAndResume(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	config := trainConfig(t, out)

	first := &progressLog{t: t, stopAt: 2}
	err := patchrec.TrainTOML(config, "", false, first.report)
	var stopped *patchrec.Error
	if !errors.As(err, &stopped) || stopped.Status != patchrec.StatusStopped {
		t.Fatalf("stopping at step 2 gave %v, want a *patchrec.Error with %v", err, patchrec.StatusStopped)
	}
	if !strings.Contains(stopped.Message, "call TrainTOML with resume") {
		t.Errorf("the stop's message does not say how to continue: %q", stopped.Message)
	}
	first.requireSteps(1, 2)

	requireError(t, patchrec.TrainTOML(config, "", false, nil), patchrec.StatusInvalidArgument, "not empty")

	// The configuration's paths are absolute, so the file's folder does not matter.
	path := writeConfig(t, dir, "train.toml", config)
	rest := &progressLog{t: t}
	if err := patchrec.TrainFile(path, true, rest.report); err != nil {
		t.Fatalf("resuming: %v", err)
	}
	rest.requireSteps(3, 2)
	requireCheckpoint(t, out)
	model, err := patchrec.LoadModel(finalCheckpoint(out), nil)
	if err != nil {
		t.Fatalf("loading the trained checkpoint: %v", err)
	}
	if err := model.Close(); err != nil {
		t.Error(err)
	}
}

// TrainFile takes relative paths from the file's folder, not the working directory, and
// progress may be nil.
func TestTrainFileRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "train.toml", trainConfig(t, "run"))
	if err := patchrec.TrainFile(path, false, nil); err != nil {
		t.Fatal(err)
	}
	requireCheckpoint(t, filepath.Join(dir, "run"))
	if _, err := os.Stat("run"); !os.IsNotExist(err) {
		t.Errorf("the run also wrote into the working directory: %v", err)
	}
}

// TrainTOML takes relative paths from baseDir.
func TestTrainTOMLBaseDir(t *testing.T) {
	dir := t.TempDir()
	if err := patchrec.TrainTOML(trainConfig(t, "run"), dir, false, nil); err != nil {
		t.Fatal(err)
	}
	requireCheckpoint(t, filepath.Join(dir, "run"))
	if _, err := os.Stat("run"); !os.IsNotExist(err) {
		t.Errorf("the run also wrote into the working directory: %v", err)
	}
}

type progressPanic struct{ step uint64 }

// A panic in the progress function stops training without unwinding through the library,
// and TrainFile re-raises it; the stopped run then resumes.
func TestTrainProgressPanic(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	path := writeConfig(t, dir, "train.toml", trainConfig(t, out))
	recovered := func() (value any) {
		defer func() { value = recover() }()
		err := patchrec.TrainFile(path, false, func(p patchrec.TrainProgress) bool {
			panic(progressPanic{p.Step})
		})
		t.Errorf("TrainFile returned %v instead of re-raising the panic", err)
		return nil
	}()
	if recovered != (progressPanic{1}) {
		t.Fatalf("recovered %#v, want the progress function's panic at step 1", recovered)
	}
	rest := &progressLog{t: t}
	if err := patchrec.TrainFile(path, true, rest.report); err != nil {
		t.Fatalf("resuming after the panic: %v", err)
	}
	rest.requireSteps(2, 3)
}

// runtime.Goexit in the progress function (t.Fatal calls it) stops training without ending
// the library's thread, and TrainTOML then calls it on the caller's goroutine.
func TestTrainProgressGoexit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	config := trainConfig(t, out)
	trainReturned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = patchrec.TrainTOML(config, "", false, func(patchrec.TrainProgress) bool {
			runtime.Goexit()
			return true
		})
		trainReturned = true
	}()
	<-done
	if trainReturned {
		t.Fatal("TrainTOML returned instead of calling runtime.Goexit")
	}
	rest := &progressLog{t: t}
	if err := patchrec.TrainTOML(config, "", true, rest.report); err != nil {
		t.Fatalf("resuming after the Goexit: %v", err)
	}
	rest.requireSteps(2, 3)
}

// A second training on an output folder that a running one holds is StatusIO.
func TestTrainOutputFolderInUse(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	config := trainConfig(t, out)
	atFirstStep := make(chan struct{})
	release := make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- patchrec.TrainTOML(config, "", false, func(p patchrec.TrainProgress) bool {
			if p.Step == 1 {
				close(atFirstStep)
				<-release
			}
			return true
		})
	}()
	select {
	case <-atFirstStep:
	case err := <-firstDone:
		t.Fatalf("the first training ended before its first report: %v", err)
	}
	// With resume, as without it the folder, not empty, would be refused before its lock.
	err := patchrec.TrainTOML(config, "", true, nil)
	close(release)
	requireError(t, err, patchrec.StatusIO, "another training")
	if err := <-firstDone; err != nil {
		t.Fatalf("the first training: %v", err)
	}
	requireCheckpoint(t, out)
}

// A model too large for the machine is refused before anything is allocated.
func TestTrainOutOfMemory(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	model := strings.Replace(tinyModel, "hidden = 32", "hidden = 1000000", 1)
	err := patchrec.TrainTOML(trainConfigWith(t, out, model, tinyStage), "", false, nil)
	requireError(t, err, patchrec.StatusOutOfMemory, "hidden")
}

// A stage whose loss becomes NaN or infinite stops with StatusNonFinite and keeps the
// resume state of its last good step.
func TestTrainNonFinite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	// Adam's first updates move each weight by ~1e38, so the weights soon overflow.
	stage := strings.NewReplacer("learning_rate = 0.01", "learning_rate = 1e38",
		"max_steps = 4", "max_steps = 8\ncheckpoint_every = 1").Replace(tinyStage)
	steps := 0
	err := patchrec.TrainTOML(trainConfigWith(t, out, tinyModel, stage), "", false, func(patchrec.TrainProgress) bool {
		steps++
		return true
	})
	requireError(t, err, patchrec.StatusNonFinite, "learning_rate")
	if _, err := os.Stat(filepath.Join(out, "01-pft-i2.resume", "trainer.json")); err != nil {
		t.Errorf("the resume state after %d good steps: %v", steps, err)
	}
}

// A mistyped path is a missing file named in the error, never taken for TOML text; TOML
// text given as a path is one too.
func TestTrainFileMissing(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "mising.toml")
	called := false
	err := patchrec.TrainFile(missing, false, func(patchrec.TrainProgress) bool {
		called = true
		return true
	})
	requireError(t, err, patchrec.StatusIO, missing)
	if called {
		t.Error("a failed start called the progress function")
	}
	err = patchrec.TrainFile(trainConfig(t, filepath.Join(dir, "run")), false, nil)
	requireError(t, err, patchrec.StatusIO, "out = ")
	if _, err := os.Stat(filepath.Join(dir, "run")); !os.IsNotExist(err) {
		t.Errorf("TOML text given as a path started a run: %v", err)
	}
}

// A malformed configuration file is StatusFormat naming the file and the field; as text,
// StatusInvalidArgument naming the field. NUL bytes never reach C.
func TestTrainBadConfigurations(t *testing.T) {
	bad := "[[stage]]\nkind = \"nope\"\n"
	path := writeConfig(t, t.TempDir(), "bad.toml", bad)
	requireError(t, patchrec.TrainFile(path, false, nil), patchrec.StatusFormat, path)
	requireError(t, patchrec.TrainFile(path, false, nil), patchrec.StatusFormat, "unknown variant `nope`")
	requireError(t, patchrec.TrainTOML(bad, "", false, nil), patchrec.StatusInvalidArgument, "unknown variant `nope`")

	requireError(t, patchrec.TrainFile("train.toml\x00", false, nil), patchrec.StatusInvalidArgument,
		"`path` contains a NUL byte")
	requireError(t, patchrec.TrainTOML("out = \"x\"\x00", "", false, nil), patchrec.StatusInvalidArgument,
		"`toml` contains a NUL byte")
	requireError(t, patchrec.TrainTOML(bad, "dir\x00", false, nil), patchrec.StatusInvalidArgument,
		"`baseDir` contains a NUL byte")
}
