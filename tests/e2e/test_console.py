"""The web console in a real browser (Chromium through playwright) against real
processes: ``dispatcher serve`` (its internal listener serves the console), a Celery
worker and the LINK simulator, on PostgreSQL and Redis (``conftest.stack``).

Each test saves screenshots as ``tests/artifacts/console-*.png``.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import copy_campaign
from tests.e2e.conftest import api_key, internal_url
from tests.e2e.console_browser import (
    WAIT_MS,
    chromium,
    screenshot,
    signed_in,
    unnamed_controls,
)
from tests.integration.conftest import PERSONAL_SPEC

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

#: Failures drawn from final codes only (none waits 15 minutes for a resend), so the
#: example completes while the test watches; 131049 would be sent again later.
FINAL_FAILURES = {
    "SIMULATOR_FAILURE_RATE": "0.1",
    "SIMULATOR_FAILURE_CODES": "[131026, 130472]",
}
#: People of the campaign paused and resumed: at STANDARD (80 a second) it sends for
#: about a minute, time enough to press its buttons.
SLOW_PEOPLE = 5000


def state_shown(page: Page) -> str:
    return page.locator("#live .state").first.inner_text()


def confirm(page: Page, button: str, answer: str) -> None:
    """Press a campaign's action and answer its confirmation dialog."""
    page.get_by_role("button", name=button, exact=True).click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="No, go back")).to_be_focused()
    dialog.get_by_role("button", name=answer, exact=True).click()


@pytest.mark.parametrize("stack", [FINAL_FAILURES], indirect=True)
def test_an_operator_checks_the_example_starts_it_watches_it_complete_and_downloads_the_report(
    stack: dict[str, str], tmp_path: Path
) -> None:
    base = internal_url(tmp_path / "logs")
    example = copy_campaign("example", tmp_path / "example")
    files = [str(example / n) for n in ("campaign.yaml", "recipients.csv", "banner.png")]
    with (
        chromium() as browser,
        signed_in(browser, base, api_key(stack, "marketing", "send")) as page,
    ):
        expect(page.get_by_text("Signed in as marketing")).to_be_visible()
        page.get_by_role("navigation").get_by_role("link", name="New campaign").click()
        # A broken spec: the problems come back with their field paths, nothing registered.
        broken = tmp_path / "broken"
        broken.mkdir()
        spec = (example / "campaign.yaml").read_text().replace("batch_size: 50", "batch_size: 0")
        (broken / "campaign.yaml").write_text(spec)
        page.get_by_label("Campaign files", exact=True).set_input_files(
            [str(broken / "campaign.yaml"), *files[1:]]
        )
        page.get_by_role("button", name="Check (dry run and forecast)").click()
        expect(page.get_by_role("alert")).to_contain_text("batch_size")

        page.get_by_label("Campaign files", exact=True).set_input_files(files)
        page.get_by_role("button", name="Check (dry run and forecast)").click()
        expect(
            page.get_by_role("heading", name=re.compile(r"Checked: campaign \d+"))
        ).to_be_visible()
        # 200 rows: 5 rejected, 5 merged into an earlier row; nothing was sent.
        expect(page.get_by_text("200 rows read; 190 people would be sent")).to_be_visible()
        screenshot(page, "new-checked")
        assert unnamed_controls(page) == []

        page.get_by_role("button", name="Start it now").click()
        page.locator("dialog#confirm").get_by_role("button", name="Start now").click()
        page.wait_for_url(re.compile(r"/console/campaigns/\d+$"))
        campaign_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("main [role=status]")).to_contain_text("Queued")
        # The page follows the campaign by itself (no reload) until it completes.
        expect(page.locator("#live .state").first).to_have_text("completed", timeout=WAIT_MS)
        # Said once to screen readers, on the page's polite status line.
        expect(page.locator("#announce")).to_have_text(re.compile(r"\(#\d+\) is completed$"))
        bar = page.locator("#live [role=progressbar]")
        expect(bar).to_have_attribute("aria-valuemax", "190")
        expect(bar).to_have_attribute("aria-valuenow", "190")
        failures = page.locator("section", has=page.get_by_role("heading", name="Not reached"))
        expect(failures.get_by_role("cell", name=re.compile("131026|130472")).first).to_be_visible()
        merges = page.locator("section", has=page.get_by_role("heading", name="Identity merges"))
        expect(merges.locator("tbody tr")).to_have_count(5)
        rejects = page.locator("section", has=page.get_by_role("heading", name="Rejected rows"))
        expect(rejects.locator("tbody tr")).to_have_count(5)
        expect(page.locator(".chart svg")).to_be_visible()
        # No whole phone number on the page: the example's are all +46/+47 and 8+ digits.
        assert not re.search(r"\+4[67]\d{8}", page.content())
        # No action is offered on a completed campaign.
        expect(page.get_by_role("button", name="Pause")).to_have_count(0)
        assert unnamed_controls(page) == []
        shot = screenshot(page, "campaign")
        page.set_viewport_size({"width": 1280, "height": 1400})
        page.reload()  # without the one-time "Queued" notice
        # The top of the page, as docs/console.png shows it (copied from here by hand:
        # a test run leaves the checkout as it was).
        page.screenshot(path=str(shot.with_name("console-readme.png")))

        with page.expect_download() as download:
            page.get_by_role("link", name="report.csv").click()
        report = Path(download.value.path()).read_text()
        rows = list(csv.DictReader(io.StringIO(report)))
        assert len(rows) == 195  # 190 people and the 5 rows merged into them
        assert any(re.fullmatch(r"\+4[67]\d{8,9}", r["destination"] or "") for r in rows)
        with page.expect_download() as download:
            page.get_by_role("link", name="rejects.csv").click()
        assert len(Path(download.value.path()).read_text().strip().splitlines()) == 6

        # The same files again, scheduled for tomorrow: it waits, with its forecast.
        page.get_by_role("navigation").get_by_role("link", name="New campaign").click()
        page.get_by_label("Campaign files", exact=True).set_input_files(files)
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        page.get_by_label("Send at (UTC, only to schedule)").fill(f"{tomorrow:%Y-%m-%dT%H:%M}")
        page.get_by_role("button", name="Schedule").click()
        page.wait_for_url(re.compile(r"/console/campaigns/\d+$"))
        expect(page.locator("main [role=status]")).to_contain_text("Scheduled")
        expect(page.locator("#live .state").first).to_have_text("scheduled")
        expect(page.get_by_text("190 people would be sent")).to_be_visible()
        expect(page.get_by_role("button", name="Cancel campaign")).to_be_visible()

        page.get_by_role("link", name="All campaigns").click()
        row = page.locator(f"tr[data-campaign='{campaign_id}']")
        expect(row).to_contain_text("completed")
        expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "190")
        expect(page.locator("tr[data-state=scheduled]")).to_have_count(1)
        assert unnamed_controls(page) == []
        screenshot(page, "list")
    assert shot.exists()


