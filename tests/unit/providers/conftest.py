"""What the provider tests share: one LINK request to send."""

from __future__ import annotations

from dispatcher.providers.link import MessageRequest

REQUEST = MessageRequest(
    platform_id="PID",
    platform_partner_id="42",
    ref_id="c1-b000001",
    source="+4790000000",
    destinations=["+4791234567", "NO.123"],
    messages=[{"type": "text", "text": {"body": "hi"}}],
    event_report_gates=["gate"],
)
