"""The operator's settings: one pydantic object, built in ``main`` (from options and the environment), never at
import time. Environment variables are ``MLMODELSCOPE_OPERATOR_<FIELD>`` (lists: comma-separated)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_PREFIX = "MLMODELSCOPE_OPERATOR_"
_DNS_NAME = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$"
_LIST_FIELDS = ("namespaces", "agent_command", "image_pull_secrets")


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespaces: list[str] = Field(default_factory=list, description="Watched namespaces; empty: the whole cluster.")
    server: str | None = Field(
        default=None, description="API server URL with no credentials (development); default: in-cluster/kubeconfig."
    )
    token: str | None = Field(default=None, description="Bearer token for `server`.")
    nats_url: str = Field(default="nats://mlmodelscope-nats:4222", min_length=1, description="What agents publish to.")
    nats_token_secret: str = Field(
        default="",
        pattern=_DNS_NAME,
        description="Secret (in each Job's namespace) holding the NATS token the agents present; empty: no token. "
        "The Jobs read it through secretKeyRef: the operator itself never sees the token.",
    )
    nats_token_secret_key: str = Field(default="token", min_length=1, description="Key of the token in that Secret.")
    collector_url: str = Field(default="http://mlmodelscope-collector:8080", min_length=1)
    collector_timeout_s: float = Field(default=5.0, gt=0)
    api_timeout_s: float = Field(default=15.0, gt=0, description="Each Kubernetes API request.")
    agent_command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "mlmodelscope.agent"],
        min_length=1,
        description="The Job's command (its args are `--spec-env MLMODELSCOPE_RUN_SPEC`).",
    )
    agent_assets_dir: str = Field(default="/opt/mlmodelscope/assets", description="Assets folder inside the image.")
    agent_work_dir: str = Field(default="/tmp/mlmodelscope", description="emptyDir: artifact cache and outputs.")
    gpu_resource: str = Field(
        default="nvidia.com/gpu",
        description="Extended resource of a GPU, unless the Framework names one in spec.device_resources.",
    )
    fpga_resource: str = Field(
        default="xilinx.com/fpga", description="Device-plugin resource of an FPGA, unless the Framework names one."
    )
    run_as_user: int = Field(default=1000, ge=1, description="Non-root UID (and GID) of the predictor pods.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    agent_service_account: str = Field(
        default="mlmodelscope-agent",
        min_length=1,
        pattern=_DNS_NAME,
        description="ServiceAccount of the agent pods (in each Job's namespace); its token is never mounted.",
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secrets (in each Job's namespace) the kubelet pulls agent images with."
    )
    job_ttl_s: int | None = Field(
        default=3600, ge=0, description="ttlSecondsAfterFinished of the Jobs; None: finished Jobs stay."
    )
    pending_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="A run whose pod stays Pending (unschedulable, image pull failing, no pod) longer fails "
        "with that reason.",
    )
    s3_secret: str = Field(
        default="",
        pattern=_DNS_NAME,
        description="Secret (in each Job's namespace) whose keys accessKey and secretKey become the agent's S3 "
        "credentials (by secretKeyRef); empty: none.",
    )
    s3_endpoint_url: str = Field(
        default="",
        pattern=r"^(https?://[^/?#\s]+/?)?$",
        description="S3 endpoint the agents fetch s3:// artifacts from, http://host:port or https://host:port "
        "(the scheme sets MLMODELSCOPE_S3_SECURE); empty: none.",
    )
    artifact_cache_claim: str = Field(
        default="",
        pattern=_DNS_NAME,
        description="PersistentVolumeClaim mounted as the agents' artifact cache; empty: an emptyDir per pod.",
    )
    release_namespace: str = Field(
        default="",
        pattern=_DNS_NAME,
        description="Namespace of the built-in catalog: Models/Frameworks/Datasets not found in an Evaluation's "
        "namespace are resolved there; empty: none.",
    )
    max_runs: int = Field(
        default=500,
        ge=1,
        description="Most runs one Evaluation may plan (its status lists every run; etcd stores at most 1.5 MiB "
        "per object).",
    )
    reconcile_interval_s: float = Field(default=15.0, gt=0, description="Timer: re-read Jobs and results.")
    catalog_ttl_s: float = Field(
        default=2.0,
        ge=0,
        description="How long one read of Models/Frameworks/Datasets "
        "serves the planning of every Evaluation of a namespace.",
    )
    retry_delay_s: float = Field(default=5.0, gt=0, description="kopf.TemporaryError delay after a transient error.")
    posting_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level of operator log lines also posted as Kubernetes Events."
    )

    @field_validator("server", "token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("job_ttl_s", mode="before")
    @classmethod
    def _empty_ttl_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> OperatorSettings:
        """Settings from ``MLMODELSCOPE_OPERATOR_*`` variables, then ``overrides`` (options that were given)."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in environ:
                raw = environ[key]
                values[name] = [p for p in raw.split(",") if p] if name in _LIST_FIELDS else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
