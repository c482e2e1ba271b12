"""``Reader.pairs`` (the vote decoder's loop) reads exactly what ``text`` and ``blob`` calls
read, and fails where they fail."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.encoding import Reader, Writer
from bridge.errors import DecodeError

texts = st.one_of(st.text(max_size=10), st.binary(max_size=6).map(lambda b: b.decode("latin-1")))
valid = st.lists(st.tuples(texts, st.binary(max_size=20)), max_size=5).map(
    lambda pairs: (len(pairs), b"".join(Writer().text(t).blob(b).finish() for t, b in pairs))
)
mangled = st.tuples(st.integers(0, 5), st.binary(max_size=60))


def one_by_one(data: bytes, n: int) -> object:
    r = Reader(data)
    try:
        pairs = [(r.text(8), r.blob(16)) for _ in range(n)]
        r.done()
        return pairs
    except DecodeError as exc:
        return str(exc)


def in_one_loop(data: bytes, n: int) -> object:
    r = Reader(data)
    try:
        pairs = list(r.pairs(n, 8, 16))
        r.done()
        return pairs
    except DecodeError as exc:
        return str(exc)


@given(st.one_of(valid, mangled.map(lambda m: (m[0], m[1]))))
def test_pairs_matches_text_and_blob(case: tuple[int, bytes]) -> None:
    n, data = case
    assert in_one_loop(data, n) == one_by_one(data, n)
