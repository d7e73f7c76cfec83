"""Recipes: one readable file per command, each wiring the run assembly (``dept_vl.train.run.Run``) as
setup, train, save. ``pretrain`` (source tasks), ``adapt`` (k-shot transfer), ``evaluate`` (one split),
``backbone`` (full training of a whole VL model, for the demo's frozen backbone)."""
