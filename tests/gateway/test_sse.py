"""gateway.sse.SSEDecoder: line endings, comments, multi-line data, event names, and any chunking."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sse import DONE, SSEDecoder, SSEEvent, encode


def decode_all(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_each_line_ending_separates_lines_and_a_blank_line_dispatches(eol):
    raw = b"data: one" + eol + eol + b"data: two" + eol + eol
    decoder = SSEDecoder()
    events = decoder.feed(raw)
    events += decoder.close()
    assert events == [SSEEvent(b"one"), SSEEvent(b"two")]


def test_mixed_line_endings_in_one_stream():
    events = decode_all(b"data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n")
    assert [e.data for e in events] == [b"a", b"b", b"c", b"d"]


def test_lf_stream_dispatches_without_waiting_for_close():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a":1}\n\n') == [SSEEvent(b'{"a":1}')]
    assert decoder.close() == []


def test_crlf_split_between_cr_and_lf_is_one_line_end_not_two():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # If the CR had been taken as a line end, this LF would be a blank line and dispatch too early.
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [SSEEvent(b"a\nb")]


def test_comments_are_ignored():
    raw = b": keep-alive\n\n:another\ndata: x\n: in the middle\ndata: y\n\n"
    assert decode_all(raw) == [SSEEvent(b"x\ny")]


def test_a_comment_alone_dispatches_nothing():
    assert decode_all(b": ping\n\n: ping\r\n\r\n") == []


def test_multi_line_data_is_joined_with_newline():
    assert decode_all(b"data: first\ndata: second\ndata:third\ndata\n\n") == [
        SSEEvent(b"first\nsecond\nthird\n")
    ]


def test_only_one_leading_space_is_stripped_from_a_value():
    assert decode_all(b"data:  two spaces\n\n") == [SSEEvent(b" two spaces")]
    assert decode_all(b"data:no space\n\n") == [SSEEvent(b"no space")]


def test_colons_inside_data_are_kept():
    assert decode_all(b'data: {"url": "https://x"}\n\n') == [SSEEvent(b'{"url": "https://x"}')]


def test_event_names_are_read_and_reset_after_each_event():
    raw = b"event: message_start\ndata: {}\n\ndata: plain\n\nevent: ping\r\ndata: 1\r\n\r\n"
    assert decode_all(raw) == [
        SSEEvent(b"{}", "message_start"),
        SSEEvent(b"plain", None),
        SSEEvent(b"1", "ping"),
    ]


def test_unknown_fields_are_ignored():
    assert decode_all(b"id: 7\nretry: 1000\nfoo: bar\ndata: x\n\n") == [SSEEvent(b"x")]


def test_close_dispatches_a_last_event_without_its_blank_line():
    assert decode_all(b"data: a\n\ndata: tail") == [SSEEvent(b"a"), SSEEvent(b"tail")]
    assert decode_all(b"data: tail\r") == [SSEEvent(b"tail")]
    assert decode_all(b"data: tail\n") == [SSEEvent(b"tail")]


def test_close_on_an_empty_stream_gives_nothing():
    assert decode_all() == []
    assert decode_all(b"") == []


def test_byte_at_a_time_equals_whole():
    raw = b"event: x\r\ndata: \xc3\xa9t\xc3\xa9\r\n\r\n: c\rdata: [DONE]\r\r"
    whole = decode_all(raw)
    assert whole == [SSEEvent("été".encode(), "x"), SSEEvent(b"[DONE]")]
    assert decode_all(*[raw[i : i + 1] for i in range(len(raw))]) == whole


def test_encode_round_trips_through_the_decoder():
    obj = {"id": "c1", "choices": [{"delta": {"content": "line\nbreak\r"}}]}
    events = decode_all(encode(obj) + DONE)
    assert orjson.loads(events[0].data) == obj
    assert events[1].data == b"[DONE]"


# --- property: any chunking gives the same events ----------------------------------------------------

_LINE_TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=12)
_EOL = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def event_streams(draw) -> tuple[bytes, list[SSEEvent]]:
    """An encoded stream with random line endings and comments, and the events it carries."""
    expected: list[SSEEvent] = []
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            lines.append(":" + draw(_LINE_TEXT))
        name = draw(st.none() | _LINE_TEXT)
        if name is not None:
            lines.append("event: " + name)
        data = draw(st.lists(_LINE_TEXT, min_size=1, max_size=4))
        for i, value in enumerate(data):
            lines.append("data: " + value)
            if i == 0 and draw(st.booleans()):
                lines.append(": comment between data lines")
        lines.append("")  # the blank line that dispatches
        expected.append(SSEEvent("\n".join(data).encode(), name))
    out: list[str] = []
    previous_eol = ""
    for line in lines:
        eol = draw(_EOL)
        if previous_eol == "\r" and line == "" and eol == "\n":
            eol = "\r"  # CR then a bare LF would be one CRLF, not a blank line: not the stream we meant
        out.append(line + eol)
        previous_eol = eol
    return "".join(out).encode(), expected


@settings(max_examples=400, deadline=None)
@given(stream=event_streams(), data=st.data())
def test_any_split_of_the_bytes_gives_the_same_events_as_the_whole(stream, data):
    raw, expected = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12), label="cuts"))
    bounds = [0, *cuts, len(raw)]
    pieces = [raw[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    whole = decode_all(raw)
    assert whole == expected
    assert decode_all(*pieces) == whole


@settings(max_examples=200, deadline=None)
@given(stream=event_streams())
def test_splitting_inside_every_crlf_gives_the_same_events(stream):
    raw, expected = stream
    pieces: list[bytes] = []
    start = 0
    for i in range(1, len(raw)):
        if raw[i - 1 : i + 1] == b"\r\n":
            pieces.append(raw[start:i])
            start = i
    pieces.append(raw[start:])
    assert decode_all(*pieces) == expected


@settings(max_examples=200, deadline=None)
@given(stream=event_streams(), data=st.data())
def test_events_are_dispatched_no_later_than_the_byte_after_their_blank_line(stream, data):
    """Incremental: once the next byte has arrived, a finished event is out, without waiting for close."""
    raw, expected = stream
    decoder = SSEDecoder()
    got: list[SSEEvent] = []
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    got += decoder.feed(raw[:cut])
    got += decoder.feed(raw[cut:])
    got += decoder.feed(b"x")  # any further byte settles a trailing CR
    assert got == expected
