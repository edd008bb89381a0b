"""Rendering a snapshot to the Prometheus text format and OpenMetrics, fast.

prometheus-client's `generate_latest` builds a Sample and escapes every label of every sample:
about 1 s for 10,000 workers. Worker series share one label set per worker across every
per-worker family (the workers' own, and the WorkerFamily specs the account reads' views
declare), so here each worker's labels are escaped once and every line is one formatted string.
The output is byte-for-byte what prometheus-client produces from the same snapshot (a test holds
the two together: tests/reference.py); the few target and build-info families still go through
prometheus-client (`ClientRenderedFamilies`).

Only what Prometheus asks for, OpenMetrics compressed with gzip, is rendered eagerly, one family at
a time into a zlib stream, so no render ever holds the whole uncompressed exposition (14 MB at
10,000 workers). The text format and the uncompressed forms are produced from the same snapshot
when first asked for, then kept until the next render replaces the Exposition.

The exporter's own `process_*` and `python_*` families are the exception: a dozen samples,
read and written per scrape (two reads of /proc, numbers written into text fixed at start-up)
and appended to the cached bytes, after which OpenMetrics' `# EOF` comes. The cached gzip
streams are left open (sync-flushed), so a scrape adds those few lines as a stored block and
the gzip trailer, and the response is still one gzip member.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import struct
import threading
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest as generate_text
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from .metrics import (
    DEPLOYMENT_FAMILY,
    ROW_DEPLOYMENT,
    ROW_ENDPOINT_ID,
    ROW_ENDPOINT_NAME,
    ROW_FIGURES,
    ROW_GROUP_ID,
    ROW_ID,
    ROW_STATUS,
    STATUS_FAMILY,
    WORKER_FAMILIES,
    ClientRenderedFamilies,
    FlatRow,
    Snapshot,
    View,
)
from .parsing import WORKER_METRICS
from .worker_families import WORKER_LABELS, Sample, WorkerFamily

log = logging.getLogger(__name__)
INF = float("inf")

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The worker families are rendered from Worker.figures by index: the two orders must agree.
assert tuple(metric for metric, _ in WORKER_FAMILIES) == WORKER_METRICS
# zlib level 4: two thirds of level 6's time for 2% more bytes (10,000 workers: 0.11 s and
# 1.28 MB against 0.17 s and 1.26 MB; level 3 took 0.07 s but sent 1.43 MB, and every scrape
# pays for the bytes).
GZIP_LEVEL = 4


# Every render runs on this one thread: renders never overlap, and their large transient
# buffers all come from one malloc arena instead of one per executor thread.
RENDERER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")


EOF = b"# EOF\n"


class Body:
    """One format's bytes as an open gzip stream (sync-flushed: complete so far, and ending on
    a byte boundary), with the CRC-32 and length of what it holds, so a scrape can append its
    few lines as stored (uncompressed) deflate blocks and the gzip trailer: the answer is still
    one gzip member, and no compressor is copied or kept. The uncompressed bytes are made only
    when asked for."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        crc = size = 0
        out = []
        for piece in pieces:
            out.append(compressor.compress(piece))
            crc = zlib.crc32(piece, crc)
            size += len(piece)
        out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        self.gzip_head = b"".join(out)
        self._crc, self._size = crc, size

    def raw(self) -> bytes:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(self.gzip_head)

    def gzip_chunks(self, tail: bytes) -> tuple[bytes, bytes]:
        """The cached stream followed by `tail` and the end of the member."""
        return self.gzip_head, stored_end(tail, self._crc, self._size)


def stored_end(tail: bytes, crc: int, size: int) -> bytes:
    """`tail` as the last, stored deflate blocks of a stream left on a byte boundary, and the
    gzip trailer (RFC 1952: CRC-32 and length mod 2**32 of all the member holds; RFC 1951
    3.2.4: a stored block is a 3-bit header padded to a byte, LEN, its complement, the bytes).
    A scrape's tail is a couple of KB: storing it costs less than compressing it."""
    out = []
    view = memoryview(tail)
    while True:
        block, view = view[:STORED_MAX], view[STORED_MAX:]
        final = not view
        out.append(STORED_HEADER.pack(final, len(block), len(block) ^ 0xFFFF))
        out.append(block)
        if final:
            break
    out.append(GZIP_TRAILER.pack(zlib.crc32(tail, crc), (size + len(tail)) & 0xFFFFFFFF))
    return b"".join(out)


