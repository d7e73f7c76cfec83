"""dept-vl: Decomposed Prompt Tuning (DePT) for vision-language encoder-decoders and k-shot transfer."""

from dept_vl.dept import DePTConfig, DePTModel, budget

from dept_vl.version import __version__

__all__ = ["DePTConfig", "DePTModel", "budget", "build_vl_model", "list_presets", "__version__"]


def __getattr__(name: str):
    # The VL model pulls in timm; import it only when asked for.
    if name in ("build_vl_model", "list_presets"):
        import dept_vl.tasks  # noqa: F401  (registers the synthetic world's vocabulary, which the tiny presets use)
        from dept_vl import models

        return getattr(models, name)
    raise AttributeError(f"module 'dept_vl' has no attribute {name!r}")
