"""The tests' own reading of metrics (tests/harness.py): `value()` of one series, and
`wait_for_metrics` taking a predicate's AssertionError as "not yet"."""

from __future__ import annotations

import pytest

from .harness import ScrapedExporter, parse_metrics, value

SCRAPE = """\
# TYPE vastai_target_up gauge
vastai_target_up{kind="endpoint",id="10"} 1.0
vastai_target_up{kind="endpoint",id="11"} 0.0
"""


def test_value_is_the_one_matching_sample_or_an_error_naming_what_matched() -> None:
    samples = parse_metrics(SCRAPE)
    assert value(samples, "vastai_target_up", id="11") == 0.0
    assert value(samples, "vastai_target_up", kind="endpoint", id="10") == 1.0
    with pytest.raises(AssertionError, match=r"^0 samples of vastai_target_up with \{'id': '12'\}"):
        value(samples, "vastai_target_up", id="12")
    with pytest.raises(AssertionError, match=r"^2 samples of vastai_target_up .*'id', '11'"):
        value(samples, "vastai_target_up", kind="endpoint")
    with pytest.raises(AssertionError, match=r"^0 samples of vastai_target_workers"):
        value(samples, "vastai_target_workers", id="10")


class Scripted(ScrapedExporter):
    """Answers scrapes from a script, then repeats its last answer."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.scrapes = 0

    async def scrape(self) -> str:
        self.scrapes += 1
        return self.texts[min(self.scrapes, len(self.texts)) - 1]


@pytest.mark.virtual_time
async def test_wait_for_metrics_waits_while_value_finds_no_series() -> None:
    later = SCRAPE + 'vastai_target_up{kind="endpoint",id="12"} 1.0\n'
    exporter = Scripted(SCRAPE, SCRAPE, later)
    samples = await exporter.wait_for_metrics(lambda s: value(s, "vastai_target_up", id="12") == 1)
    assert (exporter.scrapes, value(samples, "vastai_target_up", id="12")) == (3, 1.0)
    with pytest.raises(AssertionError, match=r"in 1s; .* said: 0 samples of vastai_target_workers"):
        await Scripted(SCRAPE).wait_for_metrics(
            lambda s: value(s, "vastai_target_workers") == 1, timeout=1
        )
