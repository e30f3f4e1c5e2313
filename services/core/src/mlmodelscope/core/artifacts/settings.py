"""Settings of the artifact store's sources: the S3-compatible object store, and how long and how often a
download may try (timeouts, the overall deadline, retries with exponential backoff).

Kept apart from the store so that the CLI, the agent and the operator build the same settings from their own
environment (``S3Settings.from_env``, ``DownloadSettings.from_env``) without the store ever reading
``os.environ`` itself. They belong to the machine that downloads, not to a Framework or Model resource.
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

CONNECT_TIMEOUT_ENV = "MLMODELSCOPE_DOWNLOAD_CONNECT_TIMEOUT_S"
READ_TIMEOUT_ENV = "MLMODELSCOPE_DOWNLOAD_READ_TIMEOUT_S"
DEADLINE_ENV = "MLMODELSCOPE_DOWNLOAD_DEADLINE_S"
ATTEMPTS_ENV = "MLMODELSCOPE_DOWNLOAD_ATTEMPTS"
BACKOFF_ENV = "MLMODELSCOPE_DOWNLOAD_BACKOFF_S"
MAX_BACKOFF_ENV = "MLMODELSCOPE_DOWNLOAD_MAX_BACKOFF_S"

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


class DownloadSettings(BaseModel):
    """How long one artifact download may take and how often it is tried; the defaults suit multi-GB models.

    ``read_timeout_s`` bounds every wait for the next bytes (HTTP and S3); ``deadline_s`` bounds one HTTP(S)
    artifact's whole download, all attempts and pauses included, so a server that trickles a byte every few
    seconds cannot hold a run forever. Transient HTTP failures (connection errors, timeouts, a body cut short,
    5xx, 429) are tried up to ``attempts`` times in all, pausing ``backoff_s``, then twice that, and so on up to
    ``max_backoff_s`` (or what a ``Retry-After`` header asks, within that cap) between attempts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect_timeout_s: float = Field(default=10.0, gt=0, description="Wait for a TCP (and TLS) connection.")
    read_timeout_s: float = Field(default=30.0, gt=0, description="Wait for the next bytes of an answer.")
    deadline_s: float = Field(
        default=3600.0, gt=0, description="One HTTP(S) artifact's whole download, retries included."
    )
    attempts: int = Field(default=4, ge=1, le=100, description="Tries of an HTTP(S) download in all (1: no retry).")
    backoff_s: float = Field(default=1.0, ge=0, description="Pause before the first retry; doubles after each.")
    max_backoff_s: float = Field(default=30.0, ge=0, description="Longest pause between two attempts.")

    def backoff_before(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1 for the second attempt): exponential, capped."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DownloadSettings:
        """Defaults, overridden by the ``MLMODELSCOPE_DOWNLOAD_*`` variables that are set and not empty."""
        names = {
            "connect_timeout_s": CONNECT_TIMEOUT_ENV,
            "read_timeout_s": READ_TIMEOUT_ENV,
            "deadline_s": DEADLINE_ENV,
            "attempts": ATTEMPTS_ENV,
            "backoff_s": BACKOFF_ENV,
            "max_backoff_s": MAX_BACKOFF_ENV,
        }
        given = {field: environ[env].strip() for field, env in names.items() if environ.get(env, "").strip()}
        try:
            return cls.model_validate(given)
        except ValidationError as e:
            problems = "; ".join(
                f"{names[str(err['loc'][0])]}={given.get(str(err['loc'][0]), '')!r}: {err['msg']}" for err in e.errors()
            )
            raise ArtifactError(
                f"invalid download settings: {problems}.",
                hint="Timeouts and the deadline are seconds > 0 (e.g. 30 or 0.5), attempts a whole number >= 1, "
                "pauses seconds >= 0; unset a variable to get its default.",
            ) from e
