"""Recipes (YAML run configs), installed as ``dept_vl.recipes``: ``dept-vl pretrain --config shapes_pretrain``."""
