"""The synthetic world: determinism, disjoint splits, images that match the text, and every answer
re-derived from the scene description by a parser written independently of the generator."""

import re

import pytest

from dept_vl.data import shapes
from dept_vl.tasks import get_task

N = 150  # examples per task and split in these tests
CELLS = {"top left": (0, 0), "top": (0, 1), "top right": (0, 2), "left": (1, 0), "center": (1, 1),
         "right": (1, 2), "bottom left": (2, 0), "bottom": (2, 1), "bottom right": (2, 2)}
PHRASE = re.compile(r"a (small|large) (\w+) (circle|square|triangle) at the "
                    r"(top left|top right|bottom left|bottom right|top|bottom|left|right|center)(?=,| and|\.)")


def parse(description: str) -> dict[str, dict]:
    """{"red circle": {"size", "color", "shape", "row", "col"}} from a detailed caption."""
    objects = {}
    for size, color, shape, where in PHRASE.findall(description):
        row, col = CELLS[where]
        objects[f"{color} {shape}"] = dict(size=size, color=color, shape=shape, row=row, col=col)
    assert objects, description
    return objects


def load(name, split="dev", fmt="plain", **kw):
    return get_task(name).load(split, fmt=fmt, num_examples=N, **kw)


def test_same_seed_same_bytes_other_seed_other_world():
    a, b = load("shapes_count", seed=5), load("shapes_count", seed=5)
    shapes.builders._build_plain.cache_clear()  # regenerate from scratch, not from the cache
    c = load("shapes_count", seed=5)
    for x, y, z in zip(a, b, c):
        assert x.input_text == y.input_text == z.input_text and x.id == y.id == z.id
        assert x.target_text == z.target_text and x.meta == z.meta
        assert x.image.tobytes() == z.image.tobytes() and x.image_id == z.image_id
    assert [e.meta["scene"] for e in a] != [e.meta["scene"] for e in load("shapes_count", seed=6)]
    assert a[0].image.mode == "RGB" and a[0].image.size == (48, 48)
    assert load("shapes_count", image_size=96)[0].image.size == (96, 96)


def test_splits_never_share_scenes_across_tasks():
    scenes = {split: set() for split in ("train", "dev", "test")}
    for name in ("shapes_color", "shapes_count", "shapes_caption", "shapes_nli"):
        for split in scenes:
            scenes[split] |= {e.meta["scene"] for e in load(name, split)}
    assert scenes["train"].isdisjoint(scenes["dev"])
    assert scenes["train"].isdisjoint(scenes["test"])
    assert scenes["dev"].isdisjoint(scenes["test"])


def test_images_show_the_described_objects():
    for ex in load("shapes_caption")[:40]:
        pixels = ex.image.load()
        objects = parse(ex.target_text)
        for obj in objects.values():
            centre = (int((obj["col"] + 0.5) * 16), int((obj["row"] + 0.6) * 16))  # triangles: below centre
            assert pixels[centre] == shapes.COLORS[obj["color"]], (ex.target_text, obj)
        occupied = {(o["row"], o["col"]) for o in objects.values()}
        for row in range(3):
            for col in range(3):
                if (row, col) not in occupied:
                    assert pixels[col * 16 + 8, row * 16 + 8] == (24, 24, 28)


def _relation(rel, a, b):
    return {"left of": a["col"] < b["col"], "right of": a["col"] > b["col"],
            "above": a["row"] < b["row"], "below": a["row"] > b["row"]}[rel]


