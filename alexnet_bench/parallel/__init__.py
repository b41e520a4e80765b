"""Multi-device layouts of AlexNet (the paper's two-GPU model split)."""

from .model_parallel import TwoTowerAlexNet, split_supported

__all__ = ["TwoTowerAlexNet", "split_supported"]
