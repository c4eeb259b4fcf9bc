"""What the trainer reports each step, and where: the console, TensorBoard and W&B.

`MetricsLogger` turns one step's result into figures - loss, lm loss, MoE load-balancing loss,
grad norm, lr, time per iteration, ETA, consumed samples and tokens, tokens/s, TFLOP/s per GPU,
MFU (only where the accelerator's peak is known), memory - and hands them to its sinks. Each sink
is independent: the console line on rank 0, TensorBoard when `logging.tensorboard_dir` is set,
W&B when `logging.wandb_project` is set (both on the last rank, Megatron-LM's convention).

`MoEStats` collects, on every rank (its reductions are collectives), the router's load-balancing
loss from megatron-core's MoE metrics tracker and the per-expert token load of every MoE layer,
counted from each router's routing map: min/max tokens per expert and the imbalance max/mean
(1.0 = perfectly balanced) per layer - what MoE users watch for collapsing or starved experts.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from dataclasses import dataclass

import torch

from megatron_agentic import parallel

# Dense bf16 tensor-core peaks (TFLOP/s) by GPU name; MFU is left out on anything else (CPU).
PEAK_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "H200": 989.0,
    "H800": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "GB200": 2500.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
}


def peak_tflops(configured: float | None) -> float | None:
    """The configured peak, else the peak of this GPU by name, else None (no MFU)."""
    if configured:
        return configured
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


@dataclass(frozen=True)
class LayerLoad:
    """Tokens routed to the experts of one MoE layer since the last report."""

    layer: int  # 1-based, as megatron-core numbers layers
    min_tokens: int
    max_tokens: int
    imbalance: float  # max / mean over experts; 1.0 = balanced


class ExpertLoad:
    """Per-expert token counts of every MoE layer, from forward hooks on megatron-core's routers.

    Counted only in training forward passes with gradients on: not in evaluation, and once under
    full recompute (megatron-core's first pass runs without gradients, the recompute with them).
    """

    def __init__(self, model, num_layers: int, num_experts: int, token_copies: int):
        from megatron.core.transformer.moe.router import TopKRouter

        self.counts = torch.zeros(num_layers, num_experts, dtype=torch.int64, device="cuda")
        self.token_copies = token_copies  # TP ranks that route the same tokens (no SP)
        self.hooks = [
            module.register_forward_hook(self._count)
            for chunk in model
            for module in chunk.modules()
            if isinstance(module, TopKRouter)
        ]

    def _count(self, router, inputs, output) -> None:
        # (multi-token-prediction layers, numbered after the decoder's, are not counted)
        if router.training and torch.is_grad_enabled() and router.layer_number <= len(self.counts):
            routing_map = output[1]
            self.counts[router.layer_number - 1] += routing_map.sum(dim=0).to(torch.int64)

    def take(self) -> list[LayerLoad]:
        """Every layer's load over all ranks since the last call (a collective), then reset."""
        counts = self.counts.clone()
        self.counts.zero_()
        torch.distributed.all_reduce(counts)
        counts = (counts // self.token_copies).cpu()
        loads = []
        for layer, row in enumerate(counts, start=1):
            if int(row.sum()) == 0:  # not a MoE layer
                continue
            mean = float(row.double().mean())
            loads.append(LayerLoad(layer, int(row.min()), int(row.max()), float(row.max()) / mean))
        return loads


class MoEStats:
    """Router load-balancing loss and expert load of each step; call `collect` on every rank."""

    def __init__(self, model, model_config, sequence_parallel: bool, tp: int):
        self.num_layers = model_config.num_layers
        self.expert_load = ExpertLoad(
            model, model_config.num_layers, model_config.num_experts, 1 if sequence_parallel else tp
        )

    def collect(self, iteration: int, num_micro: int, with_load: bool) -> dict:
        """{"load balancing loss": unscaled aux loss (1.0 = balanced), "expert load": [...]}."""
        from megatron.core.transformer.moe.moe_utils import get_moe_metrics_tracker

        losses: dict = {}
        get_moe_metrics_tracker().report(
            loss_scale=1.0 / num_micro,
            iteration=iteration,
            total_loss_dict=losses,
            num_layers=self.num_layers,
        )
        figures = {"load balancing loss": sum(float(value) for value in losses.values())}
        if with_load:
            figures["expert load"] = self.expert_load.take()
        return figures


# --- sinks --------------------------------------------------------------------------------------


class ConsoleSink:
    """One line per logged step (and per validation) on stdout."""

    def step(self, iteration: int, train_iters: int, figures: dict) -> None:
        load = figures.get("expert load")
        text = " | ".join(
            _console(key, value) for key, value in figures.items() if key != "expert load"
        )
        print(f"iteration {iteration:6d}/{train_iters} | {text}", flush=True)
        if load:
            worst = max(load, key=lambda layer: layer.imbalance)
            per_layer = " | ".join(
                f"layer {x.layer} min {x.min_tokens} max {x.max_tokens} imbalance {x.imbalance:.3f}"
                for x in load
            )
            print(
                f"iteration {iteration:6d} expert load (tokens per expert) | worst layer "
                f"{worst.layer} imbalance {worst.imbalance:.3f} | {per_layer}",
                flush=True,
            )

    def validation(self, iteration: int, loss: float, ppl: float) -> None:
        print(
            f"validation at iteration {iteration} | lm loss {loss:.4f} | ppl {ppl:.2f}", flush=True
        )

    def close(self) -> None:
        pass


def _console(key: str, value) -> str:
    if key == "ETA":
        return f"ETA {datetime.timedelta(seconds=round(value))}"
    if key == "time/iter":
        return f"time/iter {value:.3f} s"
    if isinstance(value, int):
        return f"{key} {value:,}"
    return f"{key} {value:.4g}"


def _scalars(figures: dict) -> dict[str, float]:
    """Flat {name: number} for TensorBoard and W&B, the expert load per layer included."""
    scalars = {
        key.replace(" ", "_").replace("/", "_per_"): float(value)
        for key, value in figures.items()
        if key != "expert load"
    }
    for load in figures.get("expert load") or ():
        for name in ("min_tokens", "max_tokens", "imbalance"):
            scalars[f"expert_load/layer_{load.layer}/{name}"] = float(getattr(load, name))
    return scalars


class TensorBoardSink:
    def __init__(self, log_dir: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=log_dir)

    def step(self, iteration: int, train_iters: int, figures: dict) -> None:
        for key, value in _scalars(figures).items():
            self.writer.add_scalar(key, value, iteration)

    def validation(self, iteration: int, loss: float, ppl: float) -> None:
        self.writer.add_scalar("validation_lm_loss", loss, iteration)
        self.writer.add_scalar("validation_ppl", ppl, iteration)

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """A W&B run whose config is the resolved training config (a dict, as W&B expects).
    `WANDB_MODE=offline` writes it locally for a later `wandb sync`."""

    def __init__(self, project: str, run_name: str | None, run_config: dict):
        import wandb

        self.run = wandb.init(project=project, name=run_name, config=run_config)

    def step(self, iteration: int, train_iters: int, figures: dict) -> None:
        self.run.log(_scalars(figures), step=iteration)

    def validation(self, iteration: int, loss: float, ppl: float) -> None:
        self.run.log({"validation_lm_loss": loss, "validation_ppl": ppl}, step=iteration)

    def close(self) -> None:
        self.run.finish()


# --- the logger ---------------------------------------------------------------------------------


@dataclass
class StepReport:
    """One optimizer step as the loop saw it."""

    iteration: int
    lm_loss: float
    grad_norm: float
    lr: float
    seconds: float
    consumed_samples: int
    moe: dict = dataclasses.field(default_factory=dict)  # MoEStats.collect's figures


class MetricsLogger:
    """Figures of each step and validation, to the console, TensorBoard and W&B."""

    def __init__(self, config, flops_per_token: float):
        self.config = config
        self.flops_per_token = flops_per_token
        self.peak = peak_tflops(config.logging.gpu_peak_tflops)
        self.recent = collections.deque(maxlen=20)  # seconds of the last steps, for the ETA
        self.sinks = _sinks(config)

    def step(self, report: StepReport) -> None:
        self.recent.append(report.seconds)
        if report.iteration % self.config.logging.log_interval == 0 and self.sinks:
            figures = self.figures(report)
            for sink in self.sinks:
                sink.step(report.iteration, self.config.schedule.train_iters, figures)

    def figures(self, report: StepReport) -> dict:
        data, model = self.config.data, self.config.model
        seconds = sum(self.recent) / len(self.recent)
        tokens_per_s = data.global_batch_size * data.seq_length / report.seconds
        tflops = self.flops_per_token * tokens_per_s / torch.distributed.get_world_size() / 1e12
        balance = report.moe.get("load balancing loss", 0.0)
        figures = {
            "loss": report.lm_loss + model.moe_aux_loss_coeff * balance,
            "lm loss": report.lm_loss,
            "load balancing loss": balance,
            "grad norm": report.grad_norm,
            "lr": report.lr,
            "time/iter": report.seconds,
            "ETA": seconds * (self.config.schedule.train_iters - report.iteration),
            "samples": report.consumed_samples,
            "tokens": report.consumed_samples * data.seq_length,
            "tokens/s": tokens_per_s,
            "TFLOP/s/GPU": tflops,
        }
        if self.peak:
            figures["MFU"] = tflops / self.peak
        figures["mem GiB"] = _memory_gib()
        if report.moe.get("expert load"):
            figures["expert load"] = report.moe["expert load"]
        return figures

    def validation(self, iteration: int, loss: float) -> None:
        from megatron_agentic.evaluation import perplexity

        for sink in self.sinks:
            sink.validation(iteration, loss, perplexity(loss))

    def message(self, text: str) -> None:
        """A line on rank 0's console."""
        if parallel.is_rank0():
            print(text, flush=True)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _sinks(config) -> list:
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    sinks: list = [ConsoleSink()] if rank == 0 else []
    if rank == world - 1:
        if config.logging.tensorboard_dir:
            sinks.append(TensorBoardSink(config.logging.tensorboard_dir))
        if config.logging.wandb_project:
            sinks.append(
                WandbSink(
                    config.logging.wandb_project,
                    config.logging.wandb_run_name,
                    dataclasses.asdict(config),
                )
            )
    return sinks


def _memory_gib() -> float:
    """GPU max allocated, or the process RSS on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import psutil

    return psutil.Process().memory_info().rss / 2**30