def test_visual_answers_rederived():
    for ex in load("shapes_color"):
        objs = parse(ex.meta["scene"])
        ref = re.fullmatch(r"question: what color is the (?:(small|large) )?(\w+)\?", ex.input_text)
        size, shape = ref.groups()
        hits = [o for o in objs.values() if o["shape"] == shape and size in (None, o["size"])]
        assert len(hits) == 1 and hits[0]["color"] == ex.target_text
    for ex in load("shapes_exist"):
        color, shape = re.fullmatch(r"question: is there a (\w+) (\w+)\?", ex.input_text).groups()
        assert ex.target_text == ("yes" if f"{color} {shape}" in parse(ex.meta["scene"]) else "no")
    for ex in load("shapes_count"):
        objs = parse(ex.meta["scene"]).values()
        subject = re.fullmatch(r"question: how many (.+) are there\?", ex.input_text).group(1)
        words = subject.split()
        if words[-1] == "objects" and len(words) == 2:
            n = sum(words[0] in (o["color"], o["size"]) for o in objs)
        elif words == ["objects"]:
            n = len(objs)
        else:
            n = sum(o["shape"] + "s" == words[0] for o in objs)
        assert ex.target_text == str(n)
    for ex in load("shapes_spatial"):
        objs = parse(ex.meta["scene"])
        rel, ref = re.fullmatch(r"question: what is (left of|right of|above|below) the (\w+ \w+)\?",
                                ex.input_text).groups()
        hits = [name for name, o in objs.items() if name != ref and _relation(rel, o, objs[ref])]
        assert hits == [ex.target_text]


def test_caption_answers_rederived():
    for ex in load("shapes_caption"):
        assert ex.target_text == ex.meta["scene"]
        assert ex.input_text == "caption: describe the picture in detail."
    for ex in load("shapes_caption_short"):
        objs = sorted(parse(ex.meta["scene"]).values(), key=lambda o: (o["row"], o["col"]))
        names = [f"a {o['color']} {o['shape']}" for o in objs]
        expected = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        assert ex.target_text == expected + "."


def test_nli_labels_rederived():
    for ex in load("shapes_nli"):
        premise, hyp = re.fullmatch(r"nli premise: (.+) hypothesis: (.+)", ex.input_text).groups()
        objs = parse(premise)
        if m := re.fullmatch(r"there is a (\w+ \w+)\.", hyp):
            truth = m.group(1) in objs
        elif m := re.fullmatch(r"the number of objects is (\d)\.", hyp):
            truth = int(m.group(1)) == len(objs)
        elif m := re.fullmatch(r"the (\w+ \w+) is at the (.+)\.", hyp):
            o = objs[m.group(1)]
            truth = CELLS[m.group(2)] == (o["row"], o["col"])
        else:
            a, rel, b = re.fullmatch(r"the (\w+ \w+) is (left of|right of|above|below) the (\w+ \w+)\.", hyp).groups()
            truth = _relation(rel, objs[a], objs[b])
        assert ex.target_text == ("entailment" if truth else "contradiction"), ex.input_text


def _distance(a: dict, b: dict) -> int:
    cells_a = {(o["row"], o["col"]): o for o in a.values()}
    cells_b = {(o["row"], o["col"]): o for o in b.values()}
    total = 0
    for cell in set(cells_a) | set(cells_b):
        if cell not in cells_a or cell not in cells_b:
            total += 3
        else:
            total += sum(cells_a[cell][k] != cells_b[cell][k] for k in ("size", "color", "shape"))
    return total


def test_pair_tasks_rederived():
    for ex in load("shapes_para"):
        s1, s2 = re.fullmatch(r"paraphrase sentence1: (.+) sentence2: (.+)", ex.input_text).groups()
        same = parse(s1) == parse(s2)
        assert ex.target_text == ("equivalent" if same else "not_equivalent")
    scores = set()
    for ex in load("shapes_sim"):
        s1, s2 = re.fullmatch(r"similarity sentence1: (.+) sentence2: (.+)", ex.input_text).groups()
        assert ex.target_text == str(max(0, 5 - _distance(parse(s1), parse(s2))))
        scores.add(ex.target_text)
    assert scores == {"0", "1", "2", "3", "4", "5"}


def test_acceptability_rederived_with_an_independent_grammar():
    phrase = (r"a (small|large) (red|white|yellow|green|blue|purple) (circle|square|triangle) at the "
              r"(top left|top right|bottom left|bottom right|top|bottom|left|right|center)")
    grammar = re.compile(rf"{phrase}((, {phrase})* and {phrase})?\.")
    labels = set()
    for ex in load("shapes_accept"):
        sentence = ex.input_text.removeprefix("acceptability sentence: ")
        assert ex.target_text == ("acceptable" if grammar.fullmatch(sentence) else "unacceptable")
        labels.add(ex.target_text)
    assert labels == {"acceptable", "unacceptable"}


