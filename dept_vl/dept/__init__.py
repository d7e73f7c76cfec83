"""The method: Decomposed Prompt Tuning on any Hugging Face encoder-decoder."""

from dept_vl.dept.budget import budget
from dept_vl.dept.config import DePTConfig
from dept_vl.dept.model import DePTModel
from dept_vl.dept.official import convert_official, from_official

__all__ = ["DePTConfig", "DePTModel", "budget", "convert_official", "from_official"]
