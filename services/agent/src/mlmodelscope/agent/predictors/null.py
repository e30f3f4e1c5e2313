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

    @classmethod
    def library_version(cls) -> str:
        return core_version

    def load(self, artifact_path: Path) -> None:
        if self.options.device != "cpu":
            raise DeviceUnavailableError(
                f"the null predictor runs on the cpu only, not '{self.options.device}'.", hint="Use --device cpu."
            )
        outputs_by_batch: dict[int, list[np.ndarray]] = {}
        model = self.model

        def predict(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
            try:
                return outputs_by_batch[len(inputs[0])]
            except KeyError:
                outputs = outputs_by_batch[len(inputs[0])] = zeros_like_outputs(model, len(inputs[0]))
                return outputs

        # A plain function bound on the instance: the harness calls it with no method-binding cost.
        self.predict = predict  # type: ignore[method-assign]

    def predict(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        raise RuntimeError("NullPredictor.predict called before load()")
