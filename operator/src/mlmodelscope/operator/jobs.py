"""The predictor Job of one planned run, as a plain manifest (pure; unit-testable without a cluster).

The pod runs the same CLI subcommand as local mode (``mlmodelscope agent run``), with the run spec inline in the
``MLMODELSCOPE_RUN_SPEC`` variable (no ConfigMap to create, own or clean up). It lands on a node of the run's
architecture (``nodeSelector: kubernetes.io/arch``), asks for one device of the run's accelerator as an extended
resource (tolerating the usual GPU taint), runs as a non-root user with no privilege escalation, and belongs to
its Evaluation (``ownerReferences`` with ``controller: true``), so deleting the Evaluation deletes its Jobs.
The agent's NATS token comes from a Secret by ``secretKeyRef`` (``nats_token_secret``), never inline.
With a Kueue queue the Job is created suspended and labelled; Kueue admits (unsuspends) it.
"""

from __future__ import annotations

from typing import Any

from mlmodelscope.core.jetstream import NATS_TOKEN_ENV
from mlmodelscope.core.manifests.resources import API_GROUP, API_VERSION
from mlmodelscope.operator.evaluation import EvaluationSpec
from mlmodelscope.operator.planning import PlannedRun
from mlmodelscope.operator.settings import OperatorSettings

LABEL_EVALUATION = f"{API_GROUP}/evaluation"
LABEL_RUN = f"{API_GROUP}/run"
ANNOTATION_RUN_KEY = f"{API_GROUP}/run-key"
ANNOTATION_RUN_ID = f"{API_GROUP}/run-id"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ARCH_LABEL = "kubernetes.io/arch"
RUN_SPEC_ENV = "MLMODELSCOPE_RUN_SPEC"
CONTAINER_NAME = "agent"
_TRACE_LEVELS = ("no", "application", "model", "framework", "library", "system", "hardware", "full")


def run_spec(run: PlannedRun, evaluation_id: str, spec: EvaluationSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The agent's RunSpec (``mlmodelscope.agent.run.RunSpec``) as JSON-ready data."""
    document: dict[str, Any] = {
        "run_id": run.run_id,
        "evaluation_id": evaluation_id,
        "model": run.model,
        "framework": run.framework,
        "dataset": run.dataset or None,
        "device": run.accelerator,
        "trace_level": _TRACE_LEVELS.index(spec.trace_level),
        "settings": run.settings.model_dump(mode="json"),
        "nats_url": settings.nats_url,
        "assets": [settings.agent_assets_dir],
        "cache_dir": f"{settings.agent_work_dir}/cache",
        "output_dir": f"{settings.agent_work_dir}/out",
    }
    if spec.threads is not None:
        document["intra_op_threads"] = spec.threads
    return document


def _resources(run: PlannedRun, spec: EvaluationSpec) -> dict[str, dict[str, str]]:
    requests = dict(spec.resources.requests)
    limits = dict(spec.resources.limits)
    if run.device_resource is not None:
        requests[run.device_resource] = "1"
        limits[run.device_resource] = "1"
    return {"requests": requests, "limits": limits}


def _nats_token_env(settings: OperatorSettings) -> list[dict[str, Any]]:
    """The agent's NATS token, from the Secret the chart made (never copied into the Job's manifest)."""
    if not settings.nats_token_secret:
        return []
    reference = {"name": settings.nats_token_secret, "key": settings.nats_token_secret_key}
    return [{"name": NATS_TOKEN_ENV, "valueFrom": {"secretKeyRef": reference}}]


def _tolerations(run: PlannedRun) -> list[dict[str, str]]:
    if run.accelerator != "gpu" or run.device_resource is None:
        return []
    return [{"key": run.device_resource, "operator": "Exists", "effect": "NoSchedule"}]


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
    labels = {
        "app.kubernetes.io/name": "mlmodelscope-agent",
        "app.kubernetes.io/managed-by": "mlmodelscope-operator",
        LABEL_EVALUATION: evaluation,
        LABEL_RUN: run.job_name.rsplit("-", 1)[-1],
    }
    if spec.queue_name:
        labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    user = settings.run_as_user
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "nodeSelector": {ARCH_LABEL: run.arch},
        "tolerations": _tolerations(run),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": user,
            "runAsGroup": user,
            "fsGroup": user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": run.image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": list(settings.agent_command),
                "args": ["--spec-env", RUN_SPEC_ENV],
                "env": [
                    {"name": RUN_SPEC_ENV, "value": run_spec_json},
                    {"name": "MLMODELSCOPE_NATS_URL", "value": settings.nats_url},
                    *_nats_token_env(settings),
                    {"name": "MLMODELSCOPE_RUN_ID", "value": run.run_id},
                    {"name": "MLMODELSCOPE_EVALUATION", "value": f"{namespace}/{evaluation}"},
                    {"name": "MLMODELSCOPE_CACHE_DIR", "value": f"{settings.agent_work_dir}/cache"},
                    # The root filesystem is read-only: frameworks that write config or scratch files under $HOME
                    # (Keras) or the temp folder get the /tmp emptyDir.
                    {"name": "HOME", "value": "/tmp"},
                ],
                "resources": _resources(run, spec),
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "work", "mountPath": settings.agent_work_dir},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [{"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }
    pod_spec["serviceAccountName"] = settings.agent_service_account
    pod_spec["automountServiceAccountToken"] = False
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.retries,
        "activeDeadlineSeconds": spec.timeout_s,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
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
