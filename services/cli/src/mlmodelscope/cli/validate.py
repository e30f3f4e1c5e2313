"""``mlmodelscope validate FILE...``: check Model, Framework, Dataset and Evaluation files before anything runs.

Each document of each file is read by the product's one YAML reader (duplicate keys refused), validated against
its pydantic model with the same messages local mode gives, then against its CRD's schema (what ``kubectl apply``
would be told). Nothing is fetched and no service is started. Files are checked in order; the first invalid file
ends the command with exit code 1, after an ``OK`` line for each valid file before it.

Like ``mlmodelscope operator``, this imports the operator distribution (the Evaluation model, the CRD generator)
only when it runs, so every other command starts where that distribution is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from mlmodelscope.cli.admission import admission_problems, crd_name, crd_schema
from mlmodelscope.cli.terminal import literal_console
from mlmodelscope.core.errors import ManifestError, MLModelScopeError
from mlmodelscope.core.manifests.loading import document_kind, read_documents, validate_document
from mlmodelscope.core.manifests.resources import RESOURCE_KINDS

_FIELDS_DOC = {"Evaluation": "docs/operator.md"}


def validate(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE", help="YAML files of Model, Framework, Dataset or Evaluation resources."),
    ],
) -> None:
    """Check resource files against the pydantic models and the CRD schemas; start nothing."""
    console = literal_console()
    for path in files:
        console.print(f"OK {path}: {', '.join(check_file(path))}", soft_wrap=True)


def validated_kinds() -> dict[str, type[BaseModel]]:
    """Model, Framework and Dataset from the core; Evaluation from the operator distribution."""
    try:
        from mlmodelscope.operator.evaluation import Evaluation  # an optional distribution
    except ImportError as e:
        raise MLModelScopeError(
            f"validate needs the operator distribution (the Evaluation model and the CRDs), not installed here ({e}).",
            hint="`pip install -e operator` (mlmodelscope-operator).",
        ) from e
    return {**RESOURCE_KINDS, "Evaluation": Evaluation}


def check_file(path: Path) -> list[str]:
    """``Kind name`` of every resource in the file; ManifestError for the first invalid document."""
    checked = []
    for index, data in read_documents(path):
        source = str(path) if index == 0 else f"{path} (document {index + 1})"
        checked.append(check_document(data, source=source))
    if not checked:
        raise ManifestError(f"{path}: no resource in the file.", hint="Write one YAML document per resource.")
    return checked


def check_document(data: Any, *, source: str) -> str:
    """``Kind name`` of one valid document; ManifestError naming every problem of an invalid one."""
    model_type = document_kind(data, source=source, kinds=validated_kinds())
    kind = str(data["kind"])
    fields_doc = _FIELDS_DOC.get(kind, "docs/manifests.md")
    validate_document(model_type, data, source=source, hint=f"See {fields_doc} for the fields of {kind}.")
    schema = crd_schema(kind)
    if schema is not None:
        problems = admission_problems(data, schema)
        if problems:
            raise ManifestError(
                f"{source}: the cluster would refuse this {kind} (schema of CRD {crd_name(kind)}): "
                f"{'; '.join(problems)}.",
                hint=f'Write each value with the type the schema names (e.g. 2, not "2"); see {fields_doc}.',
            )
    return f"{kind} {data['metadata']['name']}"
