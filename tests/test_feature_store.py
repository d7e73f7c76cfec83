"""The image pipeline that scales: features stored once per encoder in memory-mapped shards, exactly as computed;
resumable; shared by processes; a run encodes only its own images; several images per example (tiny ViT, JPEGs
written here, CPU)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dept_vl.data.batching import Collator
from dept_vl.data.example import Example
from dept_vl.models import FeatureStore, build_vl_model, extract_features
from dept_vl.models.feature_extraction import share

ROOT = Path(__file__).resolve().parents[1]
WORDS = "what is the red blue circle square yes no left right".split()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_vl_model("tiny", vocabulary=WORDS).eval()


def write_jpegs(folder: Path, n: int, seed: int = 0) -> dict[str, str]:
    """``n`` random JPEGs of varied sizes; image id -> path."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    paths = {}
    for i in range(n):
        size = (40 + 4 * (i % 5), 32 + 2 * (i % 3))
        pixels = (torch.rand(size[1], size[0], 3, generator=gen) * 255).byte().numpy()
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths[f"img-{i:03d}"] = str(path)
    return paths


def direct(model, images: dict[str, str], batch_size: int) -> dict[str, torch.Tensor]:
    """``model.encode_images`` on the sorted ids in batches of ``batch_size`` (as the extraction batches them)."""
    ids = sorted(images)
    out = {}
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            out.update(zip(chunk, model.encode_images(torch.stack([model.image_transform(images[i]) for i in chunk]))))
    return out


def count_encoded(monkeypatch, model, fail_on_call: int | None = None) -> list[int]:
    """Rows each ``model.encode_images`` call saw; raise on call ``fail_on_call`` (1-based): a killed extraction."""
    seen: list[int] = []
    original = type(model).encode_images

    def encode(pixel_values):
        if fail_on_call is not None and len(seen) + 1 == fail_on_call:
            raise KeyboardInterrupt("killed")
        seen.append(pixel_values.shape[0])
        return original(model, pixel_values)

    monkeypatch.setattr(model, "encode_images", encode)
    return seen


def test_stored_features_are_exactly_the_encoders_and_read_back_by_a_new_store(model, tmp_path, monkeypatch):
    images = write_jpegs(tmp_path / "jpg", 20)
    expected = direct(model, images, batch_size=4)
    store = FeatureStore(tmp_path / "features", model.feature_key, torch.float32, shard_size=8)
    done = extract_features(store, model, images, batch_size=4)
    assert (done.wanted, done.share, done.encoded) == (20, 20, 20) and done.images_per_s > 0
    assert len(list(store.folder.glob("shard-*.safetensors"))) == 3  # 8 + 8 + 4
    reopened = FeatureStore(tmp_path / "features", model.feature_key, torch.float32)
    assert sorted(reopened) == sorted(images)
    for image_id, features in expected.items():
        assert torch.equal(reopened[image_id], features) and torch.equal(store[image_id], features)
    assert torch.equal(reopened.stack(["img-003", "img-011"]), torch.stack([expected["img-003"], expected["img-011"]]))

    seen = count_encoded(monkeypatch, model)  # a later run on the same folder encodes nothing
    again = extract_features(FeatureStore(tmp_path / "features", model.feature_key, torch.float32), model, images)
    assert again.encoded == 0 and seen == []


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_stores_round_once_in_their_own_folder(model, tmp_path, dtype):
    images = write_jpegs(tmp_path / "jpg", 6)
    expected = direct(model, images, batch_size=6)
    full = FeatureStore(tmp_path / "features", model.feature_key, torch.float32)
    half = FeatureStore(tmp_path / "features", model.feature_key, dtype)
    extract_features(half, model, images, batch_size=6)
    assert half.folder != full.folder and len(full) == 0
    assert half["img-002"].dtype == dtype
    assert all(torch.equal(half[i], expected[i].to(dtype)) for i in images)


def test_decoding_workers_give_the_same_features(model, tmp_path):
    images = write_jpegs(tmp_path / "jpg", 12)
    alone = FeatureStore(None, model.feature_key)
    workers = FeatureStore(None, model.feature_key)
    extract_features(alone, model, images, batch_size=4, num_workers=0)
    extract_features(workers, model, images, batch_size=4, num_workers=2)
    assert all(torch.equal(alone[i], workers[i]) for i in images)


