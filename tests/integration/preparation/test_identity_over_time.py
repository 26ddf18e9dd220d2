"""The next campaign after people changed: who is sent to, by which identifier, who is
merged, who keeps an opt-out (retired numbers and BSUIDs, portfolios, the list's own
links)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from dispatcher.audience import book
from dispatcher.audience.changes import Change, apply_change
from dispatcher.db import Campaign, Database, Identity, Message, RetiredIdentity, Suppression
from dispatcher.preparation import prepare
from dispatcher.settings import get_settings
from tests.integration.conftest import OFFLINE, campaign

OLD, NEW, OTHER = "+4791000001", "+4791000002", "+4791000003"
A_BSUID, A_NEW_BSUID = "NO.AAAAAAAAAAAAAAAAAAAA01", "NO.AAAAAAAAAAAAAAAAAAAA02"
B_BSUID = "NO.BBBBBBBBBBBBBBBBBBBB01"
SENDER = "+4790000000"  # the conftest spec's sender: a portfolio alone
T0 = datetime(2026, 9, 1, tzinfo=UTC)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def sent(
    db: Database, tmp_path: Path, name: str, rows: list[str], *, dry: bool = True
) -> dict[str, Any]:
    """Prepare a campaign of ``rows`` (phone,bsuid); its messages (destination ->
    identifiers) and its rejects file's text."""
    campaign_id = campaign(db, tmp_path / name, rows)
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dry_run=dry)
    with db.session() as session:
        found = session.get(Campaign, campaign_id)
        assert found is not None
        messages = {
            m.destination: m.identifiers
            for m in session.scalars(select(Message).where(Message.campaign_id == campaign_id))
        }
        return {
            "id": campaign_id,
            "messages": messages,
            "rejects": Path(found.rejects_path or "").read_text(),
        }


def change(
    db: Database,
    event: str,
    old: tuple[str, ...],
    new: tuple[str, ...],
    same: tuple[str, ...],
    when: datetime,
) -> None:
    source = book.Source("system", "report 1", when)
    with db.session() as session:
        apply_change(session, Change(event, old, new, same, source))


def learned(db: Database, group: list[str], when: datetime, portfolio: str = SENDER) -> None:
    with db.session() as session:
        book.learn_links(session, [(group, book.Source("dlr", "message 1", when, portfolio))])


@pytest.fixture
def portfolios(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SENDER_PORTFOLIOS", json.dumps({"acme": [SENDER, "+4790000009"]}))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_recycled_number_goes_to_its_new_owner_once_and_the_old_owner_keeps_the_opt_out(
    db: Database, tmp_path: Path
) -> None:
    learned(db, [OLD, A_BSUID], at(0))
    with db.session() as session:  # A says STOP: both identifiers of the message
        session.add_all(Suppression(identifier=i, reason="opt-out keyword 'STOP'")
                        for i in (OLD, A_BSUID))  # fmt: skip
    change(db, "user_changed_number", (OLD,), (NEW,), (A_BSUID,), at(1))
    learned(db, [OLD, B_BSUID], at(30))  # B got the number: their report links it anew

    run = sent(db, tmp_path, "next", [f"{OLD},", f"{NEW},", f",{A_BSUID}"])

    assert set(run["messages"]) == {OLD}  # B, once
    assert run["messages"][OLD] == [OLD, B_BSUID]
    # A, once: the row of A's BSUID is merged into the row of A's new number
    assert run["rejects"].count("suppressed (opted out)") == 1
    assert f"3,suppressed (opted out),{NEW}," in run["rejects"]
    with db.session() as session:
        opted = set(session.scalars(select(Suppression.identifier)))
    assert opted == {NEW, A_BSUID}


