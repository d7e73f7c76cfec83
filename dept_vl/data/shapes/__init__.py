"""The offline synthetic vision-language world (see docs/synthetic_world.md).

Scenes of 1-4 flat shapes on a 3x3 grid, rendered at 48x48 by default, with ten tasks: four
source tasks and six target tasks, each in a ``plain`` and a ``shifted`` format.
"""

from dept_vl.data.shapes.builders import SPECS, build_examples, source_tasks, target_tasks
from dept_vl.data.shapes.render import render
from dept_vl.data.shapes.scene import (
    CELL_NAMES, COLORS, SHAPES, SIZES, Scene, ShapeObject, distance, generate_scenes, make_scene,
    scene_split,
)
from dept_vl.data.shapes.text import HEADER_LENGTH, HEADER_TYPES, describe, describe_short
from dept_vl.data.shapes.vocab import split_words, vocabulary

__all__ = [
    "CELL_NAMES", "COLORS", "HEADER_LENGTH", "HEADER_TYPES", "SHAPES", "SIZES", "SPECS", "Scene",
    "ShapeObject", "build_examples", "describe", "describe_short", "distance", "generate_scenes",
    "make_scene", "render", "scene_split", "source_tasks", "split_words", "target_tasks",
    "vocabulary",
]
