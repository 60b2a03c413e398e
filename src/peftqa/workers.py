"""Several worker processes on one machine: which GPU and how many CPU threads each gets, where its
output goes, and what comes back.

`peftqa sweep --workers K` and `peftqa study --workers K` start K processes with the "spawn" start
method (a forked child of a process that has touched torch can deadlock). Each worker sees one GPU
(CUDA_VISIBLE_DEVICES; several workers share one when there are more workers than GPUs, or
`--workers-per-gpu` of them each) and max(1, cores // K) CPU threads. Everything a worker prints
(progress bars, warnings, training lines) goes to its own log file; only the lines it `say`s reach
the console, one line per finished trial or run, prefixed with the worker's name.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftqa.errors import PeftqaError
from peftqa.hardware import cpu_cores, visible_gpus

# What a job's target is called with, besides its own arguments: log (the worker's log file only)
# and say (the console too, prefixed).
Log = Callable[[str], None]


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: its GPU (a CUDA_VISIBLE_DEVICES entry; None on a CPU) and its threads."""

    index: int  # 1-based
    gpu: str | None
    threads: int

    def describe(self) -> str:
        where = f"GPU {self.gpu}" if self.gpu is not None else "CPU"
        return f"{where}, {self.threads} CPU thread{'s' if self.threads != 1 else ''}"


@dataclass(frozen=True)
class Job:
    """One piece of work for a worker process: `target(*args, log=..., say=...)`; its return value
    must pickle (it travels back to the parent)."""

    label: str
    target: Callable[..., Any]
    args: tuple = ()


@dataclass(frozen=True)
class Outcome:
    label: str
    value: Any = None
    error: str | None = None  # one line; None when the job finished

    @property
    def ok(self) -> bool:
        return self.error is None


def worker_count(workers: int | None, workers_per_gpu: int | None, gpus: int) -> int:
    """--workers when given; else --workers-per-gpu on every GPU (on a CPU: that many); else 1."""
    for name, value in (("--workers", workers), ("--workers-per-gpu", workers_per_gpu)):
        if value is not None and value < 1:
            raise PeftqaError(f"{name} must be at least 1, got {value}")
    if workers is not None:
        return workers
    if workers_per_gpu is not None:
        return workers_per_gpu * max(1, gpus)
    return 1


