"""What ``datasets show`` and ``models list --dataset`` print beyond a plain table: a dataset's facts as read from
its data, and the models that cannot be evaluated on it with the reason of each.

The facts come from the core (``datasets.opening.open_reader``, ``datasets.facts.dataset_facts``), so they are the
numbers the evaluation itself sees: the same items, the same classes, the same decoded image sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from mlmodelscope.cli.context import CliContext
from mlmodelscope.cli.terminal import literal_console
from mlmodelscope.core.manifests.compatibility import served_tasks
from mlmodelscope.core.manifests.resources import Dataset

if TYPE_CHECKING:  # the readers import numpy: only ``datasets show`` reads data, not every ``models list``
    from mlmodelscope.core.datasets.reader import DatasetFacts

_MOST_CLASSES = 50


def print_refusals(console: Console, dataset: str, refused: Sequence[tuple[str, list[str]]]) -> None:
    """The models that cannot be evaluated on ``dataset``, each with its reasons (one per line)."""
    if not refused:
        console.print(f"every model fits dataset '{dataset}'")
        return
    console.print(f"{len(refused)} model(s) cannot be evaluated on dataset '{dataset}':")
    for name, reasons in refused:
        for reason in reasons:
            console.print(f"  {name}: {reason}")


def _counts(key: str, counts: Mapping[str, int], *, most: int | None = None) -> Table:
    """Classes in the dataset's own order (``most`` at most); other counts most common first."""
    table = Table(key, "count")
    ordered = list(counts.items()) if most is not None else sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for label, count in ordered[:most]:
        table.add_row(label, f"{count:,}")
    if most is not None and len(ordered) > most:
        table.add_row(f"... {len(ordered) - most} more", "")
    return table


def facts_of(context: CliContext, dataset: Dataset) -> DatasetFacts:
    """Open the dataset as an evaluation would (fetching and extracting it into the cache if needed) and count.
    Imported here: only this command reads data (and Pillow), not every CLI start."""
    from mlmodelscope.core.datasets.facts import dataset_facts
    from mlmodelscope.core.datasets.opening import open_reader

    folder = context.registry.entry("Dataset", dataset.name).folder
    return dataset_facts(open_reader(dataset, context.store, folder))


def print_dataset(context: CliContext, dataset: Dataset) -> None:
    """The dataset's summary line, then its facts as tables (classes, image sizes, modes, formats)."""
    console = literal_console()
    spec = dataset.spec
    console.print(
        f"dataset '{dataset.name}': {spec.source.kind}, task {spec.task} (serves {', '.join(served_tasks(dataset))}), "
        f"split {spec.split}"
    )
    facts = facts_of(context, dataset)
    line = f"{facts.size:,} items (the manifest says {spec.size:,})"
    if facts.annotations is not None:
        line += f", {facts.annotations:,} annotations"
    console.print(line)
    classes = len(facts.class_counts)
    counted = "annotations" if spec.source.kind == "coco" else "items"
    tables: list[tuple[str, str, Mapping[str, int], int | None]] = [
        (
            f"{classes} class{'' if classes == 1 else 'es'} ({counted} per class):",
            "class",
            facts.class_counts,
            _MOST_CLASSES,
        ),
        ("image sizes (the most common):", "size", facts.image_sizes, None),
        ("image modes:", "mode", facts.modes, None),
        ("file formats:", "format", facts.formats, None),
    ]
    for title, key, counts, most in tables:
        if counts:
            console.print(title)
            console.print(_counts(key, counts, most=most))
