"""The method registry and the one adapter format: every method saves a folder that records its method and
loads back through the registry; LoRA and prompt-tuning folders are also peft folders."""

from __future__ import annotations

import json

import pytest
import torch

from dept_vl.config import FullConfig, LoRAConfig, RunConfig
from dept_vl.dept import DePTConfig
from dept_vl.methods import Method, get_method, list_methods, load_adapter_model, register_method
from tests.conftest import tiny_t5


def test_the_methods_are_registered_with_their_results_labels():
    assert list_methods()[:8] == ["dept", "prompt_tuning", "lora", "full", "adept", "ulpt", "attempt", "mpt"]
    labels = {name: get_method(name).results_label(True) for name in list_methods()[:8]}
    assert labels == {"dept": "dept-transfer", "prompt_tuning": "pt-transfer", "lora": "lora-transfer", "full": "full-transfer",
                      "adept": "adept-transfer", "ulpt": "ulpt-transfer", "attempt": "attempt-transfer", "mpt": "mpt-transfer"}
    assert get_method("prompt_tuning").results_label(False) == "pt-scratch"


def test_unknown_method_names_the_closest_and_all(tmp_path):
    with pytest.raises(ValueError, match="method='lroa' is unknown; did you mean lora.*choose one of dept, prompt_tuning, lora, full"):
        get_method("lroa")


def test_a_new_method_registers_in_one_file_and_a_name_clash_is_refused():
    class Mine(Method):
        name, label = "mine_for_test", "mine"

    register_method(Mine)
    assert get_method("mine_for_test").results_label(False) == "mine-scratch"

    class Other(Method):
        name, label = "dept", "other"

    with pytest.raises(ValueError, match="registered twice"):
        register_method(Other)


def _config(**dept) -> RunConfig:
    return RunConfig(dept=DePTConfig(num_virtual_tokens=4, rank=2, max_length=16, **dept), lora=LoRAConfig(r=2), full=FullConfig())


def _perturb(model) -> None:
    """Move every trained tensor off its initial value (LoRA's B and DePT's B start at zero)."""
    with torch.no_grad():
        for i, p in enumerate(model.trainable_parameters().values()):
            p.add_(0.01 * (i + 1))


@pytest.mark.parametrize("name", ["dept", "prompt_tuning", "lora", "full"])
def test_every_method_round_trips_through_its_adapter_folder(tmp_path, name):
    method = get_method(name)
    model = method.build(_config(), tiny_t5())
    _perturb(model)
    model.save_pretrained(tmp_path)
    record = json.loads((tmp_path / "adapter_config.json").read_text())["dept_vl"]
    assert record["method"] == name and record["base_model"]["d_model"] == 64
    loaded = load_adapter_model(tiny_t5(), tmp_path)
    assert type(loaded) is type(model) and not loaded.training
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    labels = ids[:, :3].clone()
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(loaded(input_ids=ids, labels=labels).logits, model(input_ids=ids, labels=labels).logits)
        assert not torch.allclose(tiny_t5()(input_ids=ids, labels=labels).logits, model(input_ids=ids, labels=labels).logits)


def test_lora_folder_is_a_peft_folder_with_the_same_outputs(tmp_path):
    from peft import PeftModel

    model = get_method("lora").build(_config(), tiny_t5())
    _perturb(model)
    model.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="dept_vl"):  # peft ignores dept-vl's own record, with a warning
        peft_model = PeftModel.from_pretrained(tiny_t5(), tmp_path).eval()
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(peft_model(input_ids=ids, labels=ids[:, :3].clone()).logits, model(input_ids=ids, labels=ids[:, :3].clone()).logits)


def test_prompt_tuning_folder_is_a_peft_folder_with_the_same_outputs(tmp_path):
    from peft import PeftModel

    model = get_method("prompt_tuning").build(_config(), tiny_t5())
    assert (model.dept_config.rank, model.dept_config.num_virtual_tokens) == (0, (4 * 64 + 2 * (16 + 64)) // 64)
    model.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="dept_vl"):
        peft_model = PeftModel.from_pretrained(tiny_t5(), tmp_path).eval()
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        model.eval()
        ours = model(input_ids=ids, attention_mask=mask, labels=ids[:, :3].clone()).logits
        theirs = peft_model(input_ids=ids, attention_mask=mask, labels=ids[:, :3].clone()).logits
    torch.testing.assert_close(theirs, ours)


def test_a_source_of_another_method_is_refused_by_name(tmp_path):
    from dept_vl.adapter import read_adapter

    get_method("prompt_tuning").build(_config(), tiny_t5()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'prompt_tuning' adapter but method='dept'"):
        get_method("dept").with_source(_config(), read_adapter(tmp_path))
    with pytest.raises(ValueError, match="method 'lora' cannot start from a source adapter"):
        get_method("lora").with_source(_config(), read_adapter(tmp_path))
