"""Recipes (YAML run configs), installed as ``dept_vl.recipe_files``: ``dept-vl pretrain --config shapes_pretrain``."""
