"""A batch job's whole round through the REST API, against real processes
(``conftest.stack``: ``dispatcher serve``, a Celery worker with beat, the LINK
simulator, PostgreSQL and Redis): the example campaign uploaded as a zip, followed by
its status document to the end, its report downloaded."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import api_key, internal_url

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

#: Failures drawn from final codes only (none waits 15 minutes for a resend), so the
#: example completes while the test watches.
FINAL_FAILURES = {
    "SIMULATOR_FAILURE_RATE": "0.1",
    "SIMULATOR_FAILURE_CODES": "[131026, 131050]",
}


def example_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((ROOT / "campaigns" / "example").iterdir()):
            if path.is_file():
                archive.write(path, f"example/{path.name}")
    return buffer.getvalue()


@pytest.mark.parametrize("stack", [FINAL_FAILURES], indirect=True)
def test_a_zip_uploaded_through_the_api_is_sent_followed_to_the_end_and_reported(
    stack: dict[str, str], tmp_path: Path
) -> None:
    base = internal_url(tmp_path / "logs")
    send = {"Authorization": f"Bearer {api_key(stack, 'batch-job', 'send')}"}
    read = {"Authorization": f"Bearer {api_key(stack, 'dashboard', 'read')}"}
    with httpx.Client(base_url=f"{base}/api", timeout=60) as http:
        refused = http.post("/campaigns", headers=read, files={"files": ("a.zip", b"")})
        assert refused.status_code == 403

        answer = http.post(
            "/campaigns", headers=send, files={"files": ("example.zip", example_zip())}
        )
        assert answer.status_code == 201, answer.text
        campaign_id = answer.json()["campaign_id"]

        deadline = time.monotonic() + 120
        while True:
            status = http.get(f"/campaigns/{campaign_id}", headers=read).json()
            if status["state"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, f"not finished: {status['state']}"
            time.sleep(1)
        assert status["state"] == "completed", status.get("error")
        assert status["messages"] == 190
        assert status["delivered"] + status["failed"] == status["messages"]  # read ones too
        assert status["failed"] > 0  # the simulator's failures, reported as such

        report = http.get(f"/campaigns/{campaign_id}/report.csv", headers=read)
        assert report.status_code == 200
        rows = list(csv.DictReader(io.StringIO(report.text)))
        sent_to = {row["destination"] for row in rows if row["destination"]}
        assert len(sent_to) == 190  # the rest: rows rejected or merged, named as such
        failed = [row for row in rows if row["status"] == "failed"]
        assert len(failed) == status["failed"]
        assert {row["whatsapp_error_code"] for row in failed} <= {"131026", "131050"}

        rejects = http.get(f"/campaigns/{campaign_id}/rejects.csv", headers=read)
        assert rejects.status_code == 200 and rejects.text.startswith("file,line,reason")

        listed = http.get("/campaigns", headers=read).json()["campaigns"]
        assert [c["campaign_id"] for c in listed] == [campaign_id]

    # Taken as the drop folder takes a folder: filed under done/ once prepared.
    done = Path(stack["DROP_DIR"]) / "done"
    deadline = time.monotonic() + 30
    while not (done.is_dir() and any(done.iterdir())):
        assert time.monotonic() < deadline, "the upload was not filed under done/"
        time.sleep(0.5)
    [filed] = list(done.iterdir())
    assert (filed / "CAMPAIGN_ID").read_text().strip() == str(campaign_id)
