"""Plots for reports, rendered with matplotlib's Agg backend to PNG bytes."""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display is needed, and none exists on a server
    import matplotlib.pyplot as pyplot

    return pyplot


def _to_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def loss_curves(history: Sequence[Mapping[str, float]], title: str = "Training loss") -> bytes:
    """Plot every loss term per epoch, one panel for the total and one for the parts."""
    pyplot = _pyplot()
    figure, (total_axis, parts_axis) = pyplot.subplots(1, 2, figsize=(10, 3.5))
    epochs = np.arange(1, len(history) + 1)
    total_axis.plot(epochs, [entry.get("loss", np.nan) for entry in history], marker=".")
    total_axis.set(title=title, xlabel="epoch", ylabel="loss")
    for name in sorted({key for entry in history for key in entry if key not in ("loss", "_batches")}):
        parts_axis.plot(epochs, [entry.get(name, np.nan) for entry in history], label=name)
    parts_axis.set(title="Loss terms", xlabel="epoch")
    parts_axis.set_yscale("symlog")
    parts_axis.legend(fontsize=7)
    return _to_png(figure)


def latent_map(points: np.ndarray, labels: Sequence[Any], groups: Sequence[str], title: str = "Latent space") -> bytes:
    """Project latents (N, D) to 2-D with PCA and plot them coloured by label and, beside, by group.

    ``groups`` names each point's source, for example its modality, so one can see whether
    the modalities of one class land together.
    """
    from sklearn.decomposition import PCA

    pyplot = _pyplot()
    coordinates = PCA(n_components=2, random_state=0).fit_transform(np.asarray(points, dtype=np.float64))
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.5))
    for axis, values, heading in ((axes[0], [str(v) for v in labels], "by label"), (axes[1], list(groups), "by modality")):
        names = sorted(set(values))
        colours = pyplot.get_cmap("tab10" if len(names) <= 10 else "tab20")
        for index, name in enumerate(names):
            chosen = np.asarray([value == name for value in values])
            axis.scatter(coordinates[chosen, 0], coordinates[chosen, 1], s=6, alpha=0.6, color=colours(index % colours.N), label=name)
        axis.set(title=f"{title} ({heading}, PCA)", xticks=[], yticks=[])
        axis.legend(fontsize=7, markerscale=2, loc="best")
    return _to_png(figure)


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str) -> bytes:
    """Plot named (x, y) series on one axis, for example accuracy against corruption level."""
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(5.5, 3.5))
    for name, (xs, ys) in series.items():
        axis.plot(xs, ys, marker="o", label=name)
    axis.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _to_png(figure)


def sensor_plot(values: np.ndarray, sample_rate: float, channel_names: Sequence[str], title: str = "") -> bytes:
    """Plot a series (T, C) against time; two or more channels named x and y also get a trajectory panel."""
    pyplot = _pyplot()
    values = np.asarray(values)
    names = list(channel_names) or [f"channel_{i}" for i in range(values.shape[1])]
    trajectory = "x" in names and "y" in names
    figure, axes = pyplot.subplots(1, 2 if trajectory else 1, figsize=(7 if trajectory else 4, 2.6), squeeze=False)
    seconds = np.arange(len(values)) / sample_rate
    for channel, name in enumerate(names):
        axes[0, 0].plot(seconds, values[:, channel], label=name, linewidth=1)
    axes[0, 0].set(title=title, xlabel="seconds")
    axes[0, 0].legend(fontsize=6)
    if trajectory:
        x, y = values[:, names.index("x")], values[:, names.index("y")]
        axes[0, 1].plot(x, y, color="black", linewidth=1.5)
        axes[0, 1].set(aspect="equal", xticks=[], yticks=[], title="x-y trajectory")
    return _to_png(figure)


def image_grid(images: Sequence[Any], columns: int = 8, scale: int = 3) -> Any:
    """Tile PIL images of one size into one PIL image, each scaled up ``scale`` times."""
    from PIL import Image

    if not images:
        raise ValueError("image_grid needs at least one image")
    width, height = images[0].size
    rows = (len(images) + columns - 1) // columns
    mode = "RGB" if any(image.mode != "L" for image in images) else "L"
    grid = Image.new(mode, (columns * width, rows * height), "white" if mode == "RGB" else 255)
    for index, image in enumerate(images):
        grid.paste(image.convert(mode), ((index % columns) * width, (index // columns) * height))
    return grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
