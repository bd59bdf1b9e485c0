"""lib: CAM methods, saliency metrics, models and data for the CAM compendium."""

__version__ = "0.1.0"
