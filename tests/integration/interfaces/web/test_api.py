"""The REST API over real HTTP: the internal listener's app under uvicorn on loopback,
on PostgreSQL and the test Redis (the broker the prepare tasks are queued on). Every
endpoint, and every refusal with its documented status and body."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import select

from dispatcher.db import AuditEvent, Campaign, Database
from dispatcher.interfaces import actions
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.web.app import create_internal_app
from dispatcher.settings import get_settings
from tests.conftest import ROOT
from tests.integration.conftest import key_headers

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db", ["postgresql"], indirect=True)]

EXAMPLE = ROOT / "campaigns" / "example"


@dataclass
class Api:
    http: httpx.Client
    send: dict[str, str]
    read: dict[str, str]
    db: Database
    drop: Path
    broker: redis.Redis

    def queued(self) -> list[int]:
        """Campaign ids of the prepare tasks waiting on the broker."""
        found = []
        for raw in self.broker.lrange("prepare", 0, -1):
            body = json.loads(raw)
            found.append(int(body["headers"]["kwargsrepr"].split(":")[-1].strip(" }'")))
        return found


@pytest.fixture()
def api(
    db: Database, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DROP_DIR", str(tmp_path / "drop"))
    monkeypatch.setenv("REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    broker = redis.Redis.from_url(redis_url)
    with (
        ServerThread(create_internal_app(db)) as server,
        httpx.Client(base_url=f"{server.url}/api", timeout=60) as http,
    ):
        yield Api(http, key_headers(db, "send"), key_headers(db, "read"), db,
                  tmp_path / "drop", broker)  # fmt: skip
    broker.close()
    get_settings.cache_clear()


def folder_files(**changed: bytes) -> dict[str, bytes]:
    """The example campaign's files, some replaced."""
    files = {p.name: p.read_bytes() for p in EXAMPLE.iterdir() if p.is_file()}
    return files | changed


def zipped(files: dict[str, bytes], top: str = "example") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"{top}/{name}" if top else name, data)
    return buffer.getvalue()


def multipart(files: dict[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (name, data)) for name, data in files.items()]


def test_a_zip_of_the_example_is_registered_queued_and_filed_like_a_dropped_folder(
    api: Api,
) -> None:
    answer = api.http.post(
        "/campaigns", headers=api.send, files=[("files", ("example.zip", zipped(folder_files())))]
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["state"] == "draft" and body["problems"] == []
    assert answer.headers["location"] == f"/api/campaigns/{body['campaign_id']}"
    assert api.broker.llen("prepare") == 1  # queued for the workers
    [taken] = list((api.drop / "processing").iterdir())  # taken as the drop folder takes
    assert (taken / "CAMPAIGN_ID").read_text().strip() == str(body["campaign_id"])
    assert list((api.drop / "uploads").iterdir()) == []  # nothing left half-staged
    status = api.http.get(f"/campaigns/{body['campaign_id']}", headers=api.read).json()
    assert status["state"] == "draft" and status["name"] == "Spring sale 2026"


def test_files_sent_one_by_one_with_the_spec_under_another_name_are_one_campaign(api: Api) -> None:
    files = folder_files()
    spec = files.pop("campaign.yaml")
    answer = api.http.post(
        "/campaigns",
        headers=api.send,
        files=[("spec", ("spring.yml", spec)), *multipart(files)],
    )
    assert answer.status_code == 201, answer.text


def test_a_raw_zip_body_is_taken_too(api: Api) -> None:
    answer = api.http.post(
        "/campaigns",
        headers=api.send | {"content-type": "application/zip"},
        content=zipped(folder_files(), top=""),
    )
    assert answer.status_code == 201, answer.text


def test_the_same_files_twice_are_refused_as_a_repeat_unless_again(api: Api) -> None:
    upload = multipart(folder_files())
    assert api.http.post("/campaigns", headers=api.send, files=upload).status_code == 201
    repeat = api.http.post("/campaigns", headers=api.send, files=upload)
    assert repeat.status_code == 409
    assert "sent as campaign 1" in repeat.json()["error"]
    again = api.http.post("/campaigns?again=true", headers=api.send, files=upload)
    assert again.status_code == 201


def test_a_dry_run_stores_a_preview_with_its_forecast_and_start_sends_it(api: Api) -> None:
    upload = multipart(folder_files())
    answer = api.http.post("/campaigns?dry_run=true", headers=api.send, files=upload)
    assert answer.status_code == 201, answer.text
    preview = answer.json()
    assert preview["state"] == "previewed"
    assert preview["forecast"]["people"] == preview["forecast"]["loaded"] - sum(
        preview["forecast"]["excluded"].values()
    )
    assert api.broker.llen("prepare") == 0  # nothing queued
    status = api.http.get(f"/campaigns/{preview['campaign_id']}", headers=api.read).json()
    assert status["forecast"]["people"] == preview["forecast"]["people"]
    rejects = api.http.get(f"/campaigns/{preview['campaign_id']}/rejects.csv", headers=api.read)
    assert rejects.status_code == 200
    assert rejects.text.startswith("file,line,reason")

    started = api.http.post(f"/campaigns/{preview['campaign_id']}/start", headers=api.send)
    assert started.status_code == 201, started.text
    assert started.json()["state"] == "draft"
    assert api.broker.llen("prepare") == 1
    gone = api.http.get(f"/campaigns/{preview['campaign_id']}", headers=api.read)
    assert gone.status_code == 404  # the preview made way for the real one
    again = api.http.post(f"/campaigns/{started.json()['campaign_id']}/start", headers=api.send)
    assert again.status_code == 409 and "only a previewed" in again.json()["error"]


def test_a_preview_started_twice_at_once_is_sent_once(api: Api) -> None:
    """A job retried after a timeout, a double click: one start wins, one is told."""
    upload = multipart(folder_files())
    preview = api.http.post("/campaigns?dry_run=true", headers=api.send, files=upload).json()
    path = f"/campaigns/{preview['campaign_id']}/start"
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: api.http.post(path, headers=api.send), range(4)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], [a.text for a in answers]
    assert api.broker.llen("prepare") == 1
    with api.db.session() as session:
        assert session.scalars(select(Campaign.state)).all() == ["draft"]


