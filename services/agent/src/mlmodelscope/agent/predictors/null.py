"""The null predictor: answers every batch instantly with zero outputs of the declared shapes.

It runs no model, so an evaluation through it measures the harness itself (driver, LoadGen, pre-built samples,
post-processing): the floor under every framework's figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlmodelscope.core import __version__ as core_version
from mlmodelscope.core.errors import DeviceUnavailableError
from mlmodelscope.core.predictor import Predictor, zeros_like_outputs


class NullPredictor(Predictor):
    name = "null"

    _outputs_by_batch: dict[int, list[np.ndarray]]

    @classmethod
    def library_version(cls) -> str:
        return core_version

    def load(self, artifact_path: Path) -> None:
        if self.options.device != "cpu":
            raise DeviceUnavailableError(
                f"the null predictor runs on the cpu only, not '{self.options.device}'.", hint="Use --device cpu."
            )
        self._outputs_by_batch = {}

    def predict(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        try:
            return self._outputs_by_batch[len(inputs[0])]
        except KeyError:
            batch = len(inputs[0])
            outputs = self._outputs_by_batch[batch] = zeros_like_outputs(self.model, batch)
            return outputs
