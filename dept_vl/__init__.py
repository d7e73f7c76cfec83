"""dept-vl: Decomposed Prompt Tuning (DePT) for vision-language encoder-decoders and k-shot transfer."""

from dept_vl.dept import DePTConfig, DePTModel, budget

__version__ = "0.1.0"
__all__ = ["DePTConfig", "DePTModel", "budget", "build_vl_model", "list_presets", "__version__"]


def __getattr__(name: str):
    # The VL model pulls in timm; import it only when asked for.
    if name in ("build_vl_model", "list_presets"):
        from dept_vl import models

        return getattr(models, name)
    raise AttributeError(f"module 'dept_vl' has no attribute {name!r}")
