"""The checkpoint side of the training loop: resume discovery, when to save, async finalize.

`Checkpointer.resume()` finds where to start: `checkpoint.save` when it already holds a
checkpoint (a requeued job continues), else `checkpoint.load` (the previous stage, or an imported
model), else iteration 0. The checkpoint's files are verified against their checksums first; a
damaged one is an error naming the files, or, with `checkpoint.fallback_to_intact`, a warning and
a resume from the newest intact iteration. `maybe_save` saves every `checkpoint.save_interval`
iterations, `save` at exit; with `checkpoint.async_save` one save at a time is written in the
background and published by `poll` (every step) or `finish`. Retention (`keep_last_n`,
`keep_every_m`) runs inside the publish step, after the newer checkpoint is in place.
"""

from __future__ import annotations

from collections.abc import Callable

from megatron_agentic import checkpoint_files, checkpointing
from megatron_agentic.checkpoint_files import RELEASE, CheckpointCorrupt, iteration_dir, read_latest
from megatron_agentic.checkpointing import Progress, SaveOptions, Trainable


class Checkpointer:
    """Saves and restores `trainable` as the `checkpoint` section of `run_config` says."""

    def __init__(self, run_config, trainable: Trainable, log: Callable[[str], None]):
        self.section = run_config.checkpoint
        self.run_config = run_config
        self.trainable = trainable
        self.log = log
        self.options = SaveOptions(
            optimizer_format=self.section.optimizer_format,
            keep_last_n=self.section.keep_last_n,
            keep_every_m=self.section.keep_every_m,
        )
        self.async_queue = None
        if self.section.async_save:
            from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

            self.async_queue = AsyncCallsQueue()
        self.saved_at: int | None = None  # iteration of the newest save (maybe still in flight)

    # --- resume -----------------------------------------------------------------------------

    def resume(self) -> Progress:
        """Load what the run continues from; returns where it stands."""
        save, load = self.section.save, self.section.load
        if save and read_latest(save) is not None:
            progress = self._load(save, load_optimizer=True)
            self.log(
                f"resumed {save} at iteration {progress.iteration} "
                f"({progress.consumed_samples} samples consumed)"
            )
        elif load:
            progress = self._load(load, load_optimizer=self.section.load_optimizer)
            self.log(f"loaded {load} (starting at iteration {progress.iteration})")
        else:
            progress = Progress()
        self.saved_at = progress.iteration
        return progress

    def _load(self, root: str, load_optimizer: bool) -> Progress:
        iteration = self._intact_iteration(root)
        model, optimizer, scheduler = (
            self.trainable.model,
            self.trainable.optimizer,
            self.trainable.scheduler,
        )
        loaded = checkpointing.load_checkpoint(
            root, model, optimizer, scheduler, load_optimizer, iteration=iteration, verify=False
        )
        return Progress(*loaded)

    def _intact_iteration(self, root: str) -> int | str:
        """The latest iteration if its files verify; else the newest intact one when
        `fallback_to_intact` is set; else `CheckpointCorrupt` naming the damaged files."""
        latest = read_latest(root)
        if latest is None:
            raise FileNotFoundError(f"{root}: no {checkpoint_files.LATEST} (nothing to load)")
        directory = iteration_dir(root, latest)
        if directory.is_dir():
            problems = checkpoint_files.checkpoint_problems(directory)
        else:
            problems = [f"{directory}: missing (named by {checkpoint_files.LATEST})"]
        if not problems:
            return latest
        error = f"{directory}: {len(problems)} file(s) differ from what was saved: " + "; ".join(
            problems
        )
        if not self.section.fallback_to_intact or latest == RELEASE:
            raise CheckpointCorrupt(
                error + " (checkpoint.fallback_to_intact=true resumes from the newest intact one)"
            )
        intact = checkpoint_files.newest_intact_iteration(root, below=latest)
        if intact is None:
            raise CheckpointCorrupt(error + f"; no intact older checkpoint under {root}")
        self.log(f"warning: {error}; resuming from iteration {intact}, the newest intact one")
        return intact

    # --- save -------------------------------------------------------------------------------

    def maybe_save(self, progress: Progress) -> None:
        """Save when the iteration is a multiple of `checkpoint.save_interval`."""
        if progress.iteration % self.section.save_interval == 0:
            self.save(progress)

    def save(self, progress: Progress) -> None:
        """Save this iteration (unless it is already saved, or there is nowhere to save)."""
        if not self.section.save or self.saved_at == progress.iteration:
            return
        self.finish()  # at most one save in flight
        checkpointing.save_checkpoint(
            self.section.save,
            self.trainable,
            progress,
            self.run_config,
            self.options,
            async_queue=self.async_queue,
        )
        self.saved_at = progress.iteration
        background = self.async_queue is not None
        self.log(
            f"{'saving' if background else 'saved'} checkpoint at iteration "
            f"{progress.iteration} to {self.section.save}"
            + (" (in the background)" if background else "")
        )

    def poll(self) -> None:
        """Publish a background save that every rank has finished writing (a collective)."""
        self._finalize(blocking=False)

    def finish(self) -> None:
        """Wait for the background save, if any, and publish it."""
        self._finalize(blocking=True)

    def _finalize(self, blocking: bool) -> None:
        from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

        if self.async_queue is None:
            return
        try:
            finished = self.async_queue.maybe_finalize_async_calls(blocking=blocking)
        except CheckpointException as error:  # the background writing failed (e.g. disk full)
            raise checkpointing.async_save_failed(self.section.save, self.saved_at, error) from (
                error
            )
        if finished:
            self.log(f"saved checkpoint at iteration {self.saved_at} to {self.section.save}")
