"""The REST API against its own OpenAPI document (schemathesis): generated requests,
valid and invalid, over real HTTP to the internal app on PostgreSQL and Redis. No
request may get a server error, and every answer must carry a status, content type
and body the document lists for that operation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from dispatcher.campaigns import lifecycle
from dispatcher.db import Database
from dispatcher.interfaces import actions
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.web import openapi
from dispatcher.interfaces.web.app import create_internal_app
from dispatcher.settings import get_settings
from dispatcher.status import CampaignState
from tests.conftest import FUZZ_CASES, REDIS_TEST_URL, ROOT
from tests.integration.conftest import _truncate, key_headers

pytestmark = pytest.mark.integration

#: Generated cases per operation (positive and negative): 16 operations in about half a minute.
EXAMPLES = 50


@schemathesis.serializer("application/zip")
def _zip_bytes(_: object, value: object) -> bytes:
    """A generated zip body as the bytes it is (usually no zip at all: a 422)."""
    return value if isinstance(value, bytes) else str(value).encode()


schema = schemathesis.openapi.from_dict(
    openapi.document(),
    config=schemathesis.Config.from_dict(
        {"generation": {"mode": "all", "max-examples": EXAMPLES, "database": "none"}}
    ),
)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@dataclass(frozen=True)
class Live:
    base_url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def live(migrated_pg: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The internal app under uvicorn, a send key for every generated request (a read
    key's 403 and no key's 401 are tested in test_api)."""
    folder: Path = tmp_path_factory.mktemp("openapi")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", migrated_pg)
        env.setenv("REDIS_URL", REDIS_TEST_URL)
        env.setenv("DROP_DIR", str(folder / "drop"))
        env.setenv("REPORTS_DIR", str(folder / "reports"))
        get_settings.cache_clear()
        db = Database(migrated_pg)
        _truncate(db)
        try:
            seed(db)
            with ServerThread(create_internal_app(db)) as server:
                yield Live(f"{server.url}/api", key_headers(db, "send", "schemathesis"))
        finally:
            _truncate(db)
            db.dispose()
            get_settings.cache_clear()


def seed(db: Database) -> None:
    """Something for the generated requests to find (the document's example id is 1):
    campaign 1 prepared and sending (pause, resume, cancel, report and rejects answer
    it), campaign 2 a preview with its forecast, schedule 1, an opt-out."""
    example = (ROOT / "campaigns" / "example").iterdir()
    files = {p.name: p.read_bytes() for p in example if p.is_file()}
    for _ in range(2):
        assert actions.submit(db, files, dry_run=True).state == "previewed"
    with db.session() as session:
        lifecycle.move(session, 1, (CampaignState.PREVIEWED,), CampaignState.SENDING)
    actions.add_schedule(db, files, "0 9 * * MON")
    actions.suppress(db, ["+4791234567"])


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    case: schemathesis.Case, live: Live
) -> None:
    FUZZ_CASES[f"schemathesis {case.operation.label}"] += 1
    case.call_and_validate(base_url=live.base_url, headers=live.headers, checks=CHECKS)