@pytest.mark.parametrize("name", sorted(shapes.SPECS))
def test_shifted_is_a_fixed_length_conflicting_header_before_the_plain_input(name):
    plain, shifted = load(name), load(name, fmt="shifted")
    assert get_task(name).load("dev", num_examples=N)[0].input_text == shifted[0].input_text  # default
    own = shapes.SPECS[name].header_type
    for p, s in zip(plain, shifted):
        header = s.meta["header"]
        assert s.input_text == f"{header} {p.input_text}" and s.target_text == p.target_text
        assert len(shapes.split_words(header)) == shapes.HEADER_LENGTH
        assert s.meta["header_type"] != own and header != p.input_text
        assert s.id == p.id and s.label == p.label


def test_vocabulary_covers_every_task_in_both_formats():
    vocab = set(shapes.vocabulary())
    assert all(w == w.lower() for w in vocab)
    for name in shapes.SPECS:
        for fmt in ("plain", "shifted"):
            for ex in load(name, "train", fmt):
                words = shapes.split_words(ex.input_text + " " + ex.target_text)
                assert set(words) <= vocab, set(words) - vocab


def test_roles_kinds_and_label_balance():
    assert shapes.source_tasks() == ["shapes_caption", "shapes_color", "shapes_exist", "shapes_nli"]
    assert set(shapes.target_tasks()) == {"shapes_count", "shapes_spatial", "shapes_caption_short",
                                          "shapes_para", "shapes_accept", "shapes_sim"}
    for name in shapes.SPECS:
        task = get_task(name)
        assert task.role == shapes.SPECS[name].role and task.formats == ("shifted", "plain")
    for name in ("shapes_nli", "shapes_para", "shapes_accept"):
        labels = [e.label for e in load(name, "train")]
        assert 0.35 < labels.count(get_task(name).label_words[1]) / len(labels) < 0.65


def test_default_sizes_and_evaluation():
    task = get_task("shapes_spatial")
    assert len(task.load("dev")) == 500 and len(task.load("test")) == 1000
    ex = load("shapes_spatial")
    assert task.evaluate([e.target_text for e in ex], ex)["headline"] == 1.0
    assert task.evaluate(["nothing"] * len(ex), ex)["headline"] == 0.0
    cap = load("shapes_caption_short")
    perfect = get_task("shapes_caption_short").evaluate([e.target_text for e in cap], cap)
    assert perfect["exact"] == 1.0 and perfect["headline"] == perfect["cider"] > 1.0
    sim = load("shapes_sim")
    assert get_task("shapes_sim").evaluate([e.target_text for e in sim], sim)["headline"] == pytest.approx(1.0)


def test_bad_requests():
    task = get_task("shapes_color")
    with pytest.raises(ValueError, match="drop data_dir"):
        task.load("train", data_dir="somewhere")
    with pytest.raises(ValueError, match="unknown options"):
        task.load("train", n=3)
    with pytest.raises(ValueError, match="unknown header types"):
        task.load("train", header_types="color,weather")
    with pytest.raises(ValueError, match="two objects share a cell"):
        shapes.make_scene([shapes.ShapeObject(0, 0, "small", "red", "circle"),
                           shapes.ShapeObject(0, 0, "large", "blue", "square")])


def test_public_scene_api():
    scenes = shapes.generate_scenes(20, seed=1)
    assert len(scenes) == 20 and scenes == shapes.generate_scenes(20, seed=1)
    assert all(shapes.scene_split(s) == "test" for s in shapes.generate_scenes(10, seed=1, split="test"))
    s = scenes[0]
    assert parse(shapes.describe(s)) == {o.name: dict(size=o.size, color=o.color, shape=o.shape, row=o.row,
                                                       col=o.col) for o in s.objects}
    assert shapes.render(s).tobytes() == shapes.render(s).tobytes()
