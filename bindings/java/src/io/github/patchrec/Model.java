package io.github.patchrec;

import static io.github.patchrec.LibPatchrec.*;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.nio.file.Path;

/**
 * A loaded checkpoint: decoder weights, tokenizer and prompt template. Immutable and
 * thread-safe: any number of threads may use one model at once. Catalogues hold their
 * own reference to the weights, so a model may be closed while its catalogues are in use.
 */
public final class Model extends NativeHandle {
    private Model(Pointer pointer) {
        super(pointer, LibPatchrec::patchrec_model_free);
    }

    /** Loads {@code checkpointDir} to run on the CPU. */
    public static Model load(Path checkpointDir) {
        return load(checkpointDir, "cpu");
    }

    /**
     * Loads the checkpoint directory {@code checkpointDir} ({@code config.json},
     * {@code model.safetensors}, {@code tokenizer.json}, {@code patchrec.json}) to run on
     * {@code device}, {@code "cpu"} or {@code "cuda:N"} (a library built with the cuda
     * feature). A missing directory is {@link Status#IO}, a malformed file
     * {@link Status#FORMAT}, both naming the file; an unknown device
     * {@link Status#INVALID_ARGUMENT}.
     */
    public static Model load(Path checkpointDir, String device) {
        return load(checkpointDir, device, "");
    }

    /**
     * {@link #load(Path, String)} serving from quantized weights: {@code quantization} is
     * {@code "q8_0"}, {@code "q4_0"}, {@code "bf16"}, or {@code ""} for the checkpoint's f32 weights (an unknown
     * name is {@link Status#INVALID_ARGUMENT}). Scores change slightly; such a model cannot be
     * trained.
     */
    public static Model load(Path checkpointDir, String device, String quantization) {
        requireAbi();
        byte[] dir = cString("checkpoint_dir", checkpointDir.toString());
        byte[] deviceName = cString("device", device);
        byte[] quantizationName = cString("quantization", quantization);
        Pointer options = patchrec_model_options_new();
        try {
            check(error -> patchrec_model_options_set_device(options, deviceName, error));
            check(error -> patchrec_model_options_set_quantization(options, quantizationName, error));
            PointerByReference model = new PointerByReference();
            check(error -> patchrec_model_load(dir, options, model, error));
            return new Model(model.getValue());
        } finally {
            patchrec_model_options_free(options);
        }
    }
}
