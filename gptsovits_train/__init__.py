"""gsv-train: headless, validated fine-tuning of GPT-SoVITS SoVITS models."""

__version__ = "0.1.0"
