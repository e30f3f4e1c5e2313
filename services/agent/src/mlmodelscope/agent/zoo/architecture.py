"""The sizes of the zoo's architectures, once for every framework's builder (torch, Keras, MXNet).

Why: each framework module builds the same ResNet/MobileNet/encoder layer by layer, so that a model means the same
network in every framework; their sizes were written out in each module and could drift apart unnoticed.
"""

from __future__ import annotations

IMAGE_SIZE = 224
IMAGE_CHANNELS = 3
IMAGE_SHAPE = (IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)  # CHW
IMAGE_CLASSES = 1000
VOCABULARY_SIZE = 8192
SEQUENCE_LENGTH = 128
EMBEDDING_SIZE = 256
ATTENTION_HEADS = 4
FEEDFORWARD_SIZE = 1024
ENCODER_LAYERS = 4
TEXT_CLASSES = 2