def test_the_same_files_uploaded_at_once_register_once(api: Api) -> None:
    """The repeat guard's look and the insert are one step (PostgreSQL: a lock)."""
    upload = multipart(folder_files())
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda _: api.http.post("/campaigns", headers=api.send, files=upload), range(4)
            )
        )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], [a.text for a in answers]
    assert api.broker.llen("prepare") == 1


def test_a_bad_spec_answers_its_problems_by_field_path_and_registers_nothing(api: Api) -> None:
    spec = (EXAMPLE / "campaign.yaml").read_bytes()
    broken = spec.replace(b"template_category: marketing", b"template_category: spam")
    answer = api.http.post(
        "/campaigns", headers=api.send, files=multipart(folder_files(**{"campaign.yaml": broken}))
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "the campaign is not valid"
    [problem] = body["detail"]["problems"]
    assert problem["field"] == "template_category"
    assert "marketing" in problem["message"]
    with api.db.session() as session:
        assert session.scalars(select(Campaign.id)).all() == []
    assert not (api.drop / "processing").exists() or not list((api.drop / "processing").iterdir())


def test_a_csv_without_the_phone_column_is_a_recipients_problem(api: Api) -> None:
    files = folder_files(**{"recipients.csv": b"name,store\nAda,Oslo\n"})
    answer = api.http.post("/campaigns", headers=api.send, files=multipart(files))
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]["problems"]
    assert problem["field"] == "recipients[0]"
    assert "recipients.csv" in problem["message"] and str(api.drop) not in problem["message"]


def test_a_missing_media_file_names_its_place_in_the_message(api: Api) -> None:
    files = folder_files()
    del files["banner.png"]
    answer = api.http.post("/campaigns", headers=api.send, files=multipart(files))
    assert answer.status_code == 422
    fields = [p["field"] for p in answer.json()["detail"]["problems"]]
    assert any(f.startswith("message.template.components") for f in fields), fields


@pytest.mark.parametrize(
    ("name", "why"),
    [("../escape.csv", "not a plain relative"), ("/etc/passwd", "not a plain relative")],
)
def test_an_unsafe_file_name_is_refused(api: Api, name: str, why: str) -> None:
    files = {"campaign.yaml": b"x", name: b"y"}
    answer = api.http.post(
        "/campaigns",
        headers=api.send | {"content-type": "application/zip"},
        content=zipped(files, top=""),
    )
    assert answer.status_code == 422
    assert why in answer.json()["detail"]["problems"][0]["message"]


def test_a_body_that_is_not_multipart_or_a_zip_is_a_bad_request(api: Api) -> None:
    answer = api.http.post("/campaigns", headers=api.send, content=b"hello")
    assert answer.status_code == 400
    for kind in ("multipart/form-data", "multipart/form-data; boundary=zzz"):
        broken = api.http.post(
            "/campaigns", headers=api.send | {"content-type": kind}, content=b"garbage"
        )
        assert broken.status_code == 400, broken.text
        assert broken.json()["error"].startswith("bad multipart body")
    not_zip = api.http.post(
        "/campaigns", headers=api.send | {"content-type": "application/zip"}, content=b"PK nope"
    )
    assert not_zip.status_code == 422
    assert "not a zip" in not_zip.json()["detail"]["problems"][0]["message"]


