import pytest

from knfleet.desired import goduration


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0), ("0s", 0), ("90s", 90), ("1h30m", 5400), ("1.5s", 1.5), ("500ms", 0.5), ("-2m", -120), ("1h0m0s", 3600),
])
def test_parse(text, seconds):
    assert goduration.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "", "s", "1d", "1 h", "abc"])
def test_parse_rejects(text):
    with pytest.raises(goduration.DurationError):
        goduration.parse(text)


def test_missing_unit_message():
    with pytest.raises(goduration.DurationError, match="missing unit"):
        goduration.parse("5")


def test_format():
    assert goduration.format_seconds(90) == "1m30s"
    assert goduration.format_seconds(3600) == "1h"
    assert goduration.format_seconds(0) == "0s"