def test_a_stored_forward_gives_the_logits_of_the_pixel_forward(model, tmp_path):
    images = write_jpegs(tmp_path / "jpg", 4)
    texts = ["what is red ?", "is the circle blue ?", "what is left ?", "is the square right ?"]
    examples = [Example(f"e{n}", text, "yes", image=images[i], image_id=i) for n, (text, i) in enumerate(zip(texts, sorted(images)))]
    store = FeatureStore(tmp_path / "features", model.feature_key, torch.float32)
    extract_features(store, model, images, batch_size=4)
    stored = Collator(model.tokenizer, 32, image_transform=model.image_transform, image_features=store)(examples)
    pixels = Collator(model.tokenizer, 32, image_transform=model.image_transform)(examples)
    assert "image_features" in stored and "pixel_values" in pixels
    with torch.no_grad():
        on, off = model(**stored), model(**pixels)
    assert torch.equal(on.logits, off.logits) and torch.equal(on.loss, off.loss)


def test_a_killed_extraction_keeps_its_shards_and_encodes_only_the_rest(model, tmp_path, monkeypatch):
    images = write_jpegs(tmp_path / "jpg", 24)
    folder = tmp_path / "features"
    store = FeatureStore(folder, model.feature_key, torch.float32, shard_size=8)
    count_encoded(monkeypatch, model, fail_on_call=4)  # batches of 4: two done (one shard), the third's rows pending
    with pytest.raises(KeyboardInterrupt):
        extract_features(store, model, images, batch_size=4)
    assert len(FeatureStore(folder, model.feature_key, torch.float32)) == 8
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]

    seen = count_encoded(monkeypatch, model)
    resumed = FeatureStore(folder, model.feature_key, torch.float32, shard_size=8)
    done = extract_features(resumed, model, images, batch_size=4)
    assert sum(seen) == done.encoded == 16
    expected = direct(model, images, batch_size=4)
    assert sorted(resumed) == sorted(images) and all(torch.equal(resumed[i], expected[i]) for i in images)


def count_every_encoded(monkeypatch) -> list[int]:
    """Images each encoder call of any model saw (several images per example count each)."""
    from dept_vl.models.vl import VLEncoderDecoder

    seen: list[int] = []
    original = VLEncoderDecoder.encode_images

    def encode(self, pixel_values):
        if pixel_values.dim() == 4:  # (B, I, C, H, W) comes back here flattened
            seen.append(pixel_values.shape[0])
        return original(self, pixel_values)

    monkeypatch.setattr(VLEncoderDecoder, "encode_images", encode)
    return seen


WORKER = """
import json, sys, torch
from dept_vl.models import FeatureStore, build_vl_model, extract_features
folder, images_file, rank, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
images = json.load(open(images_file))
torch.manual_seed(0)
model = build_vl_model("tiny", vocabulary=%r).eval()
store = FeatureStore(folder, model.feature_key, torch.float32, shard_size=3)
written = []
add = store.add
store.add = lambda ids, features: (written.extend(ids), add(ids, features))
done = extract_features(store, model, images, rank=rank, world=2, batch_size=1, stall_timeout=120)
with torch.no_grad():
    same = all(torch.equal(store[i], model.encode_images(model.image_transform(p)[None])[0]) for i, p in images.items())
json.dump({"written": written, "encoded": done.encoded, "read": sorted(store), "same": same}, open(out, "w"))
""" % WORDS


def test_two_processes_fill_one_store_each_its_share_and_both_read_all(model, tmp_path):
    images = write_jpegs(tmp_path / "jpg", 14)
    (tmp_path / "images.json").write_text(json.dumps(images))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "features"), str(tmp_path / "images.json"),
                               str(rank), str(tmp_path / f"rank{rank}.json")], env=env, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for rank, result in enumerate(results):
        assert sorted(result["written"]) == share(list(images), rank, 2) and result["encoded"] == 7
        assert result["read"] == sorted(images) and result["same"]
    assert not set(results[0]["written"]) & set(results[1]["written"])


def test_lookups_memory_map_the_shards(model, tmp_path):
    status = Path("/proc/self/status")
    if not status.is_file() or "RssAnon" not in status.read_text():
        pytest.skip("needs /proc/self/status with RssAnon")

    def anonymous_kb() -> int:
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("RssAnon"))

    key, rows = model.feature_key, torch.zeros(128, model.num_visual_tokens, 64)  # 1.2 MB a shard, 12 shards
    writer = FeatureStore(tmp_path / "features", key, torch.float32)
    for shard in range(12):
        writer.add([f"s{shard}-{i}" for i in range(128)], rows + shard)
    del writer, rows
    store = FeatureStore(tmp_path / "features", key, torch.float32)
    assert len(store) == 1536 and store.open_shards == 0  # indexing reads the shards' headers only
    assert float(store["s5-7"].mean()) == 5.0 and store.open_shards == 1
    before = anonymous_kb()
    total = sum(float(store.stack([i]).sum()) for i in list(store))  # every row once, dropped after reading
    grown_mb = (anonymous_kb() - before) / 1024
    assert total == sum(128 * model.num_visual_tokens * 64 * s for s in range(12)) and store.open_shards == 12
    assert grown_mb < 4.0, f"host memory grew by {grown_mb:.1f} MB reading a 14.2 MB store: shards were loaded, not mapped"


