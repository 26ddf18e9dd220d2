"""The embedded stack's stop has a bound: past it, its worker and Redis are killed
and the process ends at once (``EmbeddedStack._stop_now``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path


def test_a_stop_past_its_deadline_kills_the_stack_and_ends_the_process(tmp_path: Path) -> None:
    pids = tmp_path / "embedded.pids"  # EmbeddedStack.pids_file
    script = textwrap.dedent(
        f"""
        import subprocess
        from pathlib import Path
        from dispatcher.interfaces.embedded import EmbeddedStack

        stack = EmbeddedStack.__new__(EmbeddedStack)
        quiet = dict(start_new_session=True, stdout=subprocess.DEVNULL)
        stack._worker = subprocess.Popen(["sleep", "300"], **quiet)
        stack._redis = subprocess.Popen(["sleep", "300"], **quiet)
        stack.state_dir = Path({str(tmp_path)!r})
        stack.pids_file.write_text("{{}}")
        print(stack._worker.pid, stack._redis.pid, flush=True)
        stack._stop_now()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 143, done.stderr
    assert "ended at once" in done.stderr
    for pid in map(int, done.stdout.split()):
        assert _ended(pid), pid
    assert not pids.exists()


def _ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it (killed either way)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False
