"""Execute every notebook against a run folder and render it as a Markdown page with its figures, so that a
reader browsing the repository sees the outputs (the notebooks themselves are committed without outputs).

    python tools/render_notebooks.py runs/demo            # after `make demo`; writes docs/notebooks/
    python tools/render_notebooks.py runs/demo --only kshot_transfer.ipynb

Each page starts with the run it was rendered from. Paths of the machine that rendered it are written relative
to the repository. ``tests/test_notebooks.py`` checks that every page shows the current code of its notebook.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PAGES = ROOT / "docs" / "notebooks"


def code_blocks(notebook: Path) -> list[str]:
    """The source of every code cell, as a page shows it."""
    import nbformat

    return ["".join(cell.source).strip() for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]


def render(notebook: Path, run: Path, out: Path) -> Path:
    """Execute ``notebook`` against ``run`` (``DEPT_VL_RUN``) and write ``out/<name>.md`` and its PNGs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    os.environ["DEPT_VL_RUN"] = str(run)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    out.mkdir(parents=True, exist_ok=True)
    stem = notebook.stem
    for old in out.glob(f"{stem}-*.png"):
        old.unlink()
    scrub = _scrubber(run)
    lines = [f"# {stem}", "", f"*Rendered by `python tools/render_notebooks.py {scrub(str(run))}` from `notebooks/{notebook.name}`; "
             f"the code below is the notebook's own.*", ""]
    figure = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines += ["".join(cell.source), ""]
            continue
        if cell.cell_type != "code":
            continue
        lines += ["```python", "".join(cell.source).strip(), "```", ""]
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if output.get("output_type") == "stream":
                lines += ["```text", scrub("".join(output["text"])).rstrip(), "```", ""]
            elif "image/png" in data:
                figure += 1
                name = f"{stem}-{figure}.png"
                (out / name).write_bytes(base64.b64decode(data["image/png"]))
                lines += [f"![{stem} figure {figure}]({name})", ""]
            elif "text/markdown" in data:
                lines += [scrub("".join(data["text/markdown"])), ""]
            elif "text/plain" in data:
                lines += ["```text", scrub("".join(data["text/plain"])).rstrip(), "```", ""]
            elif output.get("output_type") == "error":
                raise RuntimeError(f"{notebook.name} failed: {output.get('ename')}: {output.get('evalue')}")
    page = out / f"{stem}.md"
    page.write_text("\n".join(lines).rstrip() + "\n")
    return page


def _scrubber(run: Path):
    """Write absolute paths of this machine relative to the repository (or as the run folder's name)."""
    pairs = [(str(ROOT.parent / "shared"), "../shared"), (str(ROOT), "."), (str(run.resolve()), run.name)]

    def scrub(text: str) -> str:
        for old, new in pairs:
            text = text.replace(old, new)
        return re.sub(r"/(?:tmp|home|root|work)/[^\s'\")]+", "<path>", text)

    return scrub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a demo run folder (make demo writes runs/demo)")
    parser.add_argument("--only", nargs="+", help="notebook file names (default: every notebook)")
    parser.add_argument("--out", type=Path, default=PAGES)
    args = parser.parse_args()
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        if args.only and notebook.name not in args.only:
            continue
        print(f"{notebook.name} -> {render(notebook, args.run.resolve(), args.out)}")


if __name__ == "__main__":
    main()