def test_an_upload_over_the_cap_is_refused_with_413(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions, "MAX_UPLOAD_BYTES", 64 * 1024)
    big = api.http.post(
        "/campaigns",
        headers=api.send,
        files=multipart(folder_files(**{"recipients.csv": b"phone\n" + b"+4791234567\n" * 50_000})),
    )
    assert big.status_code == 413
    assert "MiB" in big.json()["error"] or "over" in big.json()["error"]
    bomb = zipped({"campaign.yaml": b"a" * (200 * 1024)}, top="")  # small packed, large unpacked
    assert len(bomb) < 64 * 1024
    unpacked = api.http.post(
        "/campaigns", headers=api.send | {"content-type": "application/zip"}, content=bomb
    )
    assert unpacked.status_code == 413


def test_without_a_key_every_route_answers_401_and_with_a_read_key_changes_403(api: Api) -> None:
    routes = [
        ("GET", "/campaigns"),
        ("POST", "/campaigns"),
        ("GET", "/campaigns/1"),
        ("POST", "/campaigns/1/pause"),
        ("POST", "/campaigns/1/resume"),
        ("POST", "/campaigns/1/cancel"),
        ("POST", "/campaigns/1/start"),
        ("GET", "/campaigns/1/report.csv"),
        ("GET", "/campaigns/1/rejects.csv"),
        ("GET", "/suppressions"),
        ("POST", "/suppressions"),
        ("DELETE", "/suppressions"),
        ("GET", "/schedules"),
        ("POST", "/schedules"),
        ("GET", "/schedules/1"),
        ("DELETE", "/schedules/1"),
    ]
    for method, path in routes:
        time.sleep(0.15)  # two strangers' requests a route: under 20 a second
        answer = api.http.request(method, path)
        assert answer.status_code == 401, (method, path)
        assert answer.json()["error"].startswith("unauthorised")
        assert answer.headers["www-authenticate"] == "Bearer"
        wrong = api.http.request(method, path, headers={"Authorization": "Bearer wcd_x_nope"})
        assert wrong.status_code == 401, (method, path)
        if method != "GET":
            assert api.http.request(method, path, headers=api.read).status_code == 403
    with api.db.session() as session:
        refused = session.scalars(select(AuditEvent.status)).all()
    assert refused.count(401) == 2 * len(routes) and refused.count(403) == 9


def test_a_stranger_past_its_limit_gets_429_and_is_not_written_down(api: Api) -> None:
    start = time.monotonic()
    answers, within_a_second = [], []
    for _ in range(40):
        answers.append(api.http.get("/campaigns").status_code)
        within_a_second.append(time.monotonic() - start < 1.0)
    assert answers[:20] == [401] * 20
    # Any request answered within a second of the first has the first 20 in its window,
    # whichever clock second they straddle.
    if not within_a_second[20]:
        pytest.skip("21 requests took over a second: nothing answered inside the window")
    assert {a for a, early in zip(answers[20:], within_a_second[20:], strict=True) if early} == {
        429
    }
    assert api.http.get("/campaigns", headers=api.read).status_code == 200  # keys go on
    with api.db.session() as session:
        written = session.scalars(select(AuditEvent.status)).all()
    assert written.count(401) == 20 and 429 not in written


