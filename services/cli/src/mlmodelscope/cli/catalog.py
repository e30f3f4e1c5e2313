"""``mlmodelscope models|frameworks|datasets``: browse the asset registry."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Column, Table

from mlmodelscope.cli.context import build_context
from mlmodelscope.cli.dataset_view import print_dataset, print_refusals
from mlmodelscope.cli.plain_help import cli_app
from mlmodelscope.cli.terminal import literal_console
from mlmodelscope.core.manifests.compatibility import fit
from mlmodelscope.core.manifests.registry import Registry
from mlmodelscope.core.manifests.resources import Dataset

models_app = cli_app(help="Models in the registry.", no_args_is_help=True)
frameworks_app = cli_app(help="Frameworks in the registry.", no_args_is_help=True)
datasets_app = cli_app(help="Datasets in the registry.", no_args_is_help=True)


def _context(ctx: typer.Context):  # type: ignore[no-untyped-def]
    options = ctx.find_root().obj or {}
    return build_context(options.get("assets", []), options.get("cache_dir"))


@models_app.command("list")
def list_models(
    ctx: typer.Context,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Say which models can be evaluated on this dataset, and why not."),
    ] = None,
) -> None:
    """List the registered models (with --dataset: which of them fit that dataset, with the reasons of the others)."""
    registry = _context(ctx).registry
    if dataset is not None:
        _list_fitting_models(registry, registry.dataset(dataset))
        return
    table = Table("name", "version", "task", "framework", "formats", "top-1", "weights", "source")
    for name in sorted(registry.models):
        spec = registry.model(name).spec
        if spec.hidden:
            continue
        top1 = f"{spec.attributes.top1:.3f}" if spec.attributes.top1 is not None else "-"
        table.add_row(
            name,
            spec.version,
            spec.task,
            f"{spec.framework.name} {spec.framework.version}".strip(),
            ", ".join(a.format for a in spec.artifacts),
            top1,
            spec.attributes.weights,
            str(registry.source_of("Model", name)),
        )
    literal_console().print(table)


def _list_fitting_models(registry: Registry, dataset: Dataset) -> None:
    """Every listed model with whether it fits ``dataset``; then the reasons of those that do not."""
    table = Table(
        Column("name", no_wrap=True), "task", "framework", "formats", Column("fits", no_wrap=True),
        title=f"models on dataset '{dataset.name}'", title_justify="left",
    )  # fmt: skip
    refused: list[tuple[str, list[str]]] = []
    for name in sorted(registry.models):
        model = registry.model(name)
        if model.spec.hidden:
            continue
        verdict = fit(model, dataset)
        if not verdict.ok:
            refused.append((name, verdict.reasons))
        formats = ", ".join(a.format for a in model.spec.artifacts)
        table.add_row(name, model.spec.task, model.spec.framework.name, formats, "yes" if verdict.ok else "no")
    console = literal_console()
    console.print(table)
    print_refusals(console, dataset.name, refused)


@models_app.command("show")
def show_model(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Print one model's manifest as JSON."""
    model = _context(ctx).registry.model(name)
    typer.echo(json.dumps(model.model_dump(mode="json", by_alias=True, exclude_defaults=True), indent=2))


@frameworks_app.command("list")
def list_frameworks(ctx: typer.Context) -> None:
    """List the registered frameworks."""
    registry = _context(ctx).registry
    table = Table("name", "version", "predictor", "formats", "accelerators", "images", "source")
    for name in sorted(registry.frameworks):
        spec = registry.framework(name).spec
        table.add_row(
            name,
            spec.version,
            spec.predictor,
            ", ".join(spec.formats),
            ", ".join(spec.accelerators),
            str(len(spec.containers)),
            str(registry.source_of("Framework", name)),
        )
    literal_console().print(table)


@datasets_app.command("list")
def list_datasets(ctx: typer.Context) -> None:
    """List the registered datasets."""
    registry = _context(ctx).registry
    table = Table("name", "task", "size", "split", "source")
    for name in sorted(registry.datasets):
        spec = registry.dataset(name).spec
        table.add_row(name, spec.task, str(spec.size), spec.split, str(registry.source_of("Dataset", name)))
    literal_console().print(table)


@datasets_app.command("show")
def show_dataset(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Print a dataset's facts (items, classes, image sizes, modes and formats, read from its data) and manifest."""
    context = _context(ctx)
    dataset = context.registry.dataset(name)
    print_dataset(context, dataset)
    typer.echo(json.dumps(dataset.model_dump(mode="json", by_alias=True, exclude_defaults=True), indent=2))
