"""Drawing scenes: flat shapes centred in the cells of a 3x3 grid on a dark background."""

from __future__ import annotations

from PIL import Image, ImageDraw

from dept_vl.data.shapes.scene import COLORS, GRID, Scene

BACKGROUND = (24, 24, 28)
# Half-extent of a shape as a fraction of the cell size: large shapes nearly fill their cell
# (about 13 px of a 16 px cell at 48x48), small ones about half of it.
HALF_EXTENT = {"large": 0.42, "small": 0.24}


def render(scene: Scene) -> Image.Image:
    """The scene as a new RGB image of ``scene.image_size`` pixels square (deterministic; about
    40 microseconds at 48x48, so tasks render eagerly)."""
    size = scene.image_size
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cell = size / GRID
    for o in scene.objects:
        cx, cy = (o.col + 0.5) * cell, (o.row + 0.5) * cell
        h = HALF_EXTENT[o.size] * cell
        color = COLORS[o.color]
        if o.shape == "circle":
            draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=color)
        elif o.shape == "square":
            draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=color)
        else:
            draw.polygon([(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)], fill=color)
    return image
