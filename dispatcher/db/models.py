"""Tables (SQLAlchemy 2.0). Schema changes go through Alembic (``dispatcher/migrations``).

The unique key ``(campaign_id, identity_key)`` on messages is the database's own guard
against sending one person two messages in a campaign.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def Key(length: int) -> String:
    """An identifier's column (an id, a phone number, a BSUID, a person's key): byte
    order ("C") on PostgreSQL. Nobody reads identifiers in a locale's order, and a
    locale's rules make every comparison in an index dearer: most of these columns
    carry indexes that every message passes through several times (claimed, answered,
    reported, its people learned); the rest are compared with them. Compared with a
    column of the database's default collation, theirs is the one used.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
    }


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    spec_path: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    level: Mapped[str | None] = mapped_column(String(16))
    rate_per_second: Mapped[int | None]
    loaded: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    rejects_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    prepared_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Pre-flight findings worth an operator's eye (LINK says LIMITED, tier cap...).
    notes: Mapped[list[str] | None] = mapped_column(JSON)
    # sha256 of the spec, recipients and media contents: a repeat is refused
    # (``launch.create_campaign``).
    inputs_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # The guardrail that paused it: {reason, figure, threshold, detail, at}
    # (``guardrails.pausing``); cleared by ``resume``.
    paused_by: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Signals are judged over outcomes after this (set by ``resume``): an operator who
    # resumed is not paused again for what they already saw.
    guard_since: Mapped[datetime | None]
    # The canary's plan and verdict (``guardrails.canary``).
    canary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # People after dedupe, opt-outs and caps, by country and category (``preparation.forecast``).
    forecast: Mapped[dict[str, Any] | None] = mapped_column(JSON)


BATCHES_FILLFACTOR = 80


class Batch(Base):
    """One ``POST /messages``; ``id`` is sent as the request's ``refId``."""

    __tablename__ = "batches"
    # Updated three times each (handed out, claimed, submitted): room on every page
    # keeps the new row version there, and the hand-out, which changes no indexed
    # column, enters no index (HOT).
    __table_args__ = ({"postgresql_with": {"fillfactor": BATCHES_FILLFACTOR}},)

    id: Mapped[str] = mapped_column(Key(64), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    seq: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # task delivery that sends it
    payload: Mapped[dict[str, Any]]  # {"messages": [...]} exactly as sent
    size: Mapped[int]
    attempts: Mapped[int] = mapped_column(default=0)
    result_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitting_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime | None]
    not_before: Mapped[datetime | None]  # a held batch is released then
    # last queued for a send task (lost-task net); None: not since ``created_at``
    handed_out_at: Mapped[datetime | None]


# Room left on every page of messages for the updated row versions (see ``Message``).
MESSAGES_FILLFACTOR = 70
# Only columns that change rarely (judging, failing, resending) in these predicates:
# status or a stage time there would make every update that moves it not HOT. Every
# failed message has failed_at; a queued message with a validity is a resend (only a
# recorded submission sets it, and only a resend clears the messageId again).
_UNJUDGED_SQL = "failed_at IS NOT NULL AND retry_class IS NULL"
_RESENDS_UNSENT_SQL = "previous_link_message_id IS NOT NULL AND link_message_id IS NULL"


