"""Several DePT adapters on one base in one forward pass (``dept_vl.dept.multi``): each group of rows gets what its
adapter gives it alone."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("preset", ["tiny", "tiny-bart"])
def test_a_packed_forward_gives_each_group_the_loss_it_has_alone(preset):
    """T5 and BART: the decoder reads each group's own shifted labels (-100 made padding), so each group's mean
    loss is its loss alone; the packed output carries no loss that mixes the groups."""
    import dept_vl.tasks  # noqa: F401 - the presets' vocabulary
    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.dept.multi import group_losses, packed_forward
    from dept_vl.models import build_vl_model

    torch.manual_seed(0)
    base = build_vl_model(preset).eval()
    models = [DePTModel(base, DePTConfig(num_virtual_tokens=3, rank=2, max_length=16)) for _ in range(2)]
    with torch.no_grad():
        for model in models:
            for tensor in model.adapter_state_dict(keep_vars=True).values():
                tensor.normal_()
    batches = []
    for width, label_width in ((5, 3), (8, 4)):  # other widths, and the second group's labels padded in the pack
        ids = torch.randint(3, 20, (2, width))
        labels = torch.randint(3, 20, (2, label_width))
        labels[0, -1] = -100
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    output = packed_forward(list(zip(models, batches)))
    alone = torch.stack([model(**batch).loss for model, batch in zip(models, batches)])
    assert output.loss is None
    torch.testing.assert_close(group_losses(output.logits, [b["labels"] for b in batches]), alone, rtol=0, atol=1e-5)
    assert float((alone[0] - alone[1]).abs().detach()) > 1e-3  # the groups differ: a swap would show
