"""The collector's settings: one pydantic object, built in ``main`` (from the environment), never at import time.

Beyond storage and NATS they configure the web UI's side: the token mutating requests must carry (no token, no
mutations), the regression thresholds, and the local launcher (asset folders, artifact cache, run folder, agent
interpreter) that lets the launch form start agents. See docs/web-ui.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

ENV_PREFIX = "MLMODELSCOPE_COLLECTOR_"
DEFAULT_DATABASE_URL = "sqlite:///mlmodelscope-collector.db"


class CollectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db (default) or postgresql+psycopg://user@host:5432/db.",
    )
    nats_url: str | None = Field(default=None, description="NATS server URL; no consumer runs when unset.")
    nats_token: SecretStr | None = Field(
        default=None, description="Token the NATS server requires (the chart's NATS Secret); unset: none sent."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    durable_name: str = Field(default="mlmodelscope-collector", min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    fetch_batch_size: int = Field(default=100, ge=1, le=10_000)
    fetch_timeout_s: float = Field(default=1.0, gt=0)
    nak_delay_s: float = Field(default=5.0, ge=0, description="Redelivery delay after a database failure.")
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliveries: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Deliveries of a message whose storing fails (not a database outage) before it is dead-lettered.",
    )
    duplicate_window_s: float = Field(default=120.0, gt=0, description="JetStream de-duplication window.")
    lag_refresh_s: float = Field(default=5.0, gt=0, description="How often consumer lag is read from the server.")
    reconnect_delay_s: float = Field(default=2.0, gt=0)
    ingest_niceness: int = Field(
        default=0,
        ge=0,
        le=19,
        description="Nice value the collector takes once started (local mode: 10, so the agents it records beside "
        "it on the same cores come first); 0: unchanged.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token every mutating request must carry; unset: mutations are refused."
    )
    regression_p99_threshold: float = Field(default=0.10, ge=0, le=10, description="Allowed p99 increase (0.1=10%).")
    regression_throughput_threshold: float = Field(
        default=0.10, ge=0, lt=1, description="Allowed throughput decrease (0.1 = 10%)."
    )
    docs_assets: str = Field(
        default="",
        description="Folder with Swagger UI's swagger-ui-bundle.js and swagger-ui.css for /docs "
        "(default: the swagger-ui-bundle package, when installed).",
    )
    regression_check_interval_s: float = Field(default=2.0, gt=0, description="How often new runs are checked.")
    assets: str = Field(
        default="", description="Asset folders (os.pathsep-separated) for the catalog and the launcher; empty: none."
    )
    launch_cache_dir: str = Field(default="", description="Artifact cache of launched agents (empty: launching off).")
    launch_runs_dir: str = Field(default="", description="Where launched runs' spec.json and agent.log go.")
    launch_python: str = Field(default="", description="Interpreter of launched agents (default: this one).")
    kube_api_url: str = Field(
        default="", description="Kubernetes API URL: when set, launches create Evaluation resources there."
    )
    kube_namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    kube_token: SecretStr | None = Field(default=None, description="Bearer token for the Kubernetes API.")
    kube_token_file: str = Field(default="", description="File holding that token (a service-account token).")
    kube_ca_file: str = Field(default="", description="CA bundle of the API server (default: the system's).")

    @field_validator("api_token", "kube_token", "nats_token", mode="before")
    @classmethod
    def _strip_token(cls, value: object) -> object:
        """Surrounding whitespace (a Secret file's newline) is stripped, as from a supplied token; blank is None."""
        if isinstance(value, str):
            return value.strip() or None
        if isinstance(value, SecretStr):
            return value.get_secret_value().strip() or None
        return value

    @field_validator("nats_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CollectorSettings:
        """Read ``MLMODELSCOPE_COLLECTOR_<FIELD>`` variables (e.g. ``..._DATABASE_URL``); unset ones keep defaults."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in environ:
                values[name] = environ[key]
        return cls.model_validate(values)
