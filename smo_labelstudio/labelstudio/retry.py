"""How long to keep trying Label Studio: the retry policy, the backoff schedule and the one-line error
when every attempt failed. Shared by the retrying transport (client.py) and the token exchange (auth.py)."""

from __future__ import annotations

import random

from smo_labelstudio.core.settings import get_settings
from smo_labelstudio.labelstudio.tokens import LabelStudioError


class LabelStudioUnavailable(LabelStudioError):
    """Label Studio kept failing (5xx, timeouts, refused connections) through every retry."""


def retry_policy() -> tuple[int, float]:
    """(attempts, base delay in seconds): `SMO_LS_RETRIES` (4) and `SMO_LS_BACKOFF` (0.5)."""
    settings = get_settings()
    return settings.ls_retries, settings.ls_backoff


def backoff(attempt: int, base: float) -> float:
    """Exponential delay before attempt `attempt + 1` (base, 2 base, 4 base, ...) with full jitter on top."""
    step = base * 2 ** (attempt - 1)
    return step + random.uniform(0, step)


def transient(status: int) -> bool:
    """An answer worth trying again: a server error, a timeout or too many requests."""
    return status >= 500 or status in (408, 429)


def unavailable(method: str, path: str, attempts: int, seconds: float, last: str) -> LabelStudioUnavailable:
    """The one line for a request that failed every attempt (the method and path, never a token or query)."""
    return LabelStudioUnavailable(
        f"Label Studio did not answer {method} {path} after {attempts} attempts in {seconds:.1f} s "
        f"(last: {last}); check it is up (`smo stack status`), or raise SMO_LS_TIMEOUT / SMO_LS_RETRIES"
    )
