"""The manifest's declared inputs and outputs against the loaded model, checked the same way by every framework.

``match_names`` / ``check_count`` / ``check_tensor`` compare names, counts, dtypes and per-sample shapes; each
mismatch is a ``ModelLoadError`` naming both sides and the manifest field to fix (``count_mismatch`` words the
count case, also for a model that returns another number of outputs at run time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from mlmodelscope.core.errors import ModelLoadError, PredictorError
from mlmodelscope.core.manifests.model_tensors import TensorSpec

Kind = Literal["input", "output"]
Positional = Literal["never", "same_count", "single"]


def count_mismatch(
    model: str,
    kind: Kind,
    found: Sequence[str] | int,
    declared: Sequence[TensorSpec],
    *,
    verb: str = "has",
    error: type[PredictorError] = ModelLoadError,
) -> PredictorError:
    """``model`` has (or returned) another number of ``kind`` tensors than the manifest declares."""
    count, names = (found, "") if isinstance(found, int) else (len(found), f" {list(found)}")
    return error(
        f"{model} {verb} {count} {kind}s{names}, but the manifest declares {len(declared)} "
        f"{[spec.name for spec in declared]}.",
        hint=f"Fix spec.{kind}s in the Model manifest (one entry per model {kind}, in order).",
    )


def check_count(model: str, kind: Kind, found: Sequence[str] | int, declared: Sequence[TensorSpec]) -> None:
    """ModelLoadError when ``model`` has another number of ``kind`` tensors than the manifest declares."""
    if (found if isinstance(found, int) else len(found)) != len(declared):
        raise count_mismatch(model, kind, found, declared)


def match_names(
    model: str,
    kind: Kind,
    found: Sequence[str],
    declared: Sequence[TensorSpec],
    *,
    positional: Positional = "never",
    complete: bool = False,
    hint: str = "",
) -> list[int]:
    """For each declared tensor, the position of the model's tensor of that name in ``found``.

    ``positional`` says when names that do not match are paired by position instead: ``same_count`` (the counts
    must then be equal), ``single`` (one tensor each side). ``complete``: every tensor in ``found`` must be declared.
    """
    names = [spec.name for spec in declared]
    if positional == "same_count":
        check_count(model, kind, found, declared)
    missing = [name for name in names if name not in found]
    extra = [name for name in found if name not in names] if complete else []
    if not missing and not extra:
        return [list(found).index(name) for name in names]
    if (positional == "same_count") or (positional == "single" and len(found) == len(names) == 1):
        return list(range(len(found)))
    fix = f"Fix spec.{kind}s[].name in the Model manifest{hint}."
    if missing:
        raise ModelLoadError(
            f"{model} has no {kind} named '{missing[0]}' (its {kind}s: {list(found)}); the manifest declares {names}.",
            hint=fix,
        )
    raise ModelLoadError(
        f"{model} has {kind}s {extra} that the manifest does not declare (its {kind}s: {list(found)}); the manifest "
        f"declares {names}.",
        hint=fix,
    )


def check_tensor(
    model: str, kind: Kind, name: str, dtype: str, shape: Sequence[int], declared: TensorSpec, *, sample_from: int = 1
) -> None:
    """The model's ``kind`` tensor ``name`` (``dtype``, ``shape`` with -1 dynamic) fits the declared one.

    ``shape[sample_from:]`` is one sample (by default the first axis is the batch); it fits the declared sample
    shape when the ranks agree and every axis is equal or dynamic (-1) on either side.
    """
    declared_as = "" if declared.name == name else f"'{declared.name}' as "
    if dtype != declared.dtype:
        raise ModelLoadError(
            f"{model} has {kind} '{name}' as {dtype}, but the manifest declares {declared_as}{declared.dtype}.",
            hint=f"Fix spec.{kind}s[].dtype in the Model manifest (or use the model variant with a {declared.dtype} "
            "interface).",
        )
    sample = [int(d) for d in shape[sample_from:]]
    fits = len(sample) == len(declared.shape) and all(
        m == -1 or d in (-1, m) for d, m in zip(sample, declared.shape, strict=True)
    )
    if not fits:
        raise ModelLoadError(
            f"{model} has {kind} '{name}' shaped {sample} per sample (shape signature {[int(d) for d in shape]}), "
            f"but the manifest declares {declared_as}{declared.shape}.",
            hint=f"Fix spec.{kind}s[].shape in the Model manifest (one sample, without the batch axis).",
        )
