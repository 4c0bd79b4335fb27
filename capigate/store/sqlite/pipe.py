"""The wire of the SQLite writer process's pipes (writer_process.py): the messages each way, as
msgpack arrays, and their codecs, built once. A module of its own: the modules mypyc compiles
declare no Struct (capigate/native.py), and writer_process.py is one of them."""

from __future__ import annotations

import msgspec

from capigate.events import NewEvent
from capigate.store.base import JournalRecord

__all__ = [
    "CallMsg",
    "Group",
    "IngestMsg",
    "IngestRead",
    "Ingested",
    "JobMsg",
    "PipedEvent",
    "Raised",
    "Ready",
    "RecordMsg",
    "Returned",
    "StartFailed",
    "StopMsg",
    "decode_answer",
    "decode_frame",
    "decode_job",
    "encode",
    "encoder",
]


# --- the wire: gateway -> writer ------------------------------------------------


class PipedEvent(NewEvent, kw_only=True, array_like=True):
    """A NewEvent as the writer process decodes it from its pipe (writer_process.py): its
    payload made a bytearray by the decoder, which sqlite3 binds as it is, where a bytes
    payload is copied into one first (rows.NULL says why). Declared here, not beside the
    ingest that binds it: mypyc compiles ingest.py, and drops a class statement's keywords."""

    payload: bytearray  # type: ignore[assignment]


class IngestMsg(msgspec.Struct, tag="i", array_like=True):
    id: int
    request_id: str
    received_at_ms: int
    events: list[NewEvent]


class IngestRead(IngestMsg, tag="i", array_like=True):
    """An IngestMsg as the writer process reads it: its events PipedEvents."""

    events: list[PipedEvent]  # type: ignore[assignment]


class RecordMsg(msgspec.Struct, tag="r", array_like=True):
    id: int
    records: list[JournalRecord]  # a plain RequestRecord comes back as one without body or keys


class CallMsg(msgspec.Struct, tag="c", array_like=True):
    id: int
    call: bytes  # a pickled jobs.Call or functools.partial


class StopMsg(msgspec.Struct, tag="s", array_like=True):
    pass


JobMsg = IngestMsg | RecordMsg | CallMsg | StopMsg


# --- the wire: writer -> gateway ------------------------------------------------


class Ready(msgspec.Struct, tag="ready", array_like=True):
    memory_statistics: bool  # SQLite's, left on in the child (memstatus.py)


class StartFailed(msgspec.Struct, tag="failed", array_like=True):
    error: bytes  # pickled


class Ingested(msgspec.Struct, tag="i", array_like=True):
    id: int
    stored: int
    duplicates: list[int]


class Returned(msgspec.Struct, tag="v", array_like=True):
    id: int
    value: bytes | None  # pickled; None for None


class Raised(msgspec.Struct, tag="e", array_like=True):
    id: int
    error: bytes  # pickled


class Group(msgspec.Struct, tag="g", array_like=True):
    """One group commit's outcomes."""

    jobs: int
    outcomes: list[Ingested | Returned | Raised]


encoder = msgspec.msgpack.Encoder()
encode = encoder.encode
decode_frame = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode
decode_job = msgspec.msgpack.Decoder(IngestRead | RecordMsg | CallMsg | StopMsg).decode
decode_answer = msgspec.msgpack.Decoder(Ready | StartFailed | Group).decode
