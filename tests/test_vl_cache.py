"""VisionFeatureCache: identical logits and loss with and without it, disk shards, keys that never mix encoders."""

from __future__ import annotations

import pytest
import torch

from dept_vl.models import VisionFeatureCache, build_vl_model

WORDS = "what is the red blue circle square yes no".split()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_vl_model("tiny", vocabulary=WORDS).eval()


def images(n: int):
    from PIL import Image

    gen = torch.Generator().manual_seed(5)
    return [Image.fromarray((torch.rand(40, 40, 3, generator=gen) * 255).byte().numpy()) for _ in range(n)]


def test_cache_on_off_identical_logits_and_loss(model, tmp_path):
    pics, ids = images(3), ["img-a", "img-b", "img-c"]
    enc = model.tokenizer(["what is red?", "is the circle blue?", "what is the square?"], return_tensors="pt", padding=True)
    labels = model.tokenizer(["yes", "no", "red"], return_tensors="pt").input_ids
    pixels = torch.stack([model.image_transform(p) for p in pics])
    off = model(**enc, pixel_values=pixels, labels=labels)

    cache = VisionFeatureCache(tmp_path)
    features = cache.get_or_compute(ids, pics, model)
    assert cache.misses == 3 and cache.hits == 0 and len(cache) == 3
    on = model(**enc, image_features=features, labels=labels)
    assert torch.equal(on.logits, off.logits) and torch.equal(on.loss, off.loss)

    again = cache.get_or_compute(ids, pics, model)  # second epoch: no encoder call
    assert cache.hits == 3 and torch.equal(again, features)
    reopened = VisionFeatureCache(tmp_path)  # a later run reads the shards from disk
    from_disk = reopened.get_or_compute(ids, lambda missing: pytest.fail(f"recomputed {missing}"), model)
    assert reopened.misses == 0 and torch.equal(from_disk, features)
    assert torch.equal(model(**enc, image_features=from_disk, labels=labels).logits, off.logits)


def test_only_missing_ids_are_computed_and_duplicates_once(model):
    cache = VisionFeatureCache()
    asked: list[list[str]] = []

    def pixels_for(missing):
        asked.append(list(missing))
        return torch.stack([model.image_transform(p) for p in images(len(missing))])

    cache.get_or_compute(["x", "y"], pixels_for, model)
    out = cache.get_or_compute(["y", "z", "z"], pixels_for, model)
    assert asked == [["x", "y"], ["z"]] and out.shape == (3, model.num_visual_tokens, 64)
    assert torch.equal(out[1], out[2])


def test_other_encoder_weights_or_preprocessing_get_their_own_entries(model, tmp_path):
    other = build_vl_model("tiny", vocabulary=WORDS).eval()  # same name, other random weights
    pooled = build_vl_model("tiny", vocabulary=WORDS, pool_size=2).eval()
    assert len({model.feature_key, other.feature_key, pooled.feature_key}) == 3
    cache = VisionFeatureCache(tmp_path)
    pics = images(1)
    a = cache.get_or_compute(["img"], pics, model)
    b = cache.get_or_compute(["img"], pics, other)
    assert cache.misses == 2 and not torch.equal(a, b)
    assert cache.get_or_compute(["img"], pics, pooled).shape == (1, 4, 64)
    key = other.feature_key
    other.image_encoder.load_state_dict(model.image_encoder.state_dict())  # weights written in place
    assert other.feature_key == model.feature_key != key


def test_cache_errors(model):
    cache = VisionFeatureCache()
    with pytest.raises(ValueError, match="one image per id"):
        cache.get_or_compute(["a", "b"], images(1), model)
    with pytest.raises(ValueError, match="non-empty strings"):
        cache.get_or_compute([None], images(1), model)
    with pytest.raises(ValueError, match=r"returned \(2, 3, 48, 48\) for 1 missing ids"):
        cache.get_or_compute(["a"], lambda missing: torch.zeros(2, 3, 48, 48), model)
    trainable = build_vl_model("tiny", vocabulary=WORDS, freeze_image_encoder=False)
    with pytest.raises(ValueError, match="frozen image encoder"):
        cache.get_or_compute(["a"], images(1), trainable)
