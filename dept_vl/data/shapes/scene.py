"""Scenes of the synthetic world: 1-4 objects on a 3x3 grid, each with a shape, colour and size.

Within a scene every object has its own cell and its own (colour, shape) pair, so "the red circle"
always names exactly one object. Scenes are assigned to train/dev/test by a hash of their content,
so no scene appears in two splits, whatever task or seed generated it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "white": (235, 235, 235), "yellow": (240, 225, 40),
    "green": (40, 175, 70), "blue": (50, 100, 240), "purple": (155, 70, 215),
}
SIZES = ("small", "large")
GRID = 3
MAX_OBJECTS = 4
CELL_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right",
    (1, 0): "left", (1, 1): "center", (1, 2): "right",
    (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}
SPLIT_SHARES = (("train", 80), ("dev", 10), ("test", 10))  # percent of the scene-hash space


@dataclass(frozen=True, order=True)
class ShapeObject:
    """One object: its cell (row 0 = top, col 0 = left) and attributes."""

    row: int
    col: int
    size: str
    color: str
    shape: str

    @property
    def name(self) -> str:
        """``"red circle"``: unique within a scene."""
        return f"{self.color} {self.shape}"

    @property
    def cell(self) -> tuple[int, int]:
        return (self.row, self.col)


@dataclass(frozen=True)
class Scene:
    """A scene: objects in reading order (top to bottom, left to right) and the image size."""

    objects: tuple[ShapeObject, ...]
    image_size: int = 48

    @property
    def key(self) -> str:
        """A canonical string of the content (independent of image size)."""
        return ";".join(f"{o.row}{o.col}-{o.size}-{o.color}-{o.shape}" for o in self.objects)

    def find(self, color: str, shape: str) -> ShapeObject | None:
        """The object with this colour and shape, or None."""
        return next((o for o in self.objects if o.color == color and o.shape == shape), None)

    def empty_cells(self) -> list[tuple[int, int]]:
        used = {o.cell for o in self.objects}
        return [c for c in CELL_NAMES if c not in used]


def make_scene(objects: list[ShapeObject] | tuple[ShapeObject, ...], image_size: int = 48) -> Scene:
    """A scene from objects (any order), checking the world's rules.

    Raises:
        ValueError: duplicate cells or (colour, shape) pairs, unknown attributes, or not 1-4 objects.
    """
    objects = tuple(sorted(objects))
    if not 1 <= len(objects) <= MAX_OBJECTS:
        raise ValueError(f"a scene holds 1 to {MAX_OBJECTS} objects, got {len(objects)}")
    for o in objects:
        if o.shape not in SHAPES or o.color not in COLORS or o.size not in SIZES or o.cell not in CELL_NAMES:
            raise ValueError(f"invalid object {o}; shapes {SHAPES}, colours {tuple(COLORS)}, sizes {SIZES}")
    if len({o.cell for o in objects}) != len(objects):
        raise ValueError(f"two objects share a cell in {objects}")
    if len({o.name for o in objects}) != len(objects):
        raise ValueError(f"two objects share colour and shape in {objects}")
    return Scene(objects, image_size)


def random_scene(rng: random.Random, image_size: int = 48, n_objects: int | None = None) -> Scene:
    """One random scene (1-4 objects, uniform) drawn from ``rng``."""
    n = n_objects if n_objects is not None else rng.randint(1, MAX_OBJECTS)
    cells = rng.sample(list(CELL_NAMES), n)
    pairs = rng.sample([(c, s) for c in COLORS for s in SHAPES], n)
    objects = [ShapeObject(r, c, rng.choice(SIZES), color, shape)
               for (r, c), (color, shape) in zip(cells, pairs)]
    return make_scene(objects, image_size)


def scene_split(scene: Scene) -> str:
    """Which split a scene belongs to (80/10/10 by a hash of its content)."""
    bucket = int(hashlib.sha1(scene.key.encode()).hexdigest(), 16) % 100
    for split, share in SPLIT_SHARES:
        if bucket < share:
            return split
        bucket -= share
    raise AssertionError("split shares must add up to 100")


def generate_scenes(n: int, seed: int, image_size: int = 48, split: str | None = None) -> list[Scene]:
    """``n`` random scenes for a seed; with ``split``, only scenes that belong to that split.

    Raises:
        ValueError: n < 0 or an unknown split.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split not in (None, *(s for s, _ in SPLIT_SHARES)):
        raise ValueError(f"unknown split {split!r}; use train, dev, test or None")
    rng = random.Random(seed)
    scenes: list[Scene] = []
    while len(scenes) < n:
        scene = random_scene(rng, image_size)
        if split is None or scene_split(scene) == split:
            scenes.append(scene)
    return scenes


