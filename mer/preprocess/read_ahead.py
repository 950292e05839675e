"""Frames decoded in a thread of their own while the caller works on earlier ones.

Decoding (OpenCV: the codec, the colour conversion, the resize) releases the GIL, and a
recording's face work and windows run in one thread, so on two cores the decoder costs
the caller almost nothing. Only the reading moves: frames arrive in their order,
unchanged, so results do not depend on timing. The queue is bounded, so memory stays flat
however long the recording."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterable[T], ahead: int = 16) -> Iterator[T]:
    """`items`, produced in a background thread at most `ahead` ahead of the consumer. An
    error while producing is raised here, at its place in the sequence; a consumer that
    stops early (or fails) stops the producer."""
    slots: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put((item, None)):
                    break
            else:
                put((_END, None))
        except BaseException as error:  # handed to the consumer, raised there
            put((_END, error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator left mid-way runs its own clean-up (a capture released)

    producer = threading.Thread(target=produce, name="read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error = slots.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        producer.join()
