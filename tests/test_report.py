import json

import numpy as np
import pytest
from PIL import Image

from polyfuse.report import Report, image_grid, latent_map, line_chart, loss_curves, sensor_plot

from browser import browser_available, check_page


def build_report() -> Report:
    rng = np.random.default_rng(0)
    report = Report("Test report")
    report.add_heading("Tables")
    report.add_table(["subset", "accuracy"], [["image", 0.97125], ["<script>", 1]])
    report.add_heading("Figures")
    report.add_png(loss_curves([{"loss": 3.0, "nll/image": 2.0, "kl": 1.0}, {"loss": 2.0, "nll/image": 1.5, "kl": 0.5}]), "loss")
    report.add_png(latent_map(rng.normal(size=(60, 8)), [i % 3 for i in range(60)], ["image", "audio"] * 30), "latents")
    report.add_png(line_chart({"audio": ([20, 0], [0.99, 0.9])}, "Robustness", "SNR (dB)", "accuracy"), "curve")
    report.add_png(sensor_plot(rng.normal(size=(50, 3)), 10.0, ["x", "y", "pen_up"]), "pen")
    tiles = [Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8), mode="L") for _ in range(5)]
    report.add_image(image_grid(tiles, columns=4), "grid")
    report.add_audio(0.5 * np.sin(np.arange(4000) / 5), 8000, "tone")
    report.data["accuracy"] = {"image": 0.97125}
    return report


def test_report_is_self_contained_and_escaped(tmp_path):
    html_path, json_path = build_report().write(tmp_path)
    text = html_path.read_text()
    assert "&lt;script&gt;" in text
    assert "<script" not in text
    assert "src=\"http" not in text and "src=\"file" not in text
    assert text.count("data:image/png;base64,") == 5
    assert text.count("data:audio/wav;base64,") == 1
    assert "0.9712" in text
    assert json.loads(json_path.read_text()) == {"accuracy": {"image": 0.97125}}


def test_image_grid_tiles_and_scales():
    tiles = [Image.new("L", (4, 6), value) for value in (0, 255, 128)]
    grid = image_grid(tiles, columns=2, scale=2)
    assert grid.size == (16, 24)
    with pytest.raises(ValueError, match="at least one image"):
        image_grid([])


@pytest.mark.skipif(not browser_available(), reason="Chromium, chromedriver or selenium is not installed (.ci/run installs them)")
def test_report_renders_in_headless_chromium(tmp_path):
    html_path, _ = build_report().write(tmp_path)
    page = check_page(html_path)
    assert page.images == 5
    assert page.broken_images == []
    assert page.audios == 1
    assert page.unloaded_audios == 0
    assert page.errors == []
