"""Further sha256 digests accepted for the builds whose converter computes weights with TensorFlow's CPU kernels,
each recorded on a CPU kind whose kernels round differently (hand-kept: ``pins`` writes the first digest only).

Why: the TFLite converter folds every BatchNorm into its convolution, and the int8 conversion also calibrates on
photos, with TensorFlow's float kernels, whose last bits depend on the CPU's vector instructions. With the same
pinned versions, the machine that made the pins and an AVX-512 machine (AMD EPYC, Zen 4; 2026-12-03) wrote other
bytes for both ``.tflite`` files, and the build was refused there. The other builds do no arithmetic and have one
digest each: the ONNX export keeps the BatchNormalization nodes, the TorchScript, Keras and MXNet builds copy the
weights. A digest listed here names a build that is deterministic on its CPU kind and converted from the pinned
Keras build (whose bytes are the same everywhere).
"""

CPU_VARIANTS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "mobilenet-v2-imagenet": {
        "tflite": {
            "mobilenet-v2-imagenet.tflite": ("52c63aebb15180e071304aaed7ddb0884816b31dfb9d9b6c3575d1ef8cf90c0c",),
        },
    },
    "mobilenet-v2-imagenet-int8": {
        "tflite": {
            "mobilenet-v2-imagenet-int8.tflite": ("ee91f0918fed8511fb9430b46115d900f9fee08c33e03cf9145ba7439293fd09",),
        },
    },
}
