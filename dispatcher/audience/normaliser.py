"""Phone numbers normalised in a child process, so a big list uses both cores.

Normalising is the costly part of reading a recipients file (about 4 us a number,
``dispatcher.audience.phone``); the rest (CSV, identity merging) stays in the parent. A
child process started with ``subprocess`` (not ``multiprocessing``: a Celery prefork
worker's pool processes may not have children of that kind) reads chunks of
``(cell, region)`` pairs and answers each with the E.164 numbers, in order. Frames
are a length and a pickle, between this parent and its own child only.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from dispatcher.errors import RecipientsError

_STOP = None


class Normaliser:
    """The parent's end: ``send`` chunks, then ``receive`` their answers in order."""

    def __init__(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.audience.normaliser"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        self._out: IO[bytes] = self._child.stdout
        # A sending thread: the child's answers fill the pipe while we write.
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._sender = threading.Thread(
            target=_send_all, args=(self._queue, self._child.stdin), daemon=True
        )
        self._sender.start()

    def send(self, cells: Sequence[tuple[str, str | None]]) -> None:
        self._queue.put(pickle.dumps(list(cells), protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self) -> list[str | None]:
        answer = _read_frame(self._out)
        if answer is None:
            raise RecipientsError("the phone number normaliser stopped unexpectedly")
        result: list[str | None] = pickle.loads(answer)  # our own child
        return result

    def close(self) -> None:
        self._queue.put(_STOP)
        self._sender.join(timeout=5)
        try:
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._out.close()

    def __enter__(self) -> Normaliser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _send_all(chunks: queue.SimpleQueue[bytes | None], pipe: IO[bytes]) -> None:
    try:
        while (chunk := chunks.get()) is not _STOP:
            pipe.write(len(chunk).to_bytes(8, "little"))
            pipe.write(chunk)
            pipe.flush()
    except (BrokenPipeError, OSError):
        pass  # the child died; ``receive`` reports it
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def _read_frame(pipe: IO[bytes]) -> bytes | None:
    header = pipe.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "little")
    data = pipe.read(size)
    return data if len(data) == size else None


def main() -> None:
    """The child: answer every chunk until the parent closes the pipe."""
    import gc

    from dispatcher.audience.recipients import normalise_msisdn

    gc.disable()  # short-lived strings only; nothing to collect
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while (frame := _read_frame(source)) is not None:
        cells: list[tuple[str, Any]] = pickle.loads(frame)  # our own parent
        answer = pickle.dumps(
            [normalise_msisdn(cell, region) for cell, region in cells],
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        sink.write(len(answer).to_bytes(8, "little"))
        sink.write(answer)
        sink.flush()


if __name__ == "__main__":
    main()
