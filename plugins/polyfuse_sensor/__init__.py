"""Built-in sensor modality for polyfuse: multichannel time series at any length and sample rate."""

from .modality import SensorConfig, SensorModality, SensorSeries

__all__ = ["SensorConfig", "SensorModality", "SensorSeries"]