STORED_MAX = 0xFFFF  # bytes in one stored block at most
STORED_HEADER = struct.Struct("<BHH")  # BFINAL and BTYPE 00 (stored) padded to a byte, LEN, NLEN
GZIP_TRAILER = struct.Struct("<II")  # CRC-32, ISIZE


def no_tail(openmetrics: bool) -> bytes:
    return EOF if openmetrics else b""


class Exposition:
    """One snapshot's exposition: OpenMetrics as an open gzip stream, rendered eagerly, and the
    other forms (text format, uncompressed), produced from the same snapshot when first asked
    for and then kept; a scrape holding this object can never mix two snapshots. OpenMetrics is
    kept without its `# EOF`: it comes after what a scrape appends."""

    def __init__(self, snapshot: Snapshot, openmetrics: Body) -> None:
        self.snapshot = snapshot
        self._bodies = {True: openmetrics}  # openmetrics? -> Body
        self._raw: dict[bool, bytes] = {}  # openmetrics? -> uncompressed, made on demand
        self._lock = threading.Lock()

    def body(self, openmetrics: bool) -> Body:
        """A format's gzip stream, rendered now if it never was (blocking: a render at 10,000
        workers takes a fraction of a second; `select` runs it off the loop)."""
        with self._lock:  # two scrapes asking at once: one renders, the other waits for it
            body = self._bodies.get(openmetrics)
            if body is None:
                pieces = _pieces(self.snapshot, openmetrics, eof=False)
                body = self._bodies[openmetrics] = Body(pieces)
            return body

    def raw(self, openmetrics: bool) -> bytes:
        """A format uncompressed (OpenMetrics without `# EOF`), made now if it never was."""
        found = self._raw.get(openmetrics)
        if found is None:
            found = self._raw[openmetrics] = self.body(openmetrics).raw()
        return found

    @property
    def text(self) -> bytes:
        return self.raw(openmetrics=False)

    @property
    def openmetrics(self) -> bytes:
        return self.raw(openmetrics=True) + EOF

    def gzipped(self, openmetrics: bool) -> bytes:
        """A whole gzip member of a format (OpenMetrics with its `# EOF`)."""
        return b"".join(self.body(openmetrics).gzip_chunks(no_tail(openmetrics)))

    @property
    def openmetrics_gzip(self) -> bytes:
        return self.gzipped(openmetrics=True)

    @property
    def text_gzip(self) -> bytes:
        return self.gzipped(openmetrics=False)

    async def select(
        self, accept: str, accept_encoding: str, tail: Callable[[bool], bytes] = no_tail
    ) -> tuple[tuple[bytes, bytes], str, str | None]:
        """(body chunks, Content-Type, Content-Encoding) for a request's Accept headers; a form
        not yet produced is produced on the render thread, off the event loop.

        `tail(openmetrics)` renders what follows the cached families; in OpenMetrics it must
        end with `# EOF`.
        """
        use_openmetrics = wants_openmetrics(accept)
        use_gzip = "gzip" in accept_encoding.lower()
        loop = asyncio.get_running_loop()
        content_type = OPENMETRICS_TYPE if use_openmetrics else TEXT_TYPE
        if use_gzip:
            body = self._bodies.get(use_openmetrics)
            if body is None:
                body = await loop.run_in_executor(RENDERER, self.body, use_openmetrics)
            return body.gzip_chunks(tail(use_openmetrics)), content_type, "gzip"
        raw = self._raw.get(use_openmetrics)
        if raw is None:
            raw = await loop.run_in_executor(RENDERER, self.raw, use_openmetrics)
        return (raw, tail(use_openmetrics)), content_type, None


