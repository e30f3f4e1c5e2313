"""The regression rule: a run regressed against its baseline when p99 or throughput got worse beyond a threshold.

A metric regresses when both hold:

* the point estimate moved the wrong way by more than the threshold (p99 ratio > 1 + threshold, or throughput
  ratio < 1 - threshold), and
* the bootstrap comparison calls it significant (``slower`` at the comparison's confidence),

so noise never flags a run however small the threshold, and a real but small change never flags one either. The
key a baseline is kept for is (model, framework, arch, accelerator, scenario, batch size): hardware is arch plus
accelerator, and a run at another batch size is a different workload, not a regression.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.analysis.compare import Comparison

DEFAULT_THRESHOLD = 0.10


class RegressionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p99_threshold: float = Field(
        default=DEFAULT_THRESHOLD, ge=0, le=10, description="Allowed p99 increase (0.1 = 10%)."
    )
    throughput_threshold: float = Field(
        default=DEFAULT_THRESHOLD, ge=0, lt=1, description="Allowed throughput decrease (0.1 = 10%)."
    )


class RegressionVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    regressed: bool
    p99_regressed: bool
    throughput_regressed: bool
    p99_ratio: float = Field(description="Candidate p99 / baseline p99.")
    throughput_ratio: float = Field(description="Candidate throughput / baseline throughput.")
    policy: RegressionPolicy
    reasons: list[str]


def judge(comparison: Comparison, policy: RegressionPolicy) -> RegressionVerdict:
    """Apply the rule (module docstring) to a baseline -> candidate comparison."""
    p99 = comparison.metric("p99")
    throughput = comparison.metric("throughput")
    p99_regressed = p99.verdict == "slower" and p99.ratio > 1.0 + policy.p99_threshold
    throughput_regressed = throughput.verdict == "slower" and throughput.ratio < 1.0 - policy.throughput_threshold
    reasons = []
    if p99_regressed:
        reasons.append(
            f"p99 is {p99.ratio - 1:+.1%} (interval {p99.ratio_low - 1:+.1%} .. {p99.ratio_high - 1:+.1%}), "
            f"beyond the allowed +{policy.p99_threshold:.0%}"
        )
    if throughput_regressed:
        reasons.append(
            f"throughput is {throughput.ratio - 1:+.1%} (interval {throughput.ratio_low - 1:+.1%} .. "
            f"{throughput.ratio_high - 1:+.1%}), beyond the allowed -{policy.throughput_threshold:.0%}"
        )
    return RegressionVerdict(
        regressed=p99_regressed or throughput_regressed,
        p99_regressed=p99_regressed,
        throughput_regressed=throughput_regressed,
        p99_ratio=p99.ratio,
        throughput_ratio=throughput.ratio,
        policy=policy,
        reasons=reasons,
    )