def test_a_recycled_number_not_yet_linked_is_nobodys_and_is_sent_to_without_the_opt_out(
    db: Database, tmp_path: Path
) -> None:
    learned(db, [OLD, A_BSUID], at(0))
    with db.session() as session:
        session.add(Suppression(identifier=OLD, reason="STOP"))
    change(db, "user_changed_number", (OLD,), (NEW,), (A_BSUID,), at(1))

    run = sent(db, tmp_path, "next", [f"{OLD},", f"{NEW},"])

    assert set(run["messages"]) == {OLD}  # the number's next owner, a stranger to A
    assert run["messages"][OLD] == [OLD]
    assert "suppressed (opted out)" in run["rejects"]  # A by the new number


def test_a_list_that_still_pairs_the_old_number_with_its_owner_sends_to_the_current_one(
    db: Database, tmp_path: Path
) -> None:
    learned(db, [OLD, A_BSUID], at(0))
    change(db, "user_changed_number", (OLD,), (NEW,), (A_BSUID,), at(1))

    run = sent(db, tmp_path, "stale", [f"{OLD},{A_BSUID}"])

    assert set(run["messages"]) == {NEW}  # never the retired number, as A's
    assert set(run["messages"][NEW]) == {OLD, NEW, A_BSUID}


def test_a_retired_bsuid_in_a_list_resolves_to_the_person_and_is_never_the_destination(
    db: Database, tmp_path: Path
) -> None:
    learned(db, [OLD, A_BSUID], at(0))
    change(db, "user_id_update", (A_BSUID,), (A_NEW_BSUID,), (OLD,), at(1))

    run = sent(db, tmp_path, "next", [f",{A_BSUID}", f"{OTHER},"])

    assert set(run["messages"]) == {OLD, OTHER}
    assert set(run["messages"][OLD]) == {OLD, A_BSUID, A_NEW_BSUID}


def test_a_person_known_only_by_a_retired_bsuid_is_reported_with_the_reason(
    db: Database, tmp_path: Path
) -> None:
    learned(db, [A_BSUID, "NO.ENT.AAAAAAAAAAAAAAAAAAAA01"], at(0))
    change(db, "user_id_update", (A_BSUID, "NO.ENT.AAAAAAAAAAAAAAAAAAAA01"), (), (), at(1))

    run = sent(db, tmp_path, "next", [f",{A_BSUID}"])

    assert run["messages"] == {}
    assert "known only by a retired BSUID (retired on 2026-09-02" in run["rejects"]


@pytest.mark.usefixtures("portfolios")
def test_a_bsuid_of_another_portfolio_is_never_a_destination(db: Database, tmp_path: Path) -> None:
    learned(db, [OLD, A_BSUID], at(0), portfolio="globex")
    learned(db, [OTHER, B_BSUID], at(0), portfolio="acme")

    run = sent(db, tmp_path, "next", [f",{A_BSUID}", f",{B_BSUID}"])

    # A: the number the book links (phone numbers have no portfolio); B: as listed
    assert set(run["messages"]) == {OLD, OTHER}


@pytest.mark.usefixtures("portfolios")
def test_a_person_known_only_by_another_portfolios_bsuid_is_reported_with_the_reason(
    db: Database, tmp_path: Path
) -> None:
    source = book.Source("mo", "report 3", at(0), "globex")
    with db.session() as session:
        book.learn_links(session, [([A_BSUID, "NO.ENT.AAAAAAAAAAAAAAAAAAAA01"], source)])

    run = sent(db, tmp_path, "next", [f",{A_BSUID}"])

    assert run["messages"] == {}
    assert ("known only by a BSUID of another business portfolio (globex; this sender's is "
            "acme)") in run["rejects"]  # fmt: skip