class Message(Base):
    """One person in one campaign."""

    __tablename__ = "messages"
    # Written a million at a time (``COPY``), so every per-row cost counts: no foreign
    # keys (a check per row and key, half the cost of the insert; prepare writes a
    # batch and its messages in one transaction and nothing deletes either), and the
    # columns that stay NULL for most messages are indexed only where they are set.
    # Updated about six times each (claim, record, attempts, three reports): no index
    # names a column those updates change but link_message_id (set once, recorded),
    # and every page keeps room, so the other row versions stay on their page and
    # enter no index (HOT). Queries by campaign reach its messages through the unique
    # key; the resend planner's failures still to be judged and resends waiting to go
    # out have small partial indexes.
    __table_args__ = (
        UniqueConstraint("campaign_id", "identity_key"),
        Index(
            "uq_messages_link_message_id",
            "link_message_id",
            unique=True,
            postgresql_where=text("link_message_id IS NOT NULL"),
            sqlite_where=text("link_message_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_previous_link_message_id",
            "previous_link_message_id",
            postgresql_where=text("previous_link_message_id IS NOT NULL"),
            sqlite_where=text("previous_link_message_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text("next_attempt_at IS NOT NULL"),
            sqlite_where=text("next_attempt_at IS NOT NULL"),
        ),
        Index(
            "ix_messages_unjudged_failures",
            "campaign_id",
            postgresql_where=text(_UNJUDGED_SQL),
            sqlite_where=text(_UNJUDGED_SQL),
        ),
        Index(
            "ix_messages_resends_unsent",
            "campaign_id",
            postgresql_where=text(_RESENDS_UNSENT_SQL),
            sqlite_where=text(_RESENDS_UNSENT_SQL),
        ),
        # The guardrails' failures of the last minutes (``guardrails.signals``).
        Index(
            "ix_messages_failed",
            "campaign_id",
            "failed_at",
            postgresql_where=text("failed_at IS NOT NULL"),
            sqlite_where=text("failed_at IS NOT NULL"),
        ),
        {"postgresql_with": {"fillfactor": MESSAGES_FILLFACTOR}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId)  # campaigns.id
    # Byte order (``Key``): a million random inserts into the unique index compare
    # cheaper without locale rules.
    identity_key: Mapped[str] = mapped_column(Key(160))
    destination: Mapped[str] = mapped_column(Key(160))
    source_line: Mapped[int]
    params: Mapped[dict[str, Any]]
    batch_id: Mapped[str | None] = mapped_column(Key(64), index=True)  # batches.id
    position: Mapped[int | None]
    # The provider's id of the message (LINK's messageId, Meta's wamid).
    link_message_id: Mapped[str | None] = mapped_column(Key(128))
    # The id of the attempt before a resend: its late good news still counts.
    previous_link_message_id: Mapped[str | None] = mapped_column(Key(128))
    identifiers: Mapped[list[str] | None] = mapped_column(JSON)  # every id of the person
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    result_code: Mapped[int | None]
    result_description: Mapped[str | None] = mapped_column(Text)
    whatsapp_error_code: Mapped[int | None]
    submitted_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]  # resend planned
    retry_class: Mapped[str | None] = mapped_column(String(16))  # set once a failure is judged
    expires_at: Mapped[datetime | None]  # validity of the first submission; never extended
    # The BSUID a 131062 failure (BSUID not allowed) moved the message away from, to the
    # person's phone number (``resending.planner``).
    rerouted_from: Mapped[str | None] = mapped_column(Key(160))
    # Why a ``skipped`` message was not sent (``sending.checks.SkipReason``).
    skip_reason: Mapped[str | None] = mapped_column(String(32))
    # Taken but held back by Meta for quality assessment (template pacing, seed 002).
    held_for_quality: Mapped[bool | None]
    # From the status reports (seed 004 DLR Example#1, customParameters): WhatsApp's own
    # id of the latest attempt (an incoming reply names it) and how WhatsApp prices it.
    # No index (updates stay HOT): ``WhatsAppMessageId`` finds a message by the id.
    wa_message_id: Mapped[str | None] = mapped_column(Key(128))
    pricing_model: Mapped[str | None] = mapped_column(String(32))
    pricing_category: Mapped[str | None] = mapped_column(String(32))
    pricing_type: Mapped[str | None] = mapped_column(String(32))
    pricing_billable: Mapped[bool | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WhatsAppMessageId(Base):
    """Every WhatsApp message id a status report named, with its message: an incoming
    reply names the message it answers by this id (seed 004, ``context.id``)."""

    __tablename__ = "whatsapp_message_ids"

    wa_message_id: Mapped[str] = mapped_column(Key(128), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigId)  # messages.id
    campaign_id: Mapped[int] = mapped_column(BigId)  # campaigns.id


class Reply(Base):
    """An incoming message that answers one of a campaign's messages (its ``context``
    names the message's WhatsApp id); a button or list choice says which."""

    __tablename__ = "replies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId, index=True)  # campaigns.id
    message_id: Mapped[int] = mapped_column(BigId)  # messages.id
    # The incoming message's own id: a callback delivered twice counts once.
    incoming_id: Mapped[str] = mapped_column(Key(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # text, button, interactive, reaction...
    button: Mapped[str | None] = mapped_column(Text)  # a button's payload, a choice's id
    label: Mapped[str | None] = mapped_column(Text)  # its text or title
    received_at: Mapped[datetime]


class WhatsAppEcho(Base):
    """A message the business sent a person from the WhatsApp Business app (Meta's
    ``smb_message_echoes``, seed 003): to whom, when, from which number and of what
    kind, never what it said. None of a campaign's messages; it opens no care window."""

    __tablename__ = "whatsapp_echoes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    business_number: Mapped[str] = mapped_column(Key(32))  # E.164; '' = not said
    # The person as WhatsApp names them (``to``, else ``to_user_id``), written as the
    # identity book writes identifiers; their BSUID when the echo gives it (seed 000).
    recipient: Mapped[str] = mapped_column(Key(160), index=True)
    recipient_user_id: Mapped[str | None] = mapped_column(Key(160), index=True)
    # WhatsApp's id of the echoed message: a body Meta delivers twice is one row.
    wa_message_id: Mapped[str] = mapped_column(Key(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # text, image, edit, revoke...
    original_message_id: Mapped[str | None] = mapped_column(Key(128))  # of an edit, a revoke
    sent_at: Mapped[datetime]
    report_id: Mapped[int] = mapped_column(BigId)  # delivery_reports.id it came in


class MergedRow(Base):
    """A recipients row naming a person listed earlier in the campaign: no message of its
    own; the report shows it with the line it was merged into and why."""

    __tablename__ = "merged_rows"
    # Unique per line: a prepare task delivered twice, or resumed, writes them again.
    __table_args__ = (UniqueConstraint("campaign_id", "file", "line"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    file: Mapped[str] = mapped_column(Text)  # as reports name it (``Audience.file_names``)
    line: Mapped[int]
    identifiers: Mapped[list[str]] = mapped_column(JSON)  # the row's own, normalised
    kept_file: Mapped[str] = mapped_column(Text)
    kept_line: Mapped[int]
    # "merged into line 12: same phone number as line 12" (``audience.Merged``)
    description: Mapped[str] = mapped_column(Text)


# The reports still to be applied (``tracking.ReportState``): the only ones ever
# looked up by anything but their id. Queries spell the predicate with literals
# (``WAITING_REPORTS``): a generic plan cannot prove that parameters imply it.
_WAITING_SQL = "state IN ('received', 'unmatched')"


class DeliveryReport(Base):
    """Every webhook body exactly as received, stored before it is answered.

    Written three times a message and updated once each (applied), so it carries one
    index besides its key, over the waiting reports only: a stored body costs two
    index entries, its 'applied' row version one.
    """

    __tablename__ = "delivery_reports"
    __table_args__ = (
        Index(
            "ix_delivery_reports_waiting",
            "ref_id",
            postgresql_where=text(_WAITING_SQL),
            sqlite_where=text(_WAITING_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # dlr | mo
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(12))  # see tracking.ReportState
    error: Mapped[str | None] = mapped_column(Text)
    link_message_id: Mapped[str | None] = mapped_column(Key(128))
    ref_id: Mapped[str | None] = mapped_column(Key(64))
    result_code: Mapped[int | None]
    applied_at: Mapped[datetime | None]
    tried_at: Mapped[datetime | None]  # last time the sweep tried to apply it


class Identity(Base):
    """The identity book's current links: identifier -> person, with where and when
    each was learned. A link a change retires moves to ``RetiredIdentity``."""

    __tablename__ = "identities"
    # The numbers people shared (``operations.shares``): few rows of a big book.
    __table_args__ = (
        Index(
            "ix_identities_shared",
            "learned_at",
            postgresql_where=text("learned_from = 'contacts'"),
            sqlite_where=text("learned_from = 'contacts'"),
        ),
    )

    identifier: Mapped[str] = mapped_column(Key(160), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # msisdn | bsuid | parent_bsuid
    person_key: Mapped[str] = mapped_column(Key(160), index=True)
    # csv | answer | dlr | mo | contacts | system | user_id_update
    learned_from: Mapped[str] = mapped_column(String(32))
    learned_at: Mapped[datetime] = mapped_column(default=utcnow)
    # what taught it: "campaign 4 line 10", "message 123", "report 77" ('' before 0017)
    source: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # a BSUID's business portfolio (seed 004: usable through it alone); '' otherwise
    portfolio: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # the WhatsApp username last seen with this identifier (seed 000): display only
    username: Mapped[str | None] = mapped_column(String(64))


class RetiredIdentity(Base):
    """A link the identity book no longer holds: the user changed number or BSUID
    (seed 002 ``user_changed_number``, seed 000 ``user_changed_user_id`` and
    ``user_id_update``). Kept so history can be shown and a late report cannot bring
    the link back."""

    __tablename__ = "retired_identities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identifier: Mapped[str] = mapped_column(Key(160), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    # the person's key (kept current when the person is keyed anew or merged)
    person_key: Mapped[str] = mapped_column(Key(160), index=True)
    learned_from: Mapped[str] = mapped_column(String(32))
    learned_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(200), default="")
    portfolio: Mapped[str] = mapped_column(String(64), default="")
    username: Mapped[str | None] = mapped_column(String(64))
    retired_at: Mapped[datetime]
    # why: "user_changed_number (report 12)"
    retired_by: Mapped[str] = mapped_column(String(200))


class Media(Base):
    """Uploaded media, content-addressed per sender and LINK account so one file is
    uploaded once where it is used."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("sha256", "source", "account"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(64), default="")  # LinkCredentials.account
    # The simulator instance that holds the id (a restarted one holds none); None: LINK.
    simulator_instance: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int]
    media_id: Mapped[str] = mapped_column(String(128))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Suppression(Base):
    """Opted-out identifiers: never messaged."""

    __tablename__ = "suppressions"

    identifier: Mapped[str] = mapped_column(Key(160), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CareWindow(Base):
    """When each identifier last wrote to a business number: the 24-hour customer care
    window, which a message to that number opens (seed 004)."""

    __tablename__ = "care_windows"

    business: Mapped[str] = mapped_column(Key(32), primary_key=True)  # '' = not known
    identifier: Mapped[str] = mapped_column(Key(160), primary_key=True)
    last_incoming_at: Mapped[datetime] = mapped_column(index=True)


class Schedule(Base):
    """A recurring campaign: its folder is sent again at every cron time, each run a
    campaign of its own (``dispatcher.campaigns.schedules``)."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    path: Mapped[str] = mapped_column(Text)  # campaign folder or spec file
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    next_run_at: Mapped[datetime] = mapped_column(index=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    last_campaign_id: Mapped[int | None] = mapped_column(BigId)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Blob(Base):
    """A file's content, once however many campaigns use it (``campaigns.inputs``)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # None: in ``blob_chunks``; else the object's URL in the object store (s3://...).
    location: Mapped[str | None] = mapped_column(Text)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"

    sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class CampaignFile(Base):
    """A campaign's input (spec, recipients, media: ``name`` as the spec names it) or
    report (rejects), stored where every worker reaches it."""

    __tablename__ = "campaign_files"
    __table_args__ = (UniqueConstraint("campaign_id", "role", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), ForeignKey("blobs.sha256"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


#: ``state IN ('received', 'unmatched')`` over ``delivery_reports``, as literals.
WAITING_REPORTS = text(f"delivery_reports.{_WAITING_SQL}")


class Alert(Base):
    """An alert to POST to ``ALERT_URL`` (an outbox: written with the change it tells of,
    delivered and retried by ``operations.alerts``, never in the sender's way)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "ix_alerts_due",
            "next_attempt_at",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # started, paused, completed, failed, digest
    campaign_id: Mapped[int | None] = mapped_column(BigId)
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)  # once each
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    """A credential for the REST API, the console and the internal listener: only a
    digest of its secret is kept (the secret is shown once, when it is made)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    scope: Mapped[str] = mapped_column(String(8))  # access.Scope: read | send
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # looked up, then digest
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the whole key, hex
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Who did what through the API or the console, and how it was answered."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    key_id: Mapped[int | None] = mapped_column(BigId)  # api_keys.id; None: not authenticated
    key_name: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))  # e.g. "campaign.pause", "login"
    target: Mapped[str | None] = mapped_column(String(200))  # e.g. "campaign:12"
    status: Mapped[int]  # the HTTP status answered
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
