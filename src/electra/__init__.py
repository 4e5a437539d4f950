"""ELECTRA: pre-train text encoders as discriminators (Clark et al., ICLR 2020) and fine-tune them."""

from electra.config import ModelConfig
from electra.errors import ElectraError

__version__ = "0.1.0"
__all__ = ["ElectraError", "ModelConfig", "__version__"]