def test_a_real_send_teaches_the_book_the_lists_links_and_a_dry_run_does_not(
    db: Database, tmp_path: Path
) -> None:
    sent(db, tmp_path, "preview", [f"{OLD},{A_BSUID}"])
    with db.session() as session:
        assert session.scalars(select(Identity)).all() == []

    run = sent(db, tmp_path, "real", [f"{OTHER},", f"{OLD},{A_BSUID}"], dry=False)

    with db.session() as session:
        rows = {r.identifier: r for r in session.scalars(select(Identity))}
    assert set(rows) == {OLD, A_BSUID}
    assert {r.learned_from for r in rows.values()} == {"csv"}
    assert rows[A_BSUID].source == f"campaign {run['id']} people.csv line 3"
    assert (rows[A_BSUID].portfolio, rows[OLD].portfolio) == (SENDER, "")


def test_a_big_lookup_in_one_statement_finds_what_chunked_lookups_find(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [(f"+47910{n:05d}", f"NO.PERSON{n:015d}") for n in range(200)]
    source = book.Source("dlr", "", at(0), "acme")
    with db.session() as session:
        book.learn_links(session, [(list(p), source) for p in people])
    asked = [number for number, _ in people[::3]] + [f"+47920{n:05d}" for n in range(100)]
    with db.session() as session:
        chunked = book.scoped(session, asked)
    monkeypatch.setattr(book, "_ONE_STATEMENT_FROM", 10)
    with db.session() as session:
        at_once = book.scoped(session, asked)
    assert at_once == chunked
    assert len(at_once) == 2 * len(people[::3])
    assert at_once[people[3][1]] == (people[3][0], "acme")


def test_a_real_send_of_a_stale_row_does_not_bring_the_retired_link_back(
    db: Database, tmp_path: Path
) -> None:
    learned(db, [OLD, A_BSUID], at(0))
    with db.session() as session:
        session.add(Suppression(identifier=OLD, reason="STOP"))
    change(db, "user_changed_number", (OLD,), (NEW,), (A_BSUID,), at(1))

    sent(db, tmp_path, "stale", [f"{OLD},{A_BSUID}"], dry=False)
    with db.session() as session:
        assert session.get(Identity, OLD) is None  # the list did not relink it

    run = sent(db, tmp_path, "next", [f"{OLD},"])
    assert set(run["messages"]) == {OLD}  # its next owner, without A's opt-out


@pytest.mark.usefixtures("portfolios")
def test_a_retired_bsuids_person_is_sent_to_through_this_portfolio_only(
    db: Database, tmp_path: Path
) -> None:
    globex = "NO.GGGGGGGGGGGGGGGGGGGG01"
    learned(db, [A_BSUID, globex], at(0), portfolio="globex")
    with db.session() as session:  # A_BSUID was learned through acme
        session.execute(update(Identity).where(Identity.identifier == A_BSUID)
                        .values(portfolio="acme"))  # fmt: skip
    change(db, "user_id_update", (A_BSUID,), (), (globex,), at(1))

    run = sent(db, tmp_path, "next", [f",{A_BSUID}"])

    assert run["messages"] == {}  # never the globex BSUID through an acme sender
    assert "known only by" in run["rejects"]


def test_a_person_left_with_no_identifier_keeps_the_opt_out_and_lends_nobody_its_key(
    db: Database, tmp_path: Path
) -> None:
    learned(db, [A_BSUID, "NO.ENT.AAAAAAAAAAAAAAAAAAAA01"], at(0))
    with db.session() as session:
        session.add(Suppression(identifier=A_BSUID, reason="STOP"))
    change(db, "user_id_update", (A_BSUID, "NO.ENT.AAAAAAAAAAAAAAAAAAAA01"), (), (), at(1))
    learned(db, [OLD, B_BSUID], at(2))  # somebody else entirely

    with db.session() as session:
        keys = set(session.scalars(select(RetiredIdentity.person_key)))
        opted = set(session.scalars(select(Suppression.identifier)))
    assert keys == {f"retired:{A_BSUID}"}
    assert opted == {A_BSUID}
    run = sent(db, tmp_path, "next", [f",{A_BSUID}", f"{OLD},"])
    assert set(run["messages"]) == {OLD}
