"""A real browser against the running app: upload a scan, read the verdict, see the heatmap, move the threshold."""

import re
from pathlib import Path

import pytest

from brainml.examples import example_png, find_real_example
from brainml.report import WITHHELD

pytestmark = pytest.mark.browser

SCRIPT_STATE = ("() => { const app = document.querySelector(\"[data-testid='stApp']\");"
                " return app ? app.getAttribute('data-test-script-state') : null; }")
SYNTHETIC_DETECTOR = "Synthetic · compact CNN (models/synthetic/detector.json)"
VERDICT = re.compile(r"P\(tumor\) ([0-9.]+) (≥|<) threshold ([0-9.]+)")


def wait_until_idle(page) -> None:
    """Let the rerun an action started begin (if it has not already ended), then wait for it to end."""
    page.wait_for_selector("[data-testid='stApp']")
    try:
        page.wait_for_function(f"() => ({SCRIPT_STATE})() === 'running'", timeout=1000)
    except Exception:  # Playwright's TimeoutError: the run was already over, or none was needed
        pass
    page.wait_for_function(f"() => ({SCRIPT_STATE})() === 'notRunning'")
    page.wait_for_load_state("networkidle")


def verdict_line(page):
    return page.locator("[data-testid='stMarkdownContainer']").filter(has_text=VERDICT).first


def type_a_threshold(page, value: float) -> None:
    """Type ``value`` into the box beside the threshold slider, as a user can, and wait until the verdict and the
    slider show it. (Key presses on the slider itself are dropped when a run redraws it mid-press; typed values are
    committed as one change.)"""
    from playwright.sync_api import expect

    box = page.locator(".st-key-detect_threshold_typed input")
    box.fill(f"{value:.4f}")
    box.press("Enter")
    expect(verdict_line(page)).to_contain_text(f"threshold {value:.3f}", timeout=30_000)
    wait_until_idle(page)
    thumb = page.locator(".st-key-detect_threshold [data-testid='stSliderThumbValue']")
    expect(thumb).to_have_text(f"{value:.3f}")  # the slider follows the typed value


def verdict(page) -> tuple[str, float, str, float]:
    """(headline, P(tumor), relation, threshold) as the page shows them."""
    headline = page.locator("h3").filter(has_text=re.compile("Tumor likely|No tumor found")).inner_text()
    line = verdict_line(page).inner_text()
    probability, relation, threshold = VERDICT.search(line).groups()
    return headline, float(probability), relation, float(threshold)


def consistent(headline: str, probability: float, relation: str, threshold: float) -> bool:
    tumor = probability >= threshold
    return (relation == "≥") == tumor and ("Tumor likely" in headline) == tumor


def test_upload_a_png_read_the_verdict_see_the_heatmap_and_move_the_threshold(app_url, page):
    page.goto(f"{app_url}/Detect")
    wait_until_idle(page)
    # The synthetic pair: the scan is a synthetic slice, which the real-MRI pair's guard may refuse.
    page.get_by_text(SYNTHETIC_DETECTOR).click()
    wait_until_idle(page)
    page.get_by_text("Upload a scan").click()
    wait_until_idle(page)

    page.locator("input[type='file']").set_input_files(
        files=[{"name": "my_scan.png", "mimeType": "image/png", "buffer": example_png("meningioma")}])
    wait_until_idle(page)

    headline, probability, relation, threshold = verdict(page)
    assert "Tumor likely (meningioma)" in headline  # the synthetic pair on its own kind of slice
    assert consistent(headline, probability, relation, threshold)
    scan, heatmap = (page.locator("[data-testid='stImage']").filter(has_text=text).locator("img")
                     for text in ("The scan:", "Grad-CAM"))
    for picture in (scan, heatmap):
        assert picture.is_visible()
        assert picture.evaluate("image => image.complete && image.naturalWidth") == 256
    assert page.get_by_text("not a diagnosis").first.is_visible()

    # The first heatmap loads TensorFlow: let that run, and any it leads to, end before touching the threshold.
    wait_until_idle(page)
    page.wait_for_timeout(1000)
    wait_until_idle(page)
    type_a_threshold(page, round(threshold + 0.05, 3))
    moved = verdict(page)
    assert moved[3] > threshold
    assert moved[1] == pytest.approx(probability, abs=1e-3)  # shown to as many decimals as it takes
    assert consistent(*moved)

    type_a_threshold(page, 1.0)
    highest = verdict(page)
    assert highest[3] == pytest.approx(1.0)
    assert consistent(*highest)
    if probability < 1.0:
        assert "No tumor found" in highest[0]


def test_a_text_file_named_png_shows_the_readers_message(app_url, page):
    page.goto(f"{app_url}/Detect")
    wait_until_idle(page)
    page.get_by_text("Upload a scan").click()
    wait_until_idle(page)
    page.locator("input[type='file']").set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image, only some text\n" * 8}])
    wait_until_idle(page)
    alert = page.locator("[data-testid='stAlert']").filter(has_text="This file holds text")
    assert alert.is_visible()
    assert page.locator("[data-testid='stException']").count() == 0


def upload(page, name: str, mime: str, data: bytes, headline: str) -> None:
    """Upload a file and wait until its run shows a headline holding ``headline``: the upload itself may take
    longer than the moment wait_until_idle gives a rerun to start."""
    from playwright.sync_api import expect

    page.locator("input[type='file']").set_input_files(files=[{"name": name, "mimeType": mime, "buffer": data}])
    expect(page.locator("h3").filter(has_text=headline)).to_be_visible(timeout=60_000)
    wait_until_idle(page)


def test_the_default_pair_finds_a_real_glioma_and_withholds_its_verdict_on_a_photo(app_url, page):
    """The default real-MRI pair, as a new user meets it: a real slice gets a verdict and a heatmap; a colour
    photo gets no verdict until asked, and then only an answer marked as unguarded."""
    from matplotlib import cbook
    from playwright.sync_api import expect

    page.goto(f"{app_url}/Detect")
    wait_until_idle(page)
    page.get_by_text("Upload a scan").click()
    wait_until_idle(page)

    upload(page, "glioma.jpg", "image/jpeg", find_real_example("real-glioma-1").read_bytes(), headline="Tumor likely")
    headline, probability, relation, threshold = verdict(page)
    assert "Tumor likely (glioma)" in headline and relation == "≥" and probability > threshold
    for text in ("The scan: uploaded JPEG", "Grad-CAM of the detector's tumor score"):
        picture = page.locator("[data-testid='stImage']").filter(has_text=text).locator("img")
        assert picture.is_visible() and picture.evaluate("image => image.complete && image.naturalWidth") > 0
    assert page.get_by_text(WITHHELD).count() == 0

    photo = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()
    upload(page, "grace_hopper.jpg", "image/jpeg", photo, headline=WITHHELD)
    assert page.get_by_text("of its pixels are coloured; MRI slices are grey.").is_visible()
    assert page.locator("h3").filter(has_text=re.compile("Tumor likely|No tumor found")).count() == 0
    assert not page.get_by_text(VERDICT).first.is_visible()

    heatmap = page.locator("[data-testid='stImage']").filter(has_text="the models' unguarded score: no verdict")
    assert heatmap.locator("img").is_visible()

    page.get_by_role("button", name="Show the models' answer anyway").click()
    expect(page.locator("h4").filter(has_text="Unguarded: ")).to_be_visible(timeout=60_000)
    wait_until_idle(page)
    assert page.locator("h3").filter(has_text=WITHHELD).is_visible()  # still no verdict of its own
    assert page.locator("[data-testid='stException']").count() == 0
