"""One config system: a YAML recipe, ``key=value`` overrides, and the resolved config written with the outputs.

Every section is a dataclass whose fields carry their help text and their checks (:func:`option`);
:func:`check_section` runs those checks when a section is made, so a bad value fails when the config is
loaded, with its dotted key, the value and what is allowed.

- :mod:`~dept_vl.config.fields`: ``option``, ``section`` and the checks;
- :mod:`~dept_vl.config.sections`: every section and :class:`RunConfig`;
- :mod:`~dept_vl.config.loading`: recipes, overrides, :func:`load_config`;
- :mod:`~dept_vl.config.yaml_format`: YAML as the config system reads and writes it.
"""

from dept_vl.config.fields import check_section, check_value, option, section
from dept_vl.config.loading import apply_overrides, list_recipes, load_config, recipe_path, recipes_dir
from dept_vl.config.sections import (AUTO_PRESET, IMAGE_KEYS, AdaptConfig, AttemptConfig, DataConfig, EvalConfig, FullConfig,
                                     LoRAConfig, ModelConfig, MPTConfig, PretrainConfig, RunConfig, SweepOptions, TrainConfig,
                                     ULPTConfig)
from dept_vl.config.yaml_format import read_yaml

__all__ = [
    "AUTO_PRESET", "IMAGE_KEYS", "AdaptConfig", "AttemptConfig", "DataConfig", "EvalConfig", "FullConfig", "LoRAConfig",
    "MPTConfig", "ModelConfig", "PretrainConfig", "RunConfig", "SweepOptions", "TrainConfig", "ULPTConfig",
    "apply_overrides", "check_section", "check_value", "list_recipes", "load_config", "option", "read_yaml",
    "recipe_path", "recipes_dir", "section",
]
