"""Draw a few synthetic examples into one PNG (the picture in docs/synthetic_world.md).

    python -m dept_vl.data.shapes.figure docs/img/shapes_examples.png
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

PANELS = ["shapes_caption", "shapes_color", "shapes_exist", "shapes_count",
          "shapes_spatial", "shapes_caption_short"]


def make_examples_figure(path: str | Path, seed: int = 0, index: int = 3) -> Path:
    """Save a 2x3 grid: each panel an image with its task, shifted header, plain input and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dept_vl.data.shapes.builders import SPECS, build_examples

    fig, axes = plt.subplots(2, 3, figsize=(12, 10.4), layout="constrained")
    for ax, name in zip(axes.flat, PANELS):
        plain = build_examples(name, "dev", "plain", num_examples=index + 1, seed=seed)[index]
        shifted = build_examples(name, "dev", "shifted", num_examples=index + 1, seed=seed)[index]
        ax.imshow(plain.image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        wrap = lambda s: "\n".join(textwrap.wrap(s, 46))  # noqa: E731
        ax.set_title(f"{name} ({SPECS[name].role})", fontsize=11, fontweight="bold")
        ax.set_xlabel(f"header (shifted only): {shifted.meta['header']}\n"
                      f"input: {wrap(plain.input_text)}\ntarget: {wrap(plain.target_text)}",
                      fontsize=8.5, loc="left")
    fig.suptitle("The synthetic shapes world: 48x48 images (shown enlarged), plain inputs and "
                 "the shifted format's header", fontsize=12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="docs/img/shapes_examples.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_examples_figure(args.path, seed=args.seed))


if __name__ == "__main__":
    main()