class RuntimeFamilies:
    """`process_*` (CPU, memory, file descriptors, start time) and `python_*` (version, GC), as
    every client library exports them: read when a scrape asks and written byte-identical to
    prometheus-client at a fraction of its cost.

    prometheus-client's collectors build the families once, to fix their text (HELP, TYPE, names
    and labels of every sample); a scrape then reads only the numbers (/proc/<pid>/stat and the
    fd directory as the collectors read them, the descriptor limit from getrlimit, the one
    /proc/<pid>/limits shows, and gc.get_stats()) and writes them into that text. Should the
    numbers not line up with the collectors' samples (no /proc, or another process's), every
    scrape goes through the collectors instead.
    """

    def __init__(self, proc: str = "/proc", pid: str = "self") -> None:
        process = ProcessCollector(registry=None, pid=lambda: pid, proc=proc)
        self._collectors = (
            process,
            PlatformCollector(registry=None),
            GCCollector(registry=CollectorRegistry(auto_describe=False)),  # it must register
        )
        self._stat = os.path.join(proc, pid, "stat")
        self._fds = os.path.join(proc, pid, "fd")
        # The collector's own clock tick, boot time and page size, so the numbers are computed
        # exactly as it computes them (private names: without them, no fast path).
        self._ticks = getattr(process, "_ticks", None)
        self._btime = getattr(process, "_btime", None)
        self._pagesize = getattr(process, "_pagesize", None)
        families = self.collect()
        fixed = [sample.value for family in families for sample in family.samples]
        self._static = fixed[6:7]  # python_info's 1.0
        self._templates: dict[bool, tuple[str, ...]] | None = None
        known = self._ticks and self._btime and self._pagesize
        values = self._read() if known else None
        # The numbers line up with the samples: as many, and the fixed ones equal (start time,
        # descriptor limit, python_info).
        if values is not None and len(values) == len(fixed) and values[5:7] == fixed[5:7]:
            self._templates = {om: _template(families, om) for om in (False, True)}

    def collect(self) -> list[Metric]:
        return [family for collector in self._collectors for family in collector.collect()]

    def _read(self) -> list[float] | None:
        """The samples' values in the collectors' order, read as they read them; None when
        /proc cannot be read."""
        try:
            parts = _read_file(self._stat).split(b")")[-1].split()
            open_fds = len(os.listdir(self._fds))
        except OSError:
            return None
        # The soft limit /proc/<pid>/limits shows as "Max open files", without reading it:
        # after an idle second each read of /proc costs a scrape about 0.1 ms.
        max_fds = float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        ticks = self._ticks
        values = [
            float(parts[20]),
            float(parts[21]) * self._pagesize,
            float(parts[19]) / ticks + self._btime,
            float(parts[11]) / ticks + float(parts[12]) / ticks,
            open_fds,
            max_fds,
            *self._static,
        ]
        stats = gc.get_stats()
        for key in ("collected", "uncollectable", "collections"):
            values.extend(stat[key] for stat in stats)
        return values

    def render(self, openmetrics: bool) -> bytes:
        """These families in one format; OpenMetrics ends with `# EOF`."""
        values = None if self._templates is None else self._read()
        if values is None:
            body = render_simple(self.collect(), openmetrics)
        else:
            body = _fill(self._templates[openmetrics], values)
        return body + EOF if openmetrics else body


