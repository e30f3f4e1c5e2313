"""The predictor Job of one planned run, as a plain manifest (pure; unit-testable without a cluster).

The pod runs the agent entrypoint (``python -m mlmodelscope.agent --spec-env MLMODELSCOPE_RUN_SPEC``) with the core's
``RunSpec`` inline in that variable (no ConfigMap to create, own or clean up). The spec carries the Model, Framework
and Dataset exactly as applied in the cluster (``PlannedRun.resources``): the agent evaluates those and resolves
nothing from its image; only relative artifact URIs resolve against the image's asset folder (their ``base_dir``).

The pod lands on a node of the run's architecture (``nodeSelector: kubernetes.io/arch`` plus the target's own
labels), asks for exactly the target's ``count`` devices of its accelerator (tolerating the usual GPU taint, plus the
target's tolerations), with requests equal to limits unless given (Guaranteed QoS: a benchmark's CPUs are not shared),
runs as a non-root user with no privilege escalation under the agent ServiceAccount with no API token mounted, and
belongs to its Evaluation (``ownerReferences`` with ``controller: true``), so deleting the Evaluation deletes its Jobs.
Finished Jobs are removed after ``job_ttl_s`` (their results live in the collector, their states in the status).
Secrets are referenced by name, never copied into the manifest: the NATS token (``nats_token_secret``) and the S3
credentials (``s3_secret``, keys ``accessKey``/``secretKey`` as the chart's object-store Secrets have them).
With a Kueue queue the Job is created suspended and labelled; Kueue admits (unsuspends) it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlmodelscope.core.artifacts.settings import ACCESS_KEY_ENV, ENDPOINT_ENV, SECRET_KEY_ENV, SECURE_ENV
from mlmodelscope.core.jetstream import NATS_TOKEN_ENV
from mlmodelscope.core.manifests.fields import API_GROUP, API_VERSION
from mlmodelscope.core.run_contract import RunSpec
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.operator.evaluation import EvaluationSpec
from mlmodelscope.operator.planning import PlannedRun
from mlmodelscope.operator.settings import OperatorSettings

LABEL_EVALUATION = f"{API_GROUP}/evaluation"
LABEL_RUN = f"{API_GROUP}/run"
ANNOTATION_RUN_KEY = f"{API_GROUP}/run-key"
ANNOTATION_RUN_ID = f"{API_GROUP}/run-id"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RUN_SPEC_ENV = "MLMODELSCOPE_RUN_SPEC"
CONTAINER_NAME = "agent"
S3_SECRET_KEYS = {ACCESS_KEY_ENV: "accessKey", SECRET_KEY_ENV: "secretKey"}


def run_spec(run: PlannedRun, evaluation_id: str, spec: EvaluationSpec, settings: OperatorSettings) -> RunSpec:
    """The core's RunSpec of ``run``: what the agent evaluates, with the cluster's resources as applied.
    ``intra_op_threads`` stays None unless the Evaluation sets threads: the agent takes the container's CPU limit."""
    return RunSpec(
        run_id=run.run_id,
        evaluation_id=evaluation_id,
        model=run.model,
        framework=run.framework,
        dataset=run.resources.dataset_name,
        resources=run.resources,
        device=run.accelerator,
        intra_op_threads=spec.threads,
        trace_level=TraceLevel[spec.trace_level.upper()],
        settings=run.settings,
        nats_url=settings.nats_url,
        cache_dir=Path(settings.agent_work_dir, "cache"),
        output_dir=Path(settings.agent_work_dir, "out"),
    )


def _nats_token_env(settings: OperatorSettings) -> list[dict[str, Any]]:
    """The agent's NATS token, from the Secret the chart made (never copied into the Job's manifest)."""
    if not settings.nats_token_secret:
        return []
    reference = {"name": settings.nats_token_secret, "key": settings.nats_token_secret_key}
    return [{"name": NATS_TOKEN_ENV, "valueFrom": {"secretKeyRef": reference}}]


def s3_env(settings: OperatorSettings) -> list[dict[str, Any]]:
    """The agent's ``MLMODELSCOPE_S3_*`` variables (what ``S3Settings.from_env`` reads): the endpoint and TLS from
    ``s3_endpoint_url``, the credentials by secretKeyRef from ``s3_secret``."""
    env: list[dict[str, Any]] = []
    if settings.s3_endpoint_url:
        url = urlsplit(settings.s3_endpoint_url)
        env.append({"name": ENDPOINT_ENV, "value": url.netloc})
        env.append({"name": SECURE_ENV, "value": "true" if url.scheme == "https" else "false"})
    if settings.s3_secret:
        env.extend(
            {"name": name, "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": key}}}
            for name, key in S3_SECRET_KEYS.items()
        )
    return env


