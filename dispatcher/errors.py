"""One error root for everything the dispatcher raises on purpose.

::

    DispatcherError
    ├── ConfigurationError          a setting is missing or contradicts another
    ├── CampaignSpecError           the campaign file is invalid (names the field)
    │   └── RecipientsFileError     a recipients file does not fit it (names the file)
    ├── RepeatedCampaignError       the same inputs were sent recently (``--again``)
    ├── RecipientsError             the recipients file cannot be read at all
    ├── MediaError                  the media file is unusable or its upload failed
    ├── StorageError                the database refused or is unreachable
    └── LinkError                   the LINK API answered with an error
        ├── LinkAuthError           112400 / 112401: credentials or access
        ├── LinkRequestError        112402 / 112505 / 112506: our request is wrong
        ├── LinkTransientError      112500, 5xx, connection refused: safe to retry
        └── LinkInDoubtError        sent, but no answer: the batch may have been queued

Lower-level exceptions (httpx, SQLAlchemy) are translated once, in the module that
talks to them, with ``raise ... from exc``.
"""

from __future__ import annotations


class DispatcherError(Exception):
    """Root of every error the dispatcher raises deliberately."""


class ConfigurationError(DispatcherError):
    """A setting is missing, malformed or inconsistent."""


class CampaignSpecError(DispatcherError):
    """The campaign spec is invalid; ``problems`` lists ``(field path, message)``.

    ``title`` heads the list where it is shown, followed by "in ``path``".
    """

    title = "Campaign spec error"

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = "; ".join(f"{field}: {message}" for field, message in problems)
        super().__init__(f"{path}: {lines}")


class RepeatedCampaignError(DispatcherError):
    """These inputs (spec, recipients, media) were sent by this sender recently."""

    def __init__(self, earlier_id: int, earlier: str) -> None:
        self.earlier_id = earlier_id
        super().__init__(
            f"the same campaign files were sent as {earlier}: sending them again would "
            "message everyone twice. Run with --again (or set allow_repeat: true in the "
            "spec) if that is meant."
        )


class RecipientsFileError(CampaignSpecError):
    """A recipients file cannot be read, or lacks a column the spec names or the
    message uses; ``path`` is the file (the campaign folder when several are wrong)."""

    title = "Recipients file problem"


class RecipientsError(DispatcherError):
    """The recipients file cannot be read at all (single bad rows go to rejects).

    ``columns`` are its (normalised) header names, when the header could be read.
    """

    def __init__(self, message: str, *, columns: list[str] | None = None) -> None:
        super().__init__(message)
        self.columns = columns


class MediaError(DispatcherError):
    """The media file is unusable, or LINK refused its upload."""


class StorageError(DispatcherError):
    """The database is unreachable or refused an operation."""


class LinkError(DispatcherError):
    """The provider (LINK, or Meta's Cloud API) answered a request with an error.

    ``result_code`` is the provider's code (LINK's ErrorResponse ``resultCode`` or media
    ``status``; Graph's ``error.code``) when it sent one, ``http_status`` the HTTP status
    when there was a response, ``whatsapp_code`` WhatsApp's error code when the answer is
    one (Meta's: the same as ``result_code``), which the retry table judges.
    """

    def __init__(
        self,
        message: str,
        *,
        result_code: int | None = None,
        http_status: int | None = None,
        whatsapp_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.result_code = result_code
        self.http_status = http_status
        self.whatsapp_code = whatsapp_code


class LinkAuthError(LinkError):
    """Credentials were missing or refused; nothing will work until they are fixed."""


class LinkRequestError(LinkError):
    """LINK refused the request as malformed; resending it unchanged cannot help."""


class LinkTransientError(LinkError):
    """LINK or the network failed before anything was queued; retrying is safe."""


class LinkInDoubtError(LinkError):
    """The request may have reached LINK but no answer came back.

    Resending blindly could message people twice (ARCHITECTURE, 'Crash safety').
    """
