"""Which failures are worth sending again, and when (ARCHITECTURE 'Retry policy').

Seed 004 'Resending': LINK itself resubmits the retryable WhatsApp codes every 60 s, up
to 15 times, before it reports them, and advises waiting at least 15 minutes before
resubmitting a message whose status has not arrived. So no resend of ours starts
earlier than ``min_delay`` (15 min) after the message's submission.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class RetryClass(StrEnum):
    RATE_LIMIT = "rate_limit"
    TRANSIENT = "transient"
    MAINTENANCE = "maintenance"
    ECOSYSTEM = "ecosystem"
    FINAL = "final"
    # Meta's 131062 (a BSUID is not allowed for this message, e.g. an authentication
    # template): sent once more, to the person's phone number (``planner.plan``).
    TO_PHONE = "to_phone"


#: WhatsApp's "BSUID not allowed for this message" (seed 000).
BSUID_NOT_ALLOWED = 131062


#: WhatsApp error code -> retry class; everything not listed is final.
CLASS_OF: dict[int, RetryClass] = {
    4: RetryClass.RATE_LIMIT,  # API Too Many Calls
    80007: RetryClass.RATE_LIMIT,  # WABA rate limit
    130429: RetryClass.RATE_LIMIT,  # Cloud API throughput reached
    1: RetryClass.TRANSIENT,  # API Unknown
    2: RetryClass.TRANSIENT,  # API Service: downtime or overload
    131000: RetryClass.TRANSIENT,  # Something went wrong
    131016: RetryClass.TRANSIENT,  # Service unavailable
    133004: RetryClass.TRANSIENT,  # Server temporarily unavailable
    # Too many messages to one user in a short time (Meta's reference, pair rate limit):
    # that person's message is sent again later; the sender is not slowed.
    131056: RetryClass.TRANSIENT,
    131057: RetryClass.MAINTENANCE,  # Account in maintenance mode
    131049: RetryClass.ECOSYSTEM,  # Meta chose not to deliver (healthy ecosystem)
}


def retry_class(whatsapp_code: int | None, result_code: int | None = None) -> RetryClass:
    """The class of a failure: by its WhatsApp code only.

    LINK's own failure codes are final whatever they are: seed 004 lists only WhatsApp
    codes as "subject for resends", and says of 112000 (Unknown error) and 112408
    (System error) "Contact support", not "request can be reissued". A code we do not
    know is final too, with its code and description in the report.
    """
    del result_code  # kept in the signature: callers pass what the message carries
    if whatsapp_code is not None:
        return CLASS_OF.get(whatsapp_code, RetryClass.FINAL)
    return RetryClass.FINAL


class ClassPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(ge=1, le=20, description="sends in all, the first included")
    delay_minutes: float = Field(ge=0, description="after the failure report; doubles each time")


class ResendPolicy(BaseModel):
    """Per-campaign bounds on resends (spec key ``resend``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    min_delay_minutes: float = Field(
        default=15, ge=0, description="after submission: LINK's own resubmits run 15 min"
    )
    rate_limit: ClassPolicy = ClassPolicy(max_attempts=4, delay_minutes=1)
    transient: ClassPolicy = ClassPolicy(max_attempts=4, delay_minutes=5)
    maintenance: ClassPolicy = ClassPolicy(max_attempts=3, delay_minutes=30)
    ecosystem: ClassPolicy = ClassPolicy(max_attempts=2, delay_minutes=6 * 60)
    in_doubt_max_attempts: int = Field(
        default=2, ge=1, le=5, description="an unanswered request's silent messages: resent once"
    )

    def for_class(self, kind: RetryClass) -> ClassPolicy | None:
        return {
            RetryClass.RATE_LIMIT: self.rate_limit,
            RetryClass.TRANSIENT: self.transient,
            RetryClass.MAINTENANCE: self.maintenance,
            RetryClass.ECOSYSTEM: self.ecosystem,
        }.get(kind)

    def next_attempt(
        self,
        *,
        kind: RetryClass,
        attempts: int,
        submitted_at: datetime,
        failed_at: datetime,
        expires_at: datetime | None,
        min_delay: timedelta | None = None,
    ) -> datetime | None:
        """When to send again, or None when this failure is final for this campaign."""
        policy = self.for_class(kind)
        if not self.enabled or policy is None or attempts >= policy.max_attempts:
            return None
        backoff = timedelta(minutes=policy.delay_minutes * 2 ** max(attempts - 1, 0))
        floor = min_delay if min_delay is not None else timedelta(minutes=self.min_delay_minutes)
        at = max(failed_at + backoff, submitted_at + floor)
        if expires_at is not None and at >= expires_at:
            return None
        return at
