"""BrainML: brain tumor detection and type classification on 2D MRI slices, with heatmaps that show why."""

__version__ = "0.1.0"
