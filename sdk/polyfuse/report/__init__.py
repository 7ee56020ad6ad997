"""Self-contained HTML reports: tables, figures, images, audio players and sensor plots."""

from .document import Report
from .figures import image_grid, latent_map, line_chart, loss_curves, sensor_plot

__all__ = ["Report", "image_grid", "latent_map", "line_chart", "loss_curves", "sensor_plot"]
