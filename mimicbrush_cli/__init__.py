"""mimicbrush-cli: reference-imitation image editing (MimicBrush) you can run, train and measure."""

__version__ = "0.1.0"