def distance(a: Scene, b: Scene) -> int:
    """Differences between two scenes, matching objects by cell: each differing attribute of an
    object in the same cell counts 1, an object present in only one scene counts 3."""
    cells_a = {o.cell: o for o in a.objects}
    cells_b = {o.cell: o for o in b.objects}
    total = 0
    for cell in set(cells_a) | set(cells_b):
        oa, ob = cells_a.get(cell), cells_b.get(cell)
        if oa is None or ob is None:
            total += 3
        else:
            total += (oa.size != ob.size) + (oa.color != ob.color) + (oa.shape != ob.shape)
    return total


def _attribute_edits(scene: Scene, frozen: set[tuple[int, int]],
                     changed: set[tuple[tuple[int, int], str]]) -> list[tuple[int, str, str]]:
    edits = []
    for i, o in enumerate(scene.objects):
        if o.cell in frozen:
            continue
        names = {p.name for j, p in enumerate(scene.objects) if j != i}
        for attr, values in (("size", SIZES), ("color", tuple(COLORS)), ("shape", SHAPES)):
            if (o.cell, attr) in changed:
                continue
            for v in values:
                new = {**o.__dict__, attr: v}
                if v != getattr(o, attr) and f"{new['color']} {new['shape']}" not in names:
                    edits.append((i, attr, v))
    return edits


def edit_scene(scene: Scene, rng: random.Random, target_distance: int) -> Scene:
    """A new scene ``target_distance`` away from ``scene`` when the scene allows it (else as far
    as it can get): attribute changes (+1 each), added objects (+3), removed objects (+1 to 3).
    Every step strictly increases :func:`distance`, so this always ends."""
    current = scene
    frozen: set[tuple[int, int]] = set()  # cells where an object was added or removed
    changed: set[tuple[tuple[int, int], str]] = set()
    while (need := target_distance - distance(scene, current)) > 0:
        options: list[tuple[str, object]] = [("attr", e) for e in _attribute_edits(current, frozen, changed)]
        free = [c for c in current.empty_cells() if c not in frozen]
        if need >= 3 and len(current.objects) < MAX_OBJECTS and free:
            options.append(("add", None))
        removable = [i for i, o in enumerate(current.objects) if o.cell not in frozen]
        if need >= 3 and len(current.objects) > 1 and removable:
            options.append(("remove", None))
        if not options:
            break
        kind, edit = rng.choice(options)
        objects = list(current.objects)
        if kind == "attr":
            i, attr, value = edit  # type: ignore[misc]
            changed.add((objects[i].cell, attr))
            objects[i] = ShapeObject(**{**objects[i].__dict__, attr: value})
        elif kind == "add":
            used = {o.name for o in objects}
            row, col = rng.choice(free)
            color, shape = rng.choice([(c, s) for c in COLORS for s in SHAPES if f"{c} {s}" not in used])
            objects.append(ShapeObject(row, col, rng.choice(SIZES), color, shape))
            frozen.add((row, col))
        else:
            frozen.add(objects.pop(rng.choice(removable)).cell)
        current = make_scene(objects, scene.image_size)
    return current