def test_an_adapt_run_encodes_the_images_of_its_shots_dev_and_test_only(tmp_path, monkeypatch):
    from dept_vl.config import load_config
    from dept_vl.recipes import adapt
    from dept_vl.train.run import Run

    seen = count_every_encoded(monkeypatch)
    loaded: dict[str, list[Example]] = {}
    original_load = Run.load
    monkeypatch.setattr(Run, "load", lambda self, task, split, size=None: loaded.setdefault(split, original_load(self, task, split, size)))
    splits: list = []
    original_split = adapt.kshot_split
    monkeypatch.setattr(adapt, "kshot_split", lambda *a, **k: splits.append(original_split(*a, **k)) or splits[-1])

    def run(out: str):
        config = load_config(None, [
            "model.preset=tiny", "dept.num_virtual_tokens=4", "dept.rank=2", "dept.max_length=48", "data.train_size=60",
            "data.eval_size=8", "train.batch_size=4", "train.warmup_steps=1", "eval.batch_size=16", "eval.max_new_tokens=4",
            "train.max_steps=1", "train.eval_every=1", "adapt.task=shapes_count", "adapt.source=none", "adapt.k=[1]",
            "adapt.seeds=[0,1]", "adapt.dev_k=1", f"data.feature_dir={tmp_path / 'features'}", f"output_dir={tmp_path / out}"])
        adapt.run_adapt(config, show_progress=False)
        return config

    config = run("a")
    expected = {e.image_id for e in loaded["test"]} | {e.image_id for train, dev in splits for e in train + dev}
    assert len({e.image_id for e in loaded["train"]}) > len(expected - {e.image_id for e in loaded["test"]})  # the pool is larger
    assert sum(seen) == len(expected)
    base = Run.setup(config, ["shapes_count"]).base
    assert set(FeatureStore(tmp_path / "features", base.feature_key, torch.float32)) == expected
    seen.clear()
    run("b")  # another run on the same machine: every image is stored already
    assert seen == []


def test_several_images_per_example_read_each_images_tokens_in_turn(model, tmp_path):
    images = write_jpegs(tmp_path / "jpg", 4)
    a, b, c, d = sorted(images)
    pair = Example("p0", "is the left red ?", "yes", image=(images[a], images[b]), image_id=(a, b))
    other = Example("p1", "is the right blue ?", "no", image=[images[c], images[d]], image_id=[c, d])
    store = FeatureStore(tmp_path / "features", model.feature_key, torch.float32)
    extract_features(store, model, images, batch_size=1)
    stored = Collator(model.tokenizer, 32, image_transform=model.image_transform, image_features=store)([pair, other])
    assert torch.equal(stored["image_features"][0], torch.cat([store[a], store[b]]))
    assert torch.equal(stored["image_features"][1], torch.cat([store[c], store[d]]))
    pixels = Collator(model.tokenizer, 32, image_transform=model.image_transform)([pair, other])
    assert torch.equal(pixels["pixel_values"][0, 1], model.image_transform(images[b]))

    ids, mask = stored["input_ids"], stored["attention_mask"]
    with torch.no_grad():
        embeds, full_mask = model.build_encoder_inputs(ids, mask, image_features=stored["image_features"])
        text = model.get_input_embeddings()(ids)
        each = [model.visual_projection(store[i]) for i in (a, b)]
        assert torch.equal(embeds[0], torch.cat([text[0], *each]))
        assert full_mask.shape == (2, ids.shape[1] + 2 * model.num_visual_tokens) and bool(full_mask[:, ids.shape[1]:].all())
        from_pixels = model.build_encoder_inputs(ids, mask, pixel_values=pixels["pixel_values"])[0]
        assert torch.allclose(from_pixels, embeds, atol=1e-5)
        swapped = dict(stored, image_features=torch.cat([stored["image_features"][:, 36:], stored["image_features"][:, :36]], 1))
        assert not torch.equal(model(**swapped).logits, model(**stored).logits)  # the order of the images counts