def test_an_operator_pauses_resumes_and_cancels_a_campaign_from_its_page(
    stack: dict[str, str], tmp_path: Path
) -> None:
    base = internal_url(tmp_path / "logs")
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "campaign.yaml").write_text(PERSONAL_SPEC.replace("Personal", "Winter letters"))
    rows = "\n".join(f"+479{n:07d},P{n}" for n in range(1000001, 1000001 + SLOW_PEOPLE))
    (folder / "people.csv").write_text(f"phone,first_name\n{rows}\n")
    with chromium() as browser, signed_in(browser, base, api_key(stack, "ops", "send")) as page:
        page.goto("/console/new")
        page.get_by_label("Campaign files", exact=True).set_input_files(
            [str(folder / "campaign.yaml"), str(folder / "people.csv")]
        )
        page.get_by_role("button", name="Start now").click()
        page.wait_for_url(re.compile(r"/console/campaigns/\d+$"))
        expect(page.locator("#live .state").first).to_have_text("sending", timeout=WAIT_MS)
        expect(page.get_by_role("button", name="Pause", exact=True)).to_be_visible()

        assert unnamed_controls(page) == []
        # By keyboard: Enter on Pause asks first; Escape answers no and leaves it sending,
        # the focus back on the button.
        page.get_by_role("button", name="Pause", exact=True).focus()
        page.keyboard.press("Enter")
        expect(page.locator("dialog#confirm")).to_be_visible()
        expect(page.locator("dialog#confirm")).to_contain_text("Pause this campaign?")
        page.keyboard.press("Escape")
        expect(page.locator("dialog#confirm")).not_to_be_visible()
        expect(page.get_by_role("button", name="Pause", exact=True)).to_be_focused()
        assert state_shown(page) == "sending"

        confirm(page, "Pause", "Pause")
        expect(page.locator("main [role=status]")).to_contain_text("Paused")
        expect(page.locator("#live .state").first).to_have_text("paused")
        expect(page.get_by_role("button", name="Resume", exact=True)).to_be_visible()
        screenshot(page, "paused")
        bar = page.locator("#live [role=progressbar]")
        held = int(bar.get_attribute("aria-valuenow") or 0)
        assert held < SLOW_PEOPLE

        confirm(page, "Resume", "Resume")
        expect(page.locator("main [role=status]")).to_contain_text("Resumed")
        expect(page.locator("#live .state").first).to_have_text("sending")
        # It goes on: the live bar moves past where the pause left it.
        page.wait_for_function(
            "held => Number(document.querySelector('#live [role=progressbar]')"
            ".getAttribute('aria-valuenow')) > held",
            arg=held,
            timeout=WAIT_MS,
        )
        confirm(page, "Cancel campaign", "Cancel campaign")
        expect(page.locator("main [role=status]")).to_contain_text("Cancelled")
        expect(page.locator("#live .state").first).to_have_text("cancelled")
        expect(page.get_by_role("button", name="Resume")).to_have_count(0)