def _read_file(path: str) -> bytes:
    """A small file of /proc, read whole (one read: /proc's stat and limits are a page)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _template(families: Iterable[Metric], openmetrics: bool) -> tuple[str, ...]:
    """What render_simple writes around each sample value: the text before the first value,
    between each two, and after the last."""
    pieces = []
    text = ""
    for before, value in _sample_text(families, openmetrics):
        if value is None:
            return (*pieces, text + before)
        pieces.append(text + before)
        text = "\n"
    raise AssertionError("_sample_text ends with the text after the last sample")


def _fill(template: tuple[str, ...], values: Iterable[float]) -> bytes:
    fmt = floatToGoString
    text = [piece + fmt(value) for piece, value in zip(template, values, strict=False)]
    text.append(template[-1])
    return "".join(text).encode()


def render_simple(families: Iterable[Metric], openmetrics: bool) -> bytes:
    """Gauge and counter families without timestamps, exemplars or `_created` samples, as
    prometheus-client renders them (a test holds the two together)."""
    fmt = floatToGoString
    lines = [
        before if value is None else f"{before}{fmt(value)}\n"
        for before, value in _sample_text(families, openmetrics)
    ]
    return "".join(lines).encode()


def _sample_text(
    families: Iterable[Metric], openmetrics: bool
) -> Iterator[tuple[str, float | None]]:
    """(the text before a sample's value, the value) of every sample, then (whatever text
    follows the last sample, None): a family's HELP and TYPE lines come before its first
    sample, or after the previous family's last one if it has none."""
    header = ""
    for family in families:
        if family.type not in ("gauge", "counter"):
            raise ValueError(f"{family.name}: {family.type} is not rendered here")
        name = family.name
        if family.type == "counter" and not openmetrics:
            name += "_total"
        header += (
            f"# HELP {name} {_help_text(family.documentation, openmetrics)}\n"
            f"# TYPE {name} {family.type}\n"
        )
        for sample in family.samples:
            if sample.labels:
                pairs = sorted(sample.labels.items())
                labels = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
                yield f"{header}{sample.name}{{{labels}}} ", sample.value
            else:
                yield f"{header}{sample.name} ", sample.value
            header = ""
    yield header, None


def wants_openmetrics(accept: str) -> bool:
    """Whether the Accept header asks for OpenMetrics (Prometheus asks for it first)."""
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if media != "application/openmetrics-text":
            continue
        quality = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            continue
    return False


def build_exposition(snapshot: Snapshot) -> Exposition:
    """Render and compress one snapshot's OpenMetrics; CPU-bound, meant for the RENDERER."""
    return Exposition(snapshot, Body(_pieces(snapshot, openmetrics=True, eof=False)))


def render(
    snapshot: Snapshot, openmetrics: bool, families: Iterable[tuple[str, str, str]] | None = None
) -> bytes:
    """The full exposition: worker families by the fast path, the rest by prometheus-client."""
    return b"".join(_pieces(snapshot, openmetrics, families))


def _pieces(
    snapshot: Snapshot,
    openmetrics: bool,
    families: Iterable[tuple[str, str, str]] | None = None,
    eof: bool = True,
) -> Iterator[bytes]:
    """The exposition as a few large pieces, one family's worth each, made as they are taken;
    OpenMetrics without its `# EOF` if `eof` is false."""
    if families is None:
        families = _worker_families(snapshot.rows, snapshot.views)
    for name, help_text, body in families:
        yield _help(name, help_text, openmetrics).encode()
        yield body.encode()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClientRenderedFamilies(snapshot))
    generate = generate_openmetrics if openmetrics else generate_text
    last = generate(registry)
    if openmetrics and not eof:
        if not last.endswith(EOF):
            raise ValueError("OpenMetrics rendering does not end with # EOF")
        last = last[: -len(EOF)]
    yield last


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(name: str, text: str, openmetrics: bool) -> str:
    return f"# HELP {name} {_help_text(text, openmetrics)}\n# TYPE {name} gauge\n"


def _help_text(text: str, openmetrics: bool) -> str:
    return _escape(text) if openmetrics else text.replace("\\", r"\\").replace("\n", r"\n")


