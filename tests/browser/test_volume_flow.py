"""A real browser against the running app: open the example volume on Detect, land on its most suspicious slice,
then click a bar of the slice chart and see that slice, its verdict and its heatmap."""

import re
from pathlib import Path

import pytest

from brainml.example_volume import NAME, TITLE, example_volume
from brainml.io import read_scan
from brainml.report import verdict_text
from brainml.volume import VolumeScores
from scripts.screenshots import wait_until_idle

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]

VOLUME_OPTION = f"Synthetic · {TITLE}"  # how Detect's example box names the volume
VERDICT = re.compile(r"P\(tumor\) ([0-9.]+) (≥|<) threshold ([0-9.]+)")
HEADLINE = re.compile("Tumor likely|No tumor found")
BARS = ".st-key-detect_strip .js-plotly-plot .bars .point path"
SLICE_ON_THUMB = ".st-key-detect_slice [data-testid='stSliderThumbValue']"  # the number the slice slider shows
# Plotly selects a bar only when the pointer is inside it, and draws a bar under a pixel tall as one pixel: a bar
# this tall (about 12 px of the chart) takes a click at its centre.
CLICKABLE = 0.1


@pytest.fixture(scope="module")
def volume_scores(chromium_path) -> VolumeScores:
    """The library's answer for every slice of the example volume, from the models Detect opens with, at their
    threshold. Asks for chromium first, so a machine without it skips before loading TensorFlow."""
    from brainml.predict import Cascade
    from brainml.volume import score_volume

    cascade = Cascade.from_paths(ROOT / "models" / "detector.json", ROOT / "models" / "classifier.json")
    scan = read_scan(example_volume().nifti_bytes(), name=NAME)
    return score_volume(cascade, scan).at(cascade.default_threshold)


def slices_with_bars(scores: VolumeScores) -> list[int]:
    """The slices the chart draws a bar for, in the chart's order: those with a verdict. Skipped slices and slices
    the guard withheld get grey bands instead (and the legend's entries draw no bars)."""
    return [score.index for score in scores.slices if score.counts]


def quietest_clickable_slice(scores: VolumeScores) -> int:
    """The least suspicious slice whose bar is tall enough to click."""
    candidates = [i for i in slices_with_bars(scores) if scores.tumor_probabilities[i] >= CLICKABLE]
    return min(candidates, key=lambda i: scores.tumor_probabilities[i])


def verdict(page) -> tuple[str, float, str, float]:
    """(headline, P(tumor), relation, threshold) as the page shows them beside the picture."""
    headline = page.locator("h3").filter(has_text=HEADLINE).inner_text()
    line = page.locator("[data-testid='stMarkdownContainer']").filter(has_text=VERDICT).first.inner_text()
    probability, relation, threshold = VERDICT.search(line).groups()
    return headline, float(probability), relation, float(threshold)


def pictures(page) -> dict[str, str]:
    """The scan's and the heatmap's captions -> their images' addresses; both images must have loaded."""
    shown = {}
    for text in ("The scan:", "Grad-CAM"):
        figure = page.locator("[data-testid='stImage']").filter(has_text=text)
        image = figure.locator("img")
        assert image.is_visible() and image.evaluate("image => image.complete && image.naturalWidth") > 0
        shown[figure.inner_text()] = image.get_attribute("src")
    return shown


def shown_as(index: int, scores: VolumeScores) -> str:
    """How the scan's caption names a slice of the volume."""
    return f"axial slice {index} of 0–{scores.n_slices - 1}"


def test_the_example_volume_opens_on_its_most_suspicious_slice_and_a_bar_click_shows_another(
        app_url, page, volume_scores):
    from playwright.sync_api import expect

    page.goto(f"{app_url}/Detect")
    wait_until_idle(page)
    page.locator(".st-key-detect_example").click()
    page.get_by_role("option", name=VOLUME_OPTION).click()
    volume_line = page.locator("[data-testid='stMarkdownContainer']").filter(has_text=re.compile(r"^Volume:"))
    expect(volume_line).to_be_visible(timeout=180_000)  # every slice is scored first
    wait_until_idle(page)

    assert volume_line.inner_text() == f"Volume: {volume_scores.verdict_text()}"
    peak = volume_scores.slices[volume_scores.slice_of_max]
    assert page.locator(SLICE_ON_THUMB).inner_text() == str(peak.index)
    headline, probability, relation, threshold = verdict(page)
    assert verdict_text(peak.diagnosis).startswith("Tumor likely")
    assert verdict_text(peak.diagnosis) in headline and relation == "≥"
    assert probability == pytest.approx(peak.diagnosis.tumor_probability, abs=1e-3)
    assert threshold == pytest.approx(volume_scores.threshold, abs=1e-3)
    before = pictures(page)
    assert any(caption.endswith(shown_as(peak.index, volume_scores)) for caption in before)

    bars = page.locator(BARS)
    bar_slices = slices_with_bars(volume_scores)
    assert bars.count() == len(bar_slices)
    quiet = volume_scores.slices[quietest_clickable_slice(volume_scores)]
    assert quiet.diagnosis.tumor_probability < volume_scores.threshold / 2  # well clear of the threshold
    # Plotly's drag layer lies over the bars and takes every click, so Playwright would wait for the bar to be
    # clickable for ever: force a click at the bar's centre, where plotly finds the bar under the pointer.
    bars.nth(bar_slices.index(quiet.index)).click(force=True)
    expect(page.locator(SLICE_ON_THUMB)).to_have_text(str(quiet.index), timeout=60_000)
    # Mid-rerun the old headline may still be on the page beside the new one; the end of the run removes it.
    expect(page.locator("h3").filter(has_text="No tumor found")).to_be_visible(timeout=60_000)
    wait_until_idle(page)

    headline, probability, relation, threshold = verdict(page)
    assert verdict_text(quiet.diagnosis) == "No tumor found" and "No tumor found" in headline and relation == "<"
    assert probability == pytest.approx(quiet.diagnosis.tumor_probability, abs=1e-3)
    assert threshold == pytest.approx(volume_scores.threshold, abs=1e-3)
    after = pictures(page)
    assert any(caption.endswith(shown_as(quiet.index, volume_scores)) for caption in after)
    assert set(after.values()).isdisjoint(before.values())  # the scan and the heatmap are the new slice's
    assert volume_line.inner_text() == f"Volume: {volume_scores.verdict_text()}"  # the volume's answer stays
    assert page.locator("[data-testid='stException']").count() == 0
