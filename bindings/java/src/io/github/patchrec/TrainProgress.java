package io.github.patchrec;

/**
 * One optimizer step's report, passed to the progress callback of
 * {@link Patchrec#trainFile(java.nio.file.Path, boolean, java.util.function.Predicate)} and
 * {@link Patchrec#trainToml}.
 *
 * @param stage the stage's name: {@code sft}, {@code ppt}, {@code pft-i5}, {@code pft-s20}, ...
 * @param stageIndex the 0-based position of the stage in the configuration
 * @param step optimizer steps done in this stage, 1 to {@code totalSteps}
 * @param totalSteps the stage's optimizer steps in all
 * @param loss the mean answer-token cross-entropy of the step
 * @param learningRate the step's learning rate
 * @param tokensPerSecond input positions per second over the step
 */
public record TrainProgress(
        String stage,
        int stageIndex,
        long step,
        long totalSteps,
        double loss,
        double learningRate,
        double tokensPerSecond) {}