def _tolerations(run: PlannedRun) -> list[dict[str, Any]]:
    device = (
        [{"key": run.device_resource, "operator": "Exists", "effect": "NoSchedule"}]
        if run.accelerator == "gpu" and run.device_resource is not None
        else []
    )
    return [*device, *run.target.tolerations]


def _cache_volume(settings: OperatorSettings) -> dict[str, Any]:
    if settings.artifact_cache_claim:
        return {"name": "cache", "persistentVolumeClaim": {"claimName": settings.artifact_cache_claim}}
    return {"name": "cache", "emptyDir": {}}


def _labels(run: PlannedRun, evaluation: str, spec: EvaluationSpec) -> dict[str, str]:
    """The Job's (and its pods') labels: who made it, its Evaluation and run, and its Kueue queue."""
    labels = {
        "app.kubernetes.io/name": "mlmodelscope-agent",
        "app.kubernetes.io/managed-by": "mlmodelscope-operator",
        LABEL_EVALUATION: evaluation,
        LABEL_RUN: run.job_name.rsplit("-", 1)[-1],
    }
    if spec.queue_name:
        labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    return labels


def _agent_container(
    run: PlannedRun, *, evaluation: str, namespace: str, settings: OperatorSettings, run_spec_json: str
) -> dict[str, Any]:
    """The agent container: the run spec and service addresses in its environment, unprivileged, read-only root."""
    work_dir = settings.agent_work_dir
    return {
        "name": CONTAINER_NAME,
        "image": run.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(settings.agent_command),
        "args": ["--spec-env", RUN_SPEC_ENV],
        "env": [
            {"name": RUN_SPEC_ENV, "value": run_spec_json},
            {"name": "MLMODELSCOPE_NATS_URL", "value": settings.nats_url},
            *_nats_token_env(settings),
            *s3_env(settings),
            {"name": "MLMODELSCOPE_RUN_ID", "value": run.run_id},
            {"name": "MLMODELSCOPE_EVALUATION", "value": f"{namespace}/{evaluation}"},
            {"name": "MLMODELSCOPE_CACHE_DIR", "value": f"{work_dir}/cache"},
            # The root filesystem is read-only: frameworks that write config or scratch files under $HOME
            # (Keras) or the temp folder get the /tmp emptyDir.
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": {"requests": dict(run.requests), "limits": dict(run.limits)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "work", "mountPath": work_dir},
            {"name": "cache", "mountPath": f"{work_dir}/cache"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _pod_spec(run: PlannedRun, settings: OperatorSettings, container: dict[str, Any]) -> dict[str, Any]:
    """The pod: on the run's nodes, as a non-root user without an API token, with its work, cache and tmp volumes."""
    user = settings.run_as_user
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.agent_service_account,
        "automountServiceAccountToken": False,
        "nodeSelector": dict(run.node_selector),
        "tolerations": _tolerations(run),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": user,
            "runAsGroup": user,
            "fsGroup": user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "work", "emptyDir": {}}, _cache_volume(settings), {"name": "tmp", "emptyDir": {}}],
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if run.target.affinity is not None:
        pod_spec["affinity"] = run.target.affinity
    if run.target.priority_class_name is not None:
        pod_spec["priorityClassName"] = run.target.priority_class_name
    return pod_spec


def build_job(
    run: PlannedRun,
    *,
    evaluation: str,
    namespace: str,
    uid: str,
    spec: EvaluationSpec,
    settings: OperatorSettings,
    run_spec_json: str,
) -> dict[str, Any]:
    """The batch/v1 Job of ``run``, owned by the Evaluation ``namespace/evaluation`` (uid ``uid``)."""
    labels = _labels(run, evaluation, spec)
    container = _agent_container(
        run, evaluation=evaluation, namespace=namespace, settings=settings, run_spec_json=run_spec_json
    )
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.retries,
        "activeDeadlineSeconds": spec.timeout_s,
        "template": {"metadata": {"labels": dict(labels)}, "spec": _pod_spec(run, settings, container)},
    }
    if settings.job_ttl_s is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.job_ttl_s
    if spec.queue_name:
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": run.job_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_RUN_KEY: run.key, ANNOTATION_RUN_ID: run.run_id},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Evaluation",
                    "name": evaluation,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }
