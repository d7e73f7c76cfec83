"""The config sections: one checked dataclass each (fields with help text), and :class:`RunConfig`, the whole."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dept_vl.config.fields import check_section, option, section
from dept_vl.config.yaml_format import YamlDumper
from dept_vl.dept.config import DePTConfig

# ---------------------------------------------------------------------------------------------------------
# the sections


AUTO_PRESET = "auto"
# model keys that shape the image side; they need an image encoder (the preset's or model.image_encoder)
IMAGE_KEYS = ("image_pretrained", "pool_size", "pool_mode", "keep_prefix_tokens", "image_preprocessing")


@dataclass
class ModelConfig:
    preset: str = option(AUTO_PRESET, "a model preset name (dept_vl.list_presets() lists them), or auto: tiny, unless "
                         "model.text_model names a model", nonempty=True)
    backbone: str | None = option(None, "folder of a pretrained backbone (the demo ships one); null = the preset's own weights")
    dtype: str = option("auto", "weight dtype: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16 or float16",
                        choices=("auto", "float32", "bfloat16", "float16"))
    text_model: str | None = option(None, "a Hugging Face encoder-decoder (hub id or local folder: t5-base, google/flan-t5-base, "
                                    "facebook/bart-base, google/mt5-base); replaces a hub preset's text model; null = the preset's")
    image_encoder: str | None = option(None, "a timm model name (e.g. vit_base_patch16_clip_224.openai); null = the preset's, "
                                       "and none with model.text_model and no preset: a text-only model (no image encoder built)")
    image_pretrained: bool | None = option(None, "load timm's pretrained image weights; null = the preset's (true without one)")
    pool_size: int | None = option(None, "pool the image grid to pool_size x pool_size tokens, 0 = every token; null = the "
                                   "preset's (every token without one)", minimum=0)
    pool_mode: str | None = option(None, "how pool_size pools: avg or max; null = the preset's (avg without one)",
                                   choices=("avg", "max"))
    keep_prefix_tokens: bool | None = option(None, "keep the image encoder's class/register tokens; null = the preset's (false)")
    image_preprocessing: str | None = option(None, "timm (the encoder's data config: resize, centre crop) or vl-adapter "
                                             "(Resize((H, W)), no crop); part of the feature cache key; null = the preset's",
                                             choices=("timm", "vl-adapter"))

    def __post_init__(self) -> None:
        check_section(self, "model")
        named = [f"model.{key}={getattr(self, key)!r}" for key in ("text_model", "image_encoder", *IMAGE_KEYS)
                 if getattr(self, key) is not None]
        if self.backbone and named:
            raise ValueError(f"model.backbone={self.backbone!r} is a whole saved model; {', '.join(named)} cannot change it: "
                             "drop them, or drop model.backbone to build the model from them")
        image = [f"model.{key}" for key in IMAGE_KEYS if getattr(self, key) is not None]
        if image and self.text_only:
            raise ValueError(f"{', '.join(image)} shape(s) an image encoder, but model.text_model={self.text_model!r} without "
                             "a preset builds a text-only model: set model.image_encoder=<a timm name> too, or drop them")
        if self.text_model and self.preset != AUTO_PRESET:
            from dept_vl.models.presets import get_preset

            if get_preset(self.preset).text_config:
                raise ValueError(f"model.preset={self.preset!r} builds its text model from a config (random weights, its own "
                                 f"tokenizer), so model.text_model={self.text_model!r} cannot replace it; set "
                                 f"model.preset={AUTO_PRESET} (or a hub preset such as t5-base+vit-b16-clip)")

    @property
    def text_only(self) -> bool:
        """True when these settings build a text model alone (model.text_model, no preset, no image encoder)."""
        return bool(self.text_model) and self.preset == AUTO_PRESET and not self.image_encoder and not self.backbone

    def build_args(self) -> tuple[str | None, dict[str, Any]]:
        """``(preset, overrides)`` for :func:`dept_vl.models.build_vl_model`: the preset (None when model.text_model
        stands alone) and every model key that is set, as spec fields."""
        overrides: dict[str, Any] = {key: getattr(self, key) for key in ("text_model", "image_encoder", "pool_mode",
                                                                          "keep_prefix_tokens", "image_preprocessing")
                                     if getattr(self, key) is not None}
        if self.pool_size is not None:
            overrides["pool_size"] = self.pool_size or None  # 0: every token
        if self.image_pretrained is not None:
            overrides["image_pretrained"] = self.image_pretrained
        if self.preset != AUTO_PRESET:
            return self.preset, overrides
        return (None, overrides) if self.text_model else ("tiny", overrides)


@dataclass
class LoRAConfig:
    r: int = option(8, "LoRA rank", minimum=1)
    alpha: float = option(16.0, "LoRA scaling: the update is scaled by alpha / r", above=0)
    dropout: float = option(0.0, "dropout on the input of the LoRA update", minimum=0, below=1)
    target_modules: list[str] = option(["q", "v"], "names of the linear layers that get a LoRA update (T5: q, k, v, o, ...)", nonempty=True)
    lr: float = option(1e-3, "learning rate of the LoRA weights", above=0)
    weight_decay: float = option(0.0, "AdamW weight decay of the LoRA weights", minimum=0)

    def __post_init__(self) -> None:
        check_section(self, "lora")


@dataclass
class FullConfig:
    lr: float = option(1e-4, "learning rate of every weight (full fine-tuning)", above=0)
    weight_decay: float = option(0.0, "AdamW weight decay (full fine-tuning)", minimum=0)

    def __post_init__(self) -> None:
        check_section(self, "full")


@dataclass
class ULPTConfig:
    projection: str = option("normal", "the frozen up-projection P (r x d), drawn from dept.seed: normal (N(0, 2/(r+d))) or "
                             "uniform (U(+-sqrt(6/(r+d))), the ULPT code's Xavier-uniform: the same variance)",
                             choices=("normal", "uniform"))

    def __post_init__(self) -> None:
        check_section(self, "ulpt")


@dataclass
class AttemptConfig:
    sources: list[str] = option([], "folders of the frozen source prompts P_1..P_t: prompt-tuning or DePT adapters (their "
                                "prompts), or an ATTEMPT adapter (its source prompts); all of one length m")
    temperature: float | None = option(None, "T of the softmax over prompts; null = d * e (2,087 at d=768, the ATTEMPT "
                                       "code's value)", above=0)

    def __post_init__(self) -> None:
        check_section(self, "attempt")


@dataclass
class MPTConfig:
    rank: int = option(1, "rank of each task's factors u_k v_k (1: the paper's rank-one W_k)", minimum=1)
    tasks: list[str] = option([], "tasks with their own factors; empty = data.tasks (a source run); a target run from a "
                              "source adapter gets adapt.task alone")

    def __post_init__(self) -> None:
        check_section(self, "mpt")


@dataclass
class DataConfig:
    tasks: list[str] = option(["shapes_color", "shapes_exist"], "source tasks trained together (`dept-vl tasks` lists them)")
    # a free name here: the valid formats depend on the tasks, and the run assembly checks them
    format: str = option("default", "input format of every task: 'default' (each task's first format: shifted for the synthetic "
                         "world, the text-to-text format for GLUE) or a named one (plain, shifted, reference, ...)", nonempty=True)
    data_dir: str | None = option(None, "folder with the tasks' local data files; null = each task's default source")
    train_size: int | None = option(None, "examples generated/loaded per task for training; null = the task's default", minimum=1)
    eval_size: int | None = option(500, "examples per task in dev/test evaluation; null = all", minimum=1)
    dev_tasks: list[str] = option([], "pretrain: the tasks of data.tasks scored on the dev split (best-adapter selection, "
                                  "final dev scores); the others are trained on, not scored; empty = every task")
    mixing: str = option("proportional", "how source tasks are sampled: proportional (to their capped sizes) or temperature",
                         choices=("proportional", "temperature"))
    mixing_cap: int = option(10000, "examples-proportional mixing caps each task's size at this", minimum=1)
    temperature: float = option(2.0, "temperature mixing samples a task with weight min(size, mixing_cap) ** (1 / temperature)", above=0)
    max_input_length: int | None = option(None, "truncate text inputs to this many tokens; null = DePT's max_length", minimum=1)
    max_target_length: int = option(32, "truncate target texts to this many tokens", minimum=1)
    length_grouping: bool = option(True, "put examples of similar length in the same batch (less padding)")
    feature_cache: bool = option(True, "cache frozen image-encoder features (identical results, much faster)")
    feature_dir: str | None = option("auto", "where cached image features are kept, shared by every run and process on the "
                                     "machine (memory-mapped shards, one folder per encoder, weights and preprocessing): "
                                     "auto = features/ in dept-vl's cache folder ($DEPT_VL_CACHE, else ~/.cache/dept-vl), except that images generated in "
                                     "memory (the synthetic world) are kept in memory; a folder; null = in memory", nonempty=True)
    task_options: dict[str, dict[str, Any]] = option({}, "options of each task's loader, by task name (e.g. "
                                                     "{nlvr2: {source: hub, image_dir: ...}}; `dept-vl tasks` lists "
                                                     "each task's source); a task refuses options it does not know")
    feature_dtype: str = option("auto", "dtype of cached image features: auto (the encoder's own: bfloat16 on GPU, float32 "
                                "on CPU, nothing rounded), float32, bfloat16 or float16",
                                choices=("auto", "float32", "bfloat16", "float16"))

    def __post_init__(self) -> None:
        check_section(self, "data")


@dataclass
class TrainConfig:
    max_steps: int = option(500, "optimizer steps", minimum=1)
    batch_size: int = option(64, "examples per micro-batch and process", minimum=1)
    grad_accum: int = option(1, "micro-batches accumulated into one optimizer step", minimum=1)
    warmup_steps: int = option(50, "steps of linear learning-rate warm-up", minimum=0)
    max_grad_norm: float = option(1.0, "clip the gradient norm at this (0 = no clipping)", minimum=0)
    seed: int = option(0, "seed of the batch plan, the model's random parts and dropout")
    mixed_precision: str = option("auto", "autocast precision: auto (bf16 on GPU), no, bf16 or fp16",
                                  choices=("auto", "no", "bf16", "fp16"))
    log_every: int = option(50, "log the training loss every this many steps", minimum=1)
    eval_every: int = option(250, "evaluate on the dev split every this many steps (and at the end)", minimum=1)
    patience: int = option(0, "early stopping: end a run once this many evaluations in a row bring no better dev score "
                           "(its best adapter is kept); 0 = train every step", minimum=0)
    save_every: int = option(250, "write a checkpoint every this many steps (0 = never)", minimum=0)
    compile: str = option("auto", "torch.compile the training step: auto (single GPU, where the compile repays itself "
                          "by the measured estimate, scaled by depth: from about 1,250 steps at T5-base), on or off",
                          choices=("auto", "on", "off"))
    compile_scope: str = option("auto", "what a compiled step compiles: model (the whole loss, one graph, CUDA graphs: the "
                                "fastest step, the longest compile), blocks (each transformer block once, its code reused "
                                "by every layer: a short compile) or auto (the one of least estimated time for max_steps)",
                                choices=("auto", "model", "blocks"))
    attention: str = option("auto", "attention kernel: auto (T5 with a frozen base on GPU: biased_cudnn where cuDNN's fused "
                            "attention passes a check against biased_sdpa at start, else biased_sdpa), keep (the "
                            "model's own), eager, sdpa, biased_sdpa or biased_cudnn",
                            choices=("auto", "keep", "eager", "sdpa", "biased_sdpa", "biased_cudnn"))
    num_workers: int = option(0, "data-loader worker processes (0 = load in the main process)", minimum=0)
    stop_at: int = option(0, "> 0: end this job at that step with a checkpoint (time-limited jobs); --resume goes on; "
                          "0 = run to max_steps", minimum=0)
    gradient_sync: str = option("auto", "several processes: ddp, allreduce (one flat all-reduce) or auto (allreduce when compiled)",
                                choices=("auto", "ddp", "allreduce"))
    gradient_checkpointing: bool = option(False, "recompute the base model's activations in the backward pass (less memory, "
                                          "about a third more compute); the text model of the VL model too")
    report_to: str = option("auto", "experiment tracking through accelerate's trackers, into <run folder>/tensorboard or W&B: "
                            "auto (tensorboard when installed), none, tensorboard or wandb",
                            choices=("auto", "none", "tensorboard", "wandb"))

    def __post_init__(self) -> None:
        check_section(self, "train")


@dataclass
class EvalConfig:
    batch_size: int = option(128, "examples per generation batch", minimum=1)
    max_new_tokens: int = option(16, "longest generated answer, in tokens", minimum=1)
    num_beams: int = option(1, "beam search width (1 = greedy decoding)", minimum=1)
    length_penalty: float = option(1.0, "beam search length penalty (exponent on the answer length)")
    split: str = option("test", "split scored at the end of a run: train, dev or test", choices=("train", "dev", "test"))
    pack_rows: int = option(1024, "packed evaluation: the most rows of one generation call that several runs' batches "
                            "share (each run's batches stay its own)", minimum=1)
    cache: str = option("dynamic", "the decoder's key/value cache in generation: dynamic (grows a token at a time), "
                        "static (preallocated: the same tokens; on a GPU transformers compiles greedy decoding's step) or "
                        "compiled (static, and beam search's decoding steps compiled; greedy keeps transformers' compiled step)",
                        choices=("dynamic", "static", "compiled"))

    def __post_init__(self) -> None:
        check_section(self, "eval")


@dataclass
class SweepOptions:
    """A recipe's searches and packing (``adapt.*``, ``pretrain.*``): lists of DePT settings to try, one run
    each, trained together in packs where the method allows it."""

    lr_prompt: list[float] = option([], "a learning-rate search: prompt learning rates, one run each (best by dev score in "
                                    "selection.json); empty = dept.lr_prompt alone", above=0)
    lr_lowrank: list[float] = option([], "a learning-rate search: learning rates of A and B, one run each per lr_prompt; "
                                     "empty = dept.lr_lowrank alone", above=0)
    num_virtual_tokens: list[int] = option([], "a shape search: prompt lengths m, each with the largest rank r that keeps "
                                           "the parameter budget of dept.num_virtual_tokens and dept.rank; one run each per "
                                           "learning-rate setting; empty = no shape search", minimum=1)
    rank: list[int] = option([], "a shape search: ranks r, each with the largest m that keeps the budget (as "
                             "num_virtual_tokens; give one of the two)", minimum=1)
    pack: str = option("auto", "train the runs together, one pass of the frozen base for all (DePT and prompt tuning): "
                       "on, off, or auto (on with a GPU)", choices=("auto", "on", "off"))
    pack_size: int = option(0, "runs per pack; 0 = auto (every run, at most pack_rows rows a step and, on a GPU, as many as a "
                            "measured step fits in its memory)", minimum=0)
    pack_rows: int = option(1024, "auto pack size: the most training rows (runs x batch size) in one packed step", minimum=1)

    def check_sweep(self, section: str) -> None:
        if self.num_virtual_tokens and self.rank:
            raise ValueError(f"{section}.num_virtual_tokens={self.num_virtual_tokens} and {section}.rank={self.rank}: a shape "
                             f"search sets one of the two, the budget sets the other; give one")

    def searches(self) -> bool:
        """Whether any setting is searched (then ``selection.json`` picks by dev score)."""
        return bool(self.lr_prompt or self.lr_lowrank or self.num_virtual_tokens or self.rank)


@dataclass
class AdaptConfig(SweepOptions):
    task: str = option("shapes_count", "target task of the k-shot runs", nonempty=True)
    k: list[int] = option([4, 16, 32], "training examples per class; one run per k and seed", minimum=1, nonempty=True)
    seeds: list[int] = option([0, 1, 2], "seeds of k-shot sampling and training; one run per k and seed", nonempty=True)
    source: str | None = option(None, "source adapter folder to start from; null or 'none' = from scratch")
    transfer: list[str] = option(["prompt", "lowrank", "modules"], "source adapter parts to transfer: prompt, lowrank (A and B), modules",
                                 choices=("prompt", "lowrank", "modules"))
    dev_k: int | None = option(None, "examples (per class) in the k-shot dev split; null = k", minimum=1)
    save_adapters: bool = option(True, "write each run's selected adapter to runs/<label>_k<k>_seed<s>/adapter")

    def __post_init__(self) -> None:
        check_section(self, "adapt")
        self.check_sweep("adapt")


@dataclass
class PretrainConfig(SweepOptions):
    """``dept-vl pretrain``'s searches: one source adapter per setting on the whole mixture (``search/<setting>/``),
    the best by mean dev score copied to ``adapter/``."""

    def __post_init__(self) -> None:
        check_section(self, "pretrain")
        self.check_sweep("pretrain")


@dataclass
class RunConfig:
    # a free name here: the run assembly checks the method against the method registry
    method: str = option("dept", "training method: dept, prompt_tuning, lora, full, ... (a name of the method registry)", nonempty=True)
    output_dir: str = option("runs/default", "folder of the run's checkpoints, metrics, predictions and resolved config.yaml")
    model: ModelConfig = section(ModelConfig, "the frozen base model")
    dept: DePTConfig = section(lambda: DePTConfig(num_virtual_tokens=8, rank=4, max_length=64), "the DePT adapter (method dept / prompt_tuning)")
    lora: LoRAConfig = section(LoRAConfig, "the LoRA adapter (method lora)")
    full: FullConfig = section(FullConfig, "full fine-tuning (method full)")
    ulpt: ULPTConfig = section(ULPTConfig, "ULPT's up-projection (method ulpt; its shapes: dept.*)")
    attempt: AttemptConfig = section(AttemptConfig, "ATTEMPT's source prompts and temperature (method attempt)")
    mpt: MPTConfig = section(MPTConfig, "MPT's task factors (method mpt)")
    data: DataConfig = section(DataConfig, "tasks, their sizes, formats and mixing")
    train: TrainConfig = section(TrainConfig, "the training loop")
    eval: EvalConfig = section(EvalConfig, "evaluation and generation")
    adapt: AdaptConfig = section(AdaptConfig, "k-shot adaptation (dept-vl adapt)")
    pretrain: PretrainConfig = section(PretrainConfig, "searches of source pretraining (dept-vl pretrain)")

    def __post_init__(self) -> None:
        check_section(self, "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        from dept_vl.io import write_text_atomic

        write_text_atomic(path, yaml.dump(self.to_dict(), Dumper=YamlDumper, sort_keys=False))