def test_every_call_is_audited_with_who_what_target_and_status(api: Api) -> None:
    api.http.get("/campaigns/7", headers=api.read)
    api.http.post("/campaigns/7/pause", headers=api.send)
    with api.db.session() as session:
        rows = session.execute(
            select(
                AuditEvent.key_name, AuditEvent.action, AuditEvent.target, AuditEvent.status
            ).order_by(AuditEvent.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("test-read", "campaigns.status", "campaign:7", 404),
        ("test-send", "campaigns.pause", "campaign:7", 404),
    ]


def test_unknown_campaigns_are_404_and_ids_that_are_no_number_400(api: Api) -> None:
    for path in ("/campaigns/99", "/campaigns/99/report.csv", "/campaigns/99/rejects.csv",
                 "/campaigns/99999999999999999999999"):  # fmt: skip
        answer = api.http.get(path, headers=api.read)
        assert answer.status_code == 404, path
        assert answer.json()["error"].startswith("no campaign")
    for verb in ("pause", "resume", "cancel", "start"):
        assert api.http.post(f"/campaigns/99/{verb}", headers=api.send).status_code == 404
    bad = api.http.get("/campaigns/abc", headers=api.read)
    assert bad.status_code == 400 and "whole number" in bad.json()["error"]


def test_pause_resume_and_cancel_follow_the_campaign_states(api: Api) -> None:
    created = api.http.post("/campaigns", headers=api.send, files=multipart(folder_files()))
    campaign_id = created.json()["campaign_id"]
    early = api.http.post(f"/campaigns/{campaign_id}/pause", headers=api.send)
    assert early.status_code == 409
    assert "only a campaign that is sending can pause" in early.json()["error"]
    with api.db.session() as session:  # as a worker's preparation leaves it
        session.get(Campaign, campaign_id).state = "sending"  # type: ignore[union-attr]
    paused = api.http.post(f"/campaigns/{campaign_id}/pause", headers=api.send)
    assert paused.json() == {"campaign_id": campaign_id, "state": "paused"}
    resumed = api.http.post(f"/campaigns/{campaign_id}/resume", headers=api.send)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json() == {"campaign_id": campaign_id, "batches_queued": 0,
                              "canary_waits": False, "queued": True}  # fmt: skip
    cancelled = api.http.post(f"/campaigns/{campaign_id}/cancel", headers=api.send)
    assert cancelled.json()["state"] == "cancelled"
    twice = api.http.post(f"/campaigns/{campaign_id}/cancel", headers=api.send)
    assert twice.status_code == 409
    status = api.http.get(f"/campaigns/{campaign_id}", headers=api.read).json()
    assert status["state"] == "cancelled"


def test_list_status_report_and_rejects_of_a_prepared_campaign(api: Api) -> None:
    preview = api.http.post(
        "/campaigns?dry_run=true", headers=api.send, files=multipart(folder_files())
    ).json()
    listed = api.http.get("/campaigns?limit=5", headers=api.read).json()
    assert [c["campaign_id"] for c in listed["campaigns"]] == [preview["campaign_id"]]
    assert listed["campaigns"][0]["source"] != "+4790000000"  # masked, as status shows it
    report = api.http.get(f"/campaigns/{preview['campaign_id']}/report.csv", headers=api.read)
    assert report.headers["content-type"].startswith("text/csv")
    assert "attachment" in report.headers["content-disposition"]
    lines = report.text.splitlines()
    assert lines[0].startswith("line,identifiers,destination,status")
    assert len(lines) > 100 and "+47" in report.text  # numbers whole: the export
    bad = api.http.get("/campaigns?limit=0", headers=api.read)
    assert bad.status_code == 422
    assert bad.json()["detail"]["problems"][0]["field"] == "limit"


def test_status_is_the_cli_status_json_document(api: Api, cli_db: Database) -> None:
    from typer.testing import CliRunner

    from dispatcher.interfaces.cli import app

    preview = api.http.post(
        "/campaigns?dry_run=true", headers=api.send, files=multipart(folder_files())
    ).json()
    printed = CliRunner().invoke(app, ["status", str(preview["campaign_id"]), "--json"])
    assert printed.exit_code == 0, printed.output
    [expected] = json.loads(printed.stdout)
    got = api.http.get(f"/campaigns/{preview['campaign_id']}", headers=api.read).json()
    assert got == expected


def test_rejects_before_preparation_are_404_with_the_reason(api: Api) -> None:
    created = api.http.post("/campaigns", headers=api.send, files=multipart(folder_files()))
    answer = api.http.get(f"/campaigns/{created.json()['campaign_id']}/rejects.csv",
                          headers=api.read)  # fmt: skip
    assert answer.status_code == 404 and "no rejects report yet" in answer.json()["error"]


def test_a_campaign_with_send_at_ahead_is_scheduled_not_queued(api: Api) -> None:
    spec = (EXAMPLE / "campaign.yaml").read_bytes() + b'send_at: "2099-01-01T09:00:00Z"\n'
    answer = api.http.post(
        "/campaigns", headers=api.send, files=multipart(folder_files(**{"campaign.yaml": spec}))
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "scheduled"
    assert api.broker.llen("prepare") == 0
    status = api.http.get(f"/campaigns/{answer.json()['campaign_id']}", headers=api.read).json()
    assert status["forecast"]["basis"] == "predicted"


def test_suppressions_are_added_listed_and_removed(api: Api) -> None:
    added = api.http.post(
        "/suppressions",
        headers=api.send,
        json={
            "identifiers": ["+4791234567", "91234568", "NO.13491208655302741918", "nope"],
            "reason": "asked by phone",
            "region": "NO",
        },
    )
    assert added.status_code == 200, added.text
    assert added.json()["added"] == 3
    assert added.json()["rejected"] == [
        {"index": 3, "identifier": "nope", "reason": added.json()["rejected"][0]["reason"]}
    ]
    listed = api.http.get("/suppressions", headers=api.read).json()["suppressions"]
    assert {e["identifier"] for e in listed} == {
        "+4791234567", "+4791234568", "NO.13491208655302741918"}  # fmt: skip
    assert {e["reason"] for e in listed} == {"asked by phone"}
    removed = api.http.request(
        "DELETE", "/suppressions", headers=api.send, json={"identifiers": ["+4791234567"]}
    )
    assert removed.json() == {"removed": 1, "rejected": []}
    assert len(api.http.get("/suppressions?limit=1", headers=api.read).json()["suppressions"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "identifiers"),
        ({"identifiers": []}, "identifiers"),
        ({"identifiers": ["+4791234567"], "region": "Norway"}, "region"),
        ({"identifiers": ["+4791234567"], "colour": "red"}, "colour"),
        ([1, 2], "(body)"),
    ],
)
def test_a_bad_suppression_body_names_the_field(api: Api, body: object, field: str) -> None:
    answer = api.http.post("/suppressions", headers=api.send, json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"]["problems"][0]["field"] == field


def test_a_suppression_body_that_is_no_json_is_a_bad_request(api: Api) -> None:
    answer = api.http.post("/suppressions", headers=api.send, content=b"{nope")
    assert answer.status_code == 400 and answer.json()["error"] == "the body is not JSON"


def test_schedules_are_added_from_uploaded_files_listed_and_removed(api: Api) -> None:
    answer = api.http.post(
        "/schedules",
        headers=api.send,
        data={"cron": "0 9 * * MON", "timezone": "Europe/Oslo"},
        files=[("files", ("example.zip", zipped(folder_files())))],
    )
    assert answer.status_code == 201, answer.text
    made = answer.json()
    kept = Path(made["path"])
    assert kept.parent == (api.drop / "schedules").resolve() and (kept / "campaign.yaml").is_file()
    assert made["next_run_at"].endswith("+00:00") and made["enabled"] is True
    assert api.http.get("/schedules", headers=api.read).json()["schedules"] == [made]
    assert api.http.get(f"/schedules/{made['id']}", headers=api.read).json() == made
    removed = api.http.delete(f"/schedules/{made['id']}", headers=api.send)
    assert removed.json() == {"removed": made["id"]}
    assert not kept.exists()
    assert api.http.delete(f"/schedules/{made['id']}", headers=api.send).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "every monday"}, "cron"),
        ({"cron": "0 9 * * MON", "timezone": "Mars/Olympus"}, "timezone"),
        ({}, "cron"),
    ],
)
def test_a_bad_schedule_names_the_field_and_keeps_no_folder(
    api: Api, fields: dict[str, str], field: str
) -> None:
    answer = api.http.post(
        "/schedules", headers=api.send, data=fields, files=multipart(folder_files())
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]["problems"][0]["field"] == field
    kept = api.drop / "schedules"
    assert not kept.exists() or list(kept.iterdir()) == []


def test_the_openapi_document_is_served_without_a_key(api: Api) -> None:
    document = api.http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/campaigns/{campaign_id}/report.csv" in document["paths"]


def test_without_a_broker_or_a_usable_drop_folder_an_upload_is_503_and_a_dry_run_still_works(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("DROP_DIR", str(tmp_path / "drop"))
    get_settings.cache_clear()
    upload = multipart(folder_files())
    try:
        with (
            ServerThread(create_internal_app(db)) as server,
            httpx.Client(base_url=f"{server.url}/api", timeout=60) as http,
        ):
            send = key_headers(db, "send")
            answer = http.post("/campaigns", headers=send, files=upload)
            assert answer.status_code == 503
            assert "REDIS_URL is not set" in answer.json()["error"]
            preview = http.post("/campaigns?dry_run=true", headers=send, files=upload)
            assert preview.status_code == 201 and preview.json()["state"] == "previewed"
            (tmp_path / "drop").rename(tmp_path / "elsewhere")
            (tmp_path / "drop").write_text("a file where the folder was")
            broken = http.post("/campaigns?dry_run=true", headers=send, files=upload)
            assert broken.status_code == 503
            assert "the drop folder cannot take the upload" in broken.json()["error"]
    finally:
        get_settings.cache_clear()
