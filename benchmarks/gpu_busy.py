"""GPU use while training runs: `nvidia-smi` sampled in the background, averaged over the time windows
a benchmark marks (bench_gpu's rows). Without nvidia-smi or CUDA there are no samples and no figure."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from typing import Any


class GpuBusy:
    """`nvidia-smi` sampling GPU utilisation every 200 ms in the background; averaged over time windows."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.process: subprocess.Popen[str] | None = None
        self.windows: list[tuple[float, float]] = []
        if shutil.which("nvidia-smi") is None or not cuda_available():
            return
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
        command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"]
        if visible.isdigit():
            command += ["-i", visible]
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.samples.append((time.monotonic(), float(line.strip())))

    def add_window(self, began: float, ended: float) -> None:
        """A time span to sample; one that starts where the last ended extends it."""
        if self.windows and self.windows[-1][1] == began:
            began = self.windows.pop()[0]
        self.windows.append((began, ended))

    def step_hooks(self) -> Any:
        """train() hooks that make each span from one training step's end to the next's a window.

        An epoch's evaluation and checkpoint come after its last step and before the next epoch's first,
        so they fall outside (as does the first step of each epoch).
        """
        from peftqa.training.loop import TrainHooks

        last_step: list[float | None] = [None]

        def after_step(_state: Any) -> None:
            now = time.monotonic()
            if last_step[0] is not None:
                self.add_window(last_step[0], now)
            last_step[0] = now

        def after_epoch(_entry: dict[str, Any]) -> None:
            last_step[0] = None

        return TrainHooks(after_step=after_step, after_epoch=after_epoch)

    def trainer_callback(self) -> Any:
        """A transformers TrainerCallback that makes the Trainer's training, start to end, a window."""
        from transformers import TrainerCallback

        busy = self

        class TrainingWindow(TrainerCallback):
            began = 0.0

            def on_train_begin(self, *_args: Any, **_kwargs: Any) -> None:
                self.began = time.monotonic()

            def on_train_end(self, *_args: Any, **_kwargs: Any) -> None:
                busy.add_window(self.began, time.monotonic())

        return TrainingWindow()

    def take(self) -> float | None:
        """Mean utilisation over the windows since the last call; None without samples."""
        time.sleep(0.25)  # the last sample of the window
        windows, self.windows = self.windows, []

        def inside(t: float) -> bool:
            return any(a <= t < b for a, b in windows)

        values = [value for t, value in self.samples if inside(t)]
        return sum(values) / len(values) if values else None

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