def test_multi_image_examples_that_do_not_fit_fail_clearly(model):
    collate = Collator(model.tokenizer, 32, image_transform=model.image_transform)
    from PIL import Image

    picture = Image.new("RGB", (40, 40), (200, 10, 10))
    single = Example("s", "is it red ?", "yes", image=picture, image_id="x")
    pair = Example("p", "is it red ?", "yes", image=(picture, picture), image_id=("x", "y"))
    with pytest.raises(ValueError, match="mixes examples with 1 and 2 images"):
        collate([single, pair])
    with pytest.raises(ValueError, match=r"'q' has 2 images but image_id='x'.*tuple of 2 ids"):
        collate([Example("q", "is it red ?", "yes", image=(picture, picture), image_id="x")])
    with pytest.raises(ValueError, match="images \\* 36"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long), image_features=torch.zeros(1, 50, 64))


def test_bad_values_name_the_value_and_what_to_do(model, tmp_path):
    from dept_vl.config import load_config
    from dept_vl.models.feature_store import resolve_dtype

    with pytest.raises(ValueError, match=r"data.feature_dtype='int8' is unknown; choose auto, float32, bfloat16, float16"):
        resolve_dtype("int8", torch.float32)
    with pytest.raises(ValueError, match=r"data.feature_dtype='int8' is unknown"):
        load_config(None, ["data.feature_dtype=int8"])
    store = FeatureStore(tmp_path / "features", model.feature_key, torch.float32)
    store.add(["x"], torch.zeros(1, 36, 64))
    with pytest.raises(ValueError, match="is the feature folder of one encoder .*set data.feature_dir=" + re.escape(repr(str(tmp_path / "features")))):
        FeatureStore(store.folder, model.feature_key)  # one encoder's folder given as the root
    (store.folder / "feature_key.txt").write_text("another|encoder")
    with pytest.raises(ValueError, match=r"belongs to another encoder \('another\|encoder'.*delete the folder"):
        FeatureStore(tmp_path / "features", model.feature_key)
    other = FeatureStore(None, "another|encoder")
    with pytest.raises(ValueError, match="open the store with model.feature_key"):
        extract_features(other, model, {"x": torch.zeros(3, 48, 48)})


def test_feature_dir_auto_is_the_users_cache_except_for_generated_images(tmp_path, monkeypatch):
    from dept_vl.config import load_config
    from dept_vl.train.loader import feature_folder

    monkeypatch.delenv("DEPT_VL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = load_config(None, []).data
    assert feature_folder(data, generated_only=False) == tmp_path / "cache" / "dept-vl" / "features"
    monkeypatch.setenv("DEPT_VL_CACHE", str(tmp_path / "mine"))  # dept-vl's own cache folder wins
    assert feature_folder(data, generated_only=False) == tmp_path / "mine" / "features"
    assert feature_folder(data, generated_only=True) is None
    assert feature_folder(load_config(None, ["data.feature_dir=null"]).data, generated_only=False) is None
    monkeypatch.setenv("HOME", str(tmp_path))
    assert feature_folder(load_config(None, ["data.feature_dir=~/f"]).data, generated_only=True) == tmp_path / "f"


def test_nlvr2_pairs_score_the_same_from_the_store_as_from_pixels(tmp_path, monkeypatch):
    from PIL import Image

    from dept_vl.config import load_config
    from dept_vl.recipes.evaluate import run_evaluate

    root = tmp_path / "nlvr2"
    (root / "images" / "dev").mkdir(parents=True)
    rows = [{"identifier": f"dev-{n}-0-0", "sentence": "the left image is red .", "label": str(n % 2 == 0)} for n in range(3)]
    (root / "dev.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    gen = torch.Generator().manual_seed(1)
    for n in range(3):
        for side in (0, 1):
            pixels = (torch.rand(40, 44, 3, generator=gen) * 255).byte().numpy()
            Image.fromarray(pixels).save(root / "images" / "dev" / f"dev-{n}-0-img{side}.png")
    seen = count_every_encoded(monkeypatch)
    common = ["model.preset=tiny", f"data.data_dir={root}", "eval.batch_size=4", "eval.max_new_tokens=2"]
    stored = run_evaluate(load_config(None, [*common, f"data.feature_dir={tmp_path / 'features'}"]), None, "nlvr2", "dev",
                          out=tmp_path / "stored")
    assert sum(seen) == 6  # three pairs, each image once; batches read the store only
    pixels = run_evaluate(load_config(None, [*common, "data.feature_cache=false"]), None, "nlvr2", "dev", out=tmp_path / "pixels")
    assert sum(seen) == 12 and stored["metrics"] == pixels["metrics"]
    predictions = [[json.loads(line)["prediction"] for line in (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
                   for name in ("stored", "pixels")]
    assert predictions[0] == predictions[1]