def _worker_families(
    rows: tuple[FlatRow, ...], views: tuple[View, ...]
) -> Iterator[tuple[str, str, str]]:
    """(name, HELP, sample lines) of every per-worker family, one family at a time (a family's
    lines are dropped before the next family's are made): the workers' figures, status and
    deployment, then each view's WorkerFamily specs, in views' order.

    Labels are sorted by name, as prometheus-client writes them: each worker's two endpoint
    labels (`head`) and two worker labels (`tail`) are escaped once; a labelled family's own
    labels go before, between or after them (WorkerFamily.label_order).
    """
    endpoints: dict[tuple[str, str], str] = {}  # a few hundred endpoints, escaped once each
    heads = [
        endpoints.get(key) or endpoints.setdefault(key, _endpoint_labels(*key))
        for key in ((row[ROW_ENDPOINT_ID], row[ROW_ENDPOINT_NAME]) for row in rows)
    ]
    del endpoints
    tails = [
        f'worker_group_id="{_escape(row[ROW_GROUP_ID])}",worker_id="{_escape(row[ROW_ID])}"'
        for row in rows
    ]
    # Every worker's packed figures side by side: figure i of worker k is table[k * width + i].
    table = array("d", b"".join(row[ROW_FIGURES] for row in rows))
    width = len(WORKER_FAMILIES)
    fmt = go_float
    for index, (metric, help_text) in enumerate(WORKER_FAMILIES):  # the figures' order
        name = f"vastai_worker_{metric}"
        lines = [
            f"{name}{{{head},{tail}}} {fmt(value)}\n"
            for value, head, tail in zip(table[index::width], heads, tails, strict=True)
            if value == value  # not NaN, i.e. not missing
        ]
        yield name, help_text, "".join(lines)
    del table
    for family, column in ((STATUS_FAMILY, ROW_STATUS), (DEPLOYMENT_FAMILY, ROW_DEPLOYMENT)):
        yield _labelled_family(family, _row_samples(rows, column), rows, heads, tails)
    if views:
        yield from _view_families(views, rows, heads, tails)


def _row_samples(rows: tuple[FlatRow, ...], column: int) -> list[Sequence[Sample] | None]:
    """Each row's value in `column` as the one label of a sample of value 1 (None: no sample),
    one sample per distinct value, shared by the rows that have it."""
    shared: dict[str, tuple[Sample]] = {}
    return [
        None if label is None else shared.get(label) or shared.setdefault(label, (((label,), 1.0),))
        for label in (row[column] for row in rows)
    ]


def _view_families(
    views: tuple[View, ...], rows: tuple[FlatRow, ...], heads: list[str], tails: list[str]
) -> Iterator[tuple[str, str, str]]:
    """Each view's WorkerFamily specs, their values joined to the rows by worker id, in the
    rows' order."""
    ids = [row[ROW_ID] for row in rows]
    statuses = dict(zip(ids, (row[ROW_STATUS] for row in rows), strict=True))
    for view in views:
        for series in view.worker_families(statuses):
            family = series.family
            if not series.values:  # the read has nothing (yet): its HELP alone
                yield family.name, family.help, ""
            elif family.labels:
                samples = list(map(series.values.get, ids))
                yield _labelled_family(family, samples, rows, heads, tails)
            else:
                yield _value_family(family, list(map(series.values.get, ids)), heads, tails)


def _value_family(
    family: WorkerFamily, values: list[float | None], heads: list[str], tails: list[str]
) -> tuple[str, str, str]:
    """A family without labels of its own: each worker's value, if it has one (go_float for
    the floats it takes, prometheus-client's format for NaN and ints)."""
    name, fast, exact = family.name, go_float, floatToGoString
    lines = [
        f"{name}{{{head},{tail}}} "
        f"{fast(value) if type(value) is float and value == value else exact(value)}\n"
        for value, head, tail in zip(values, heads, tails, strict=True)
        if value is not None
    ]
    return name, family.help, "".join(lines)


def _labelled_family(
    family: WorkerFamily,
    samples: list[Sequence[Sample] | None],
    rows: tuple[FlatRow, ...],
    heads: list[str],
    tails: list[str],
) -> tuple[str, str, str]:
    """A family with labels of its own: each worker's samples, if it has any. A label of its
    own (a status, old or new) takes few values: its text is made once per value. Several
    (the hardware) rarely repeat together: each line is written from their values, escaped once
    per value."""
    if family.label_order.split:
        body = _split_lines(family, samples, rows)
    elif len(family.labels) == 1:
        body = _one_label_lines(family, samples, heads, tails)
    else:
        body = _labels_lines(family, samples, heads, tails)
    return family.name, family.help, body


