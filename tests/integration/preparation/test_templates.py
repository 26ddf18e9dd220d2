"""Templates checked before anyone is sent to: the sender's list from LINK's List
Templates (the simulator over HTTP) against the campaign's message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Campaign, Database, Message
from dispatcher.preparation import prepare
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.status import CampaignState

SPEC = """\
name: Templates
sender: {source: "+4790000000"}
message:
  type: template
  template:
    name: NAME
    language: LANGUAGE
    components: [{type: body, parameters: [{type: text, text: "{first_name}"}]}]
recipients: people.csv
"""


def template(name: str, language: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "language": language, "status": "APPROVED", "category": "MARKETING",
            "components": [{"type": "BODY", "text": body}], **extra}  # fmt: skip


LISTED = [
    template("welcome", "en", "Welcome, {{1}}!"),
    template("welcome", "nb", "Velkommen, {{1}}!"),
    template("two_values", "en", "{{1}} and {{2}}"),
    template("paused_offer", "en", "Hi {{1}}", status="PAUSED"),
    template("rejected_offer", "en", "Hi {{1}}", status="REJECTED"),
    template("login_code", "en", "{{1}} is your code.", category="AUTHENTICATION"),
]


@pytest.fixture()
def link(simulator: str) -> Iterator[LinkClient]:
    client = LinkClient(LinkCredentials(simulator, "u", "pw", "P", "1"))
    yield client
    client.close()


def prepared(
    db: Database, link: LinkClient, folder: Path, name: str, language: str = "en",
    rows: str = "phone,first_name\n+4791000001,Ada\n",
) -> Campaign:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "campaign.yaml").write_text(SPEC.replace("NAME", name).replace("LANGUAGE", language))
    (folder / "people.csv").write_text(rows)
    campaign_id = create_campaign(db, load_campaign(folder))
    prepare.prepare_campaign(db, link, campaign_id, reports_dir=folder / "reports")
    with db.session() as session:
        found = session.get(Campaign, campaign_id)
        assert found is not None
        session.expunge(found)
        return found


@pytest.mark.parametrize(
    ("name", "language", "problem"),
    [
        ("welcom", "en", "LINK lists no template 'welcom' for +4790000000"),
        ("welcome", "de", "template 'welcome' has no 'de' translation (it has: en, nb)"),
        ("paused_offer", "en", "template 'paused_offer' (en) is PAUSED, not APPROVED"),
        ("rejected_offer", "en", "template 'rejected_offer' (en) is REJECTED, not APPROVED"),
        ("two_values", "en", "body parameters: the message gives 1, template 'two_values' (en) "
                             "takes 2 (Meta error 132000)"),
    ],
    ids=["unknown-name", "unknown-language", "paused", "rejected", "parameter-count"],
)  # fmt: skip
@pytest.mark.parametrize("simulator", [{"templates": LISTED}], indirect=True)
def test_a_template_campaign_that_cannot_match_is_refused_before_anyone_is_sent_to(
    db: Database, link: LinkClient, simulator: str, tmp_path: Path,
    name: str, language: str, problem: str,
) -> None:  # fmt: skip
    found = prepared(db, link, tmp_path, name, language)
    assert found.state == CampaignState.FAILED
    assert problem in (found.error or "")
    with db.session() as session:
        assert session.scalar(select(Message.id)) is None
    assert httpx.get(f"{simulator}/_simulator/stats").json()["requests"] == 0


@pytest.mark.parametrize("simulator", [{"templates": LISTED}], indirect=True)
def test_a_listed_approved_template_with_matching_parameters_starts(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    found = prepared(db, link, tmp_path, "welcome", "nb")
    assert found.state == CampaignState.SENDING, found.error


@pytest.mark.parametrize("simulator", [{"templates": LISTED}], indirect=True)
def test_an_authentication_template_is_known_from_the_list_and_never_goes_to_a_bsuid(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    rows = "phone,bsuid,first_name\n+4791000001,NO.111,Ada\n,NO.222,Bo\n"
    found = prepared(db, link, tmp_path, "login_code", rows=rows)
    assert found.state == CampaignState.SENDING, found.error
    assert found.spec["template_category"] == "authentication"
    assert any("AUTHENTICATION template" in n for n in found.notes or [])
    with db.session() as session:
        assert list(session.scalars(select(Message.destination))) == ["+4791000001"]
    rejects = Path(found.rejects_path or "").read_text()
    assert "131062" in rejects


@pytest.mark.parametrize("simulator", [{"templates": LISTED}], indirect=True)
def test_the_template_list_is_kept_briefly_and_one_template_read_by_id(
    link: LinkClient, simulator: str
) -> None:
    first = link.templates("+4790000000")
    assert link.templates("+4790000000") is first  # kept: asked once
    by_id = link.template("+4790000000", first[0].template_id or "")
    assert (by_id.name, by_id.language, by_id.body_parameters) == ("welcome", "en", 1)
    assert [t.status for t in first if t.name == "paused_offer"] == ["PAUSED"]
