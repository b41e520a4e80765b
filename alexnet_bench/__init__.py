"""AlexNet benchmark and ablation suite."""

__version__ = "0.1.0"
