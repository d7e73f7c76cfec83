"""Data: the Example record, the task registry (``tasks/``), k-shot sampling, the synthetic world."""