def test_a_read_only_key_sees_no_actions_and_is_refused_a_post_as_is_a_post_without_the_csrf_token(
    stack: dict[str, str], tmp_path: Path
) -> None:
    base = internal_url(tmp_path / "logs")
    folder = tmp_path / "paused"
    folder.mkdir()
    (folder / "campaign.yaml").write_text(PERSONAL_SPEC)
    rows = "\n".join(f"+479{n:07d},P{n}" for n in range(1000001, 1000001 + SLOW_PEOPLE))
    (folder / "people.csv").write_text(f"phone,first_name\n{rows}\n")
    with chromium() as browser:
        with signed_in(browser, base, api_key(stack, "ops", "send")) as page:
            page.goto("/console/new")
            page.get_by_label("Campaign files", exact=True).set_input_files(
                [str(folder / "campaign.yaml"), str(folder / "people.csv")]
            )
            page.get_by_role("button", name="Start now").click()
            page.wait_for_url(re.compile(r"/console/campaigns/\d+$"))
            path = page.url.removeprefix(base)
            expect(page.locator("#live .state").first).to_have_text("sending", timeout=WAIT_MS)
            # The list follows it too, without reloading the page.
            page.get_by_role("link", name="All campaigns").click()
            bar = page.locator("tr[data-state=sending] [role=progressbar]")
            before = int(bar.get_attribute("aria-valuenow") or 0)
            page.evaluate("window.notReloaded = true")
            page.wait_for_function(
                "before => Number(document.querySelector('tr[data-state=sending] "
                "[role=progressbar]').getAttribute('aria-valuenow')) > before",
                arg=before,
                timeout=WAIT_MS,
            )
            assert page.evaluate("window.notReloaded") is True
            page.goto(path)
            # A post with the session's cookie but not its CSRF token is refused.
            refused = page.request.post(f"{path}/pause", form={"csrf": "forged"})
            assert refused.status == 403, refused.text()
            assert "CSRF" in refused.text()
            assert state_shown(page) == "sending"
            confirm(page, "Pause", "Pause")
            expect(page.locator("#live .state").first).to_have_text("paused")

        viewer = api_key(stack, "viewer", "read")
        with signed_in(browser, base, viewer, by_link=True) as page:
            expect(page.get_by_text("(read-only)")).to_be_visible()
            expect(page.get_by_role("link", name="New campaign")).to_have_count(0)
            page.goto(path)
            expect(page.locator("#live .state").first).to_have_text("paused")
            expect(page.locator("#live form button")).to_have_count(0)
            expect(page.get_by_role("link", name="report.csv")).to_be_visible()
            screenshot(page, "read-only")
            csrf = page.locator("input[name=csrf]").first.get_attribute("value")
            answer = page.request.post(f"{path}/resume", form={"csrf": csrf or ""})
            assert answer.status == 403, answer.text()
            assert page.request.get("/console/new").status == 403
            page.reload()
            assert state_shown(page) == "paused"
            # Signing out ends the session: the console asks for a key again.
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/console/login")
            page.goto("/console/")
            assert "/console/login" in page.url