def _one_label_lines(
    family: WorkerFamily, samples: list[Sequence[Sample] | None], heads: list[str], tails: list[str]
) -> str:
    order = family.label_order
    [(label, _)] = order.before + order.between + order.after
    texts = _Escaped(f'{label}="{{}}"'.format)  # value -> label="value", escaped
    numbers = _ValueTexts()
    name = family.name
    pairs = (
        (values[0], value, head, tail)
        for found, head, tail in zip(samples, heads, tails, strict=True)
        if found is not None
        for values, value in found
    )
    if order.before:
        lines = [f"{name}{{{texts[v]},{h},{t}}} {numbers[n]}\n" for v, n, h, t in pairs]
    elif order.between:
        lines = [f"{name}{{{h},{texts[v]},{t}}} {numbers[n]}\n" for v, n, h, t in pairs]
    else:
        lines = [f"{name}{{{h},{t},{texts[v]}}} {numbers[n]}\n" for v, n, h, t in pairs]
    return "".join(lines)


def _labels_lines(
    family: WorkerFamily, samples: list[Sequence[Sample] | None], heads: list[str], tails: list[str]
) -> str:
    order = family.label_order
    # One %-template per line, over (head, tail, value, *the family's label values) picked in
    # the order the line writes them.
    template = "".join(
        (
            family.name,
            "{",
            *(f'{label}="%s",' for label, _ in order.before),
            "%s,",
            *(f'{label}="%s",' for label, _ in order.between),
            "%s",
            *(f',{label}="%s"' for label, _ in order.after),
            "} %s\n",
        )
    )
    pick = itemgetter(
        *(3 + index for _, index in order.before),
        0,
        *(3 + index for _, index in order.between),
        1,
        *(3 + index for _, index in order.after),
        2,
    )
    escaped = _Escaped().__getitem__
    numbers = _ValueTexts()
    lines = [
        template % pick((head, tail, numbers[value], *map(escaped, values)))
        for found, head, tail in zip(samples, heads, tails, strict=True)
        if found is not None
        for values, value in found
    ]
    return "".join(lines)


class _Escaped(dict[str, str]):
    """Label values escaped (and put in `form`), once per distinct value in a family's render:
    statuses and hardware repeat across workers."""

    def __init__(self, form: Callable[[str], str] = str) -> None:
        super().__init__()
        self._form = form

    def __missing__(self, value: str) -> str:
        text = self[value] = self._form(_escape(value))
        return text


class _ValueTexts(dict[float, str]):
    """Sample values as prometheus-client writes them, once per distinct value in a family (a
    labelled family's values are mostly 1); equal values are written alike (1 and 1.0 both
    "1.0"), but for zero."""

    def __missing__(self, value: float) -> str:
        fast = type(value) is float and value == value  # go_float takes floats, not NaN
        text = go_float(value) if fast else floatToGoString(value)
        if value:  # 0.0 and -0.0 are one key, written "0.0" and "-0.0"
            self[value] = text
        return text


def _split_lines(
    family: WorkerFamily, samples: list[Sequence[Sample] | None], rows: tuple[FlatRow, ...]
) -> str:
    """The lines of a family whose own labels sort inside a worker's `head` or `tail`: every
    label escaped for every sample, as prometheus-client does (no family needs it so far)."""
    names = (*WORKER_LABELS, *family.labels)
    lines = []
    for found, row in zip(samples, rows, strict=True):
        worker = (row[ROW_ENDPOINT_ID], row[ROW_ENDPOINT_NAME], row[ROW_GROUP_ID], row[ROW_ID])
        for values, value in found or ():
            pairs = sorted(zip(names, (*worker, *values), strict=True))
            labels = ",".join(f'{label}="{_escape(text)}"' for label, text in pairs)
            lines.append(f"{family.name}{{{labels}}} {floatToGoString(value)}\n")
    return "".join(lines)


def _endpoint_labels(endpoint_id: str, endpoint_name: str) -> str:
    return f'endpoint_id="{_escape(endpoint_id)}",endpoint_name="{_escape(endpoint_name)}"'


def go_float(value: float) -> str:
    """floatToGoString (prometheus-client's sample value format) of a float that is not NaN,
    in fewer steps: it runs for every sample of every render (a test holds the two together)."""
    if value > 0:
        if value == INF:
            return "+Inf"
        text = repr(value)
        dot = text.find(".")
        if dot > 6:  # Go writes exponents sooner than Python: 1724275993.997 -> 1.724275993997e+09
            mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
            return f"{mantissa}e+{dot - 1:02d}"
        return text
    return "-Inf" if value == -INF else repr(value)
