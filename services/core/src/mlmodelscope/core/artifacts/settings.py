"""Connection settings for the S3-compatible object store that holds model and dataset artifacts.

Kept apart from the store so that the CLI, the agent and the operator build the same settings from their own
environment (``S3Settings.from_env``) without the store ever reading ``os.environ`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlmodelscope.core.errors import ArtifactError

ENDPOINT_ENV = "MLMODELSCOPE_S3_ENDPOINT"
ACCESS_KEY_ENV = "MLMODELSCOPE_S3_ACCESS_KEY"
SECRET_KEY_ENV = "MLMODELSCOPE_S3_SECRET_KEY"
SECURE_ENV = "MLMODELSCOPE_S3_SECURE"
REGION_ENV = "MLMODELSCOPE_S3_REGION"

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


class S3Settings(BaseModel):
    """Where the S3 endpoint is and how to talk to it. Empty keys mean anonymous (unsigned) requests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str = Field(description='"host:port" of the S3 API, without a scheme (use `secure` for TLS).')
    access_key: str = ""
    secret_key: str = Field(default="", repr=False)
    secure: bool = False
    region: str = "us-east-1"
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("endpoint")
    @classmethod
    def _host_and_port_only(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the endpoint is empty; expected host:port")
        if "://" in value:
            raise ValueError(f"'{value}' has a scheme; give host:port only and set secure=true for https")
        if "/" in value:
            raise ValueError(f"'{value}' has a path; give host:port only")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> S3Settings | None:
        """Settings from ``MLMODELSCOPE_S3_*`` variables, or None when no endpoint is configured."""
        endpoint = environ.get(ENDPOINT_ENV, "").strip()
        if not endpoint:
            return None
        secure_text = environ.get(SECURE_ENV, "false").strip().lower()
        if secure_text not in _TRUE | _FALSE:
            raise ArtifactError(
                f"{SECURE_ENV}={environ[SECURE_ENV]!r} is not a boolean.",
                hint=f"Set {SECURE_ENV} to 'true' (https) or 'false' (http).",
            )
        try:
            return cls(
                endpoint=endpoint,
                access_key=environ.get(ACCESS_KEY_ENV, ""),
                secret_key=environ.get(SECRET_KEY_ENV, ""),
                secure=secure_text in _TRUE,
                region=environ.get(REGION_ENV, "").strip() or "us-east-1",
            )
        except ValidationError as e:
            problems = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
            raise ArtifactError(
                f"{ENDPOINT_ENV}={endpoint!r} is not a valid S3 endpoint: {problems}.",
                hint=f"Set {ENDPOINT_ENV} to host:port, e.g. 'localhost:9000', and {SECURE_ENV}=true for https.",
            ) from e