def plan_slots(
    workers: int | None,
    workers_per_gpu: int | None = None,
    gpus: Sequence[str] | None = None,
    cores: int | None = None,
) -> list[Slot]:
    """One slot per worker. GPUs are filled `per_gpu` workers at a time (default: as evenly as the
    count allows, so K <= GPUs gives one GPU each); the CPU cores are shared out evenly."""
    gpus = visible_gpus() if gpus is None else list(gpus)
    count = worker_count(workers, workers_per_gpu, len(gpus))
    threads = max(1, (cores or cpu_cores()) // count)
    per_gpu = workers_per_gpu or (math.ceil(count / len(gpus)) if gpus else 1)
    return [
        Slot(index=i + 1, gpu=gpus[(i // per_gpu) % len(gpus)] if gpus else None, threads=threads) for i in range(count)
    ]


def run_jobs(jobs: Sequence[Job], slots: Sequence[Slot], log_dir: Path, say: Log = print) -> list[Outcome]:
    """Run the jobs in worker processes, len(slots) at a time, each in the next free slot; returns
    their outcomes in the jobs' order. A job that raises, or whose process dies (even by SIGKILL),
    has an error instead of a value; the others carry on. Job i's output is in log_dir/<label>.log."""
    import multiprocessing
    import multiprocessing.connection

    context = multiprocessing.get_context("spawn")  # torch + fork is unsafe
    log_dir.mkdir(parents=True, exist_ok=True)
    waiting = list(enumerate(jobs))
    free = list(slots)
    outcomes: dict[int, Outcome] = {}
    running: dict[Any, tuple[int, Slot, Any, Any]] = {}  # sentinel -> (job index, slot, process, reader)
    messages: dict[int, tuple[str, Any]] = {}  # job index -> ("ok", value) | ("error", line) | ("died", None)
    while waiting or running:
        while waiting and free:
            index, job = waiting.pop(0)
            slot = free.pop(0)
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_child,
                args=(job, slot, str(_log_path(log_dir, job.label)), writer),
                name=f"peftqa {job.label}",
                daemon=True,  # ended with this process if it stops early (Ctrl-C, an error)
            )
            with _environment(_child_environment(slot)):
                process.start()
            writer.close()  # the child holds the only writing end: the parent sees EOF when it dies
            say(f"[{job.label}] started: pid {process.pid}, {slot.describe()}, log {_log_path(log_dir, job.label)}")
            running[process.sentinel] = (index, slot, process, reader)
        # Read results as they come (a large one would block its child's exit until read), and
        # settle a job when its process has exited.
        unread = {reader: index for index, _, _, reader in running.values() if index not in messages}
        for ready in multiprocessing.connection.wait([*running, *unread]):
            if ready in unread:
                try:
                    messages[unread[ready]] = _receive(ready)
                except (EOFError, OSError):  # died before sending: settled by its sentinel
                    messages[unread[ready]] = ("died", None)
                continue
            index, slot, process, reader = running.pop(ready)
            process.join()
            if index not in messages and reader.poll():
                try:
                    messages[index] = reader.recv()
                except (EOFError, OSError):
                    pass
            reader.close()
            free.append(slot)
            label = jobs[index].label
            kind, payload = messages.get(index, ("died", None))
            if kind == "ok":
                outcomes[index] = Outcome(label, value=payload)
                continue
            error = str(payload) if kind == "error" else _exit_reason(process.exitcode)
            outcomes[index] = Outcome(label, error=error)
            say(f"[{label}] failed: {error}")
    return [outcomes[i] for i in range(len(jobs))]


def _receive(reader: Any) -> tuple[str, Any]:
    return reader.recv()


def _log_path(log_dir: Path, label: str) -> Path:
    return log_dir / f"{label.replace(' ', '-').replace('/', '-')}.log"


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the process was killed ({name})"
    return f"the process exited with status {code} without a result"


def _child_environment(slot: Slot) -> dict[str, str]:
    environment = {
        # torch's intra-op threads (torch.get_num_threads) start at OMP_NUM_THREADS when it is imported.
        "OMP_NUM_THREADS": str(slot.threads),
        "MKL_NUM_THREADS": str(slot.threads),
        # A worker's bars go to its log file: one refresh every 30 s keeps that file readable.
        "TQDM_MININTERVAL": "30",
    }
    if slot.gpu is not None:
        environment["CUDA_VISIBLE_DEVICES"] = slot.gpu
    return environment


class _environment:
    """Set environment variables for the duration of a block (a spawned child copies them at start)."""

    def __init__(self, values: dict[str, str]):
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for name, value in self.values.items():
            self.saved[name] = os.environ.get(name)
            os.environ[name] = value

    def __exit__(self, *_exc: object) -> None:
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _child(job: Job, slot: Slot, log_path: str, writer: Any) -> None:
    """A worker process: output to its log file, `say` lines also to the console, result to the parent."""
    console = os.dup(1)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    # File descriptors, not just sys.stdout: C libraries and tqdm's stderr land in the log as well.
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper here

    def log(line: str) -> None:
        print(line, flush=True)

    def say(line: str) -> None:
        log(line)
        try:
            os.write(console, f"[{job.label}] {line}\n".encode())
        except OSError:  # the console went away (a closed pipe): the log still has the line
            pass

    # torch takes its thread count from OMP_NUM_THREADS (set for this process by run_jobs) when
    # imported; one the job's import has already brought in is set here.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(slot.threads)
    log(f"{job.label}: pid {os.getpid()}, {slot.describe()}")
    try:
        value = job.target(*job.args, log=log, say=say)
    except PeftqaError as error:
        log(f"error: {error}")
        writer.send(("error", str(error)))
        return
    except BaseException as error:  # the parent needs a line; the traceback is in the log
        traceback.print_exc()
        first = str(error).splitlines()[0] if str(error) else ""
        writer.send(("error", f"{type(error).__name__}: {first} (traceback in {log_path})"))
        return
    writer.send(("ok", value))
