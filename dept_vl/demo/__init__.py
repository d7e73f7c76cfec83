"""The offline demo: a frozen tiny backbone, the synthetic world, DePT source pretraining and k-shot transfer."""
