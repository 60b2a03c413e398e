"""What the serving benchmarks (bench_serve_*.py) share: the runs to measure, the models loaded in each
mode, the example request, the app under waitress, percentiles.

Threads per model are those `peftqa serve` gives (serve.loading.threads_per_model): each model its
share of the cores this process may use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator

from benchmarks.common import machine_description

# `default` is what `load_models(run_dirs)` gives (merged fp32); `onnx` and `onnx-int8` serve the
# folders of --onnx / --onnx-int8 with --backend onnx.
MODES = ("default", "shared", "merged", "fast", "onnx", "onnx-int8")


def add_run_flags(parser: argparse.ArgumentParser, onnx: bool = False) -> None:
    """--runs (and with `onnx`, --onnx, --onnx-int8 and --modes, see modes_to_measure)."""
    parser.add_argument("--runs", nargs="*", default=None, help="run directories (default: newest lora and ia3)")
    if onnx:
        parser.add_argument("--onnx", nargs="*", default=[], help="ONNX fp32 exports of the runs (mode onnx)")
        parser.add_argument("--onnx-int8", nargs="*", default=[], help="ONNX int8 exports of the runs (mode onnx-int8)")
        parser.add_argument(
            "--modes", default=None, help=f"comma-separated from {', '.join(MODES)} (default: all given)"
        )


def runs_to_measure(given: list[str] | None, needed: int = 2) -> list[str]:
    """The runs given, or the newest lora and ia3 runs; at least `needed` of them, printed with the machine."""
    from peftqa.serve.discovery import newest_runs

    run_dirs = given or [str(d) for d in newest_runs()]
    if len(run_dirs) < needed:
        wanted = "two runs: train them with `make demo`, or pass --runs DIR DIR"
        raise SystemExit(f"need {wanted if needed > 1 else 'a run: train one with `make demo`, or pass --runs DIR'}")
    print(f"machine: {machine_description()} (shared with other work while measuring)")
    print(f"runs: {', '.join(run_dirs)}")
    return run_dirs


def modes_to_measure(args: argparse.Namespace, run_dirs: list[str]) -> list[tuple[str, list[str]]]:
    """(mode, the two folders it serves) for each mode asked for; the onnx modes only with their folders."""
    folders = {"onnx": args.onnx[:2], "onnx-int8": args.onnx_int8[:2]}
    modes = args.modes.split(",") if args.modes else [m for m in MODES if m not in folders or folders[m]]
    return [(mode, folders.get(mode) or run_dirs[:2]) for mode in modes]


@contextlib.contextmanager
def served_side_by_side(folders: list[str], mode: str) -> Iterator[list]:
    """The models of `mode` with this process's torch threads divided between them, as `peftqa serve`
    divides them (ONNX Runtime's too); the threads are put back after the block."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(thread_share(len(folders)))
    try:
        yield load_served(folders, mode, thread_share(len(folders)))
    finally:
        torch.set_num_threads(threads)


def load_served(folders: list[str], mode: str, onnx_threads: int):
    """The served models of `mode`; `default` passes nothing but the folders."""
    from peftqa.serve.loading import load_models

    if mode == "default":
        return load_models(folders)
    if mode in ("onnx", "onnx-int8"):
        return load_models(folders, backend="onnx", onnx_threads=onnx_threads)
    return load_models(folders, mode=mode)


def thread_share(models: int) -> int:
    """Threads per model, as `peftqa serve` gives them."""
    from peftqa.serve.loading import threads_per_model

    return threads_per_model(models)


def one_window_example() -> dict:
    from peftqa.data import load_examples

    # The first shipped example (Super Bowl 50, 775 characters) fits one 256-token window.
    example = load_examples()["examples"][0]
    return {"context": example["context"], "question": example["question"], "answers": example["answers"]}


class Server:
    """The app under waitress in a thread of this process, on a free port."""

    def __init__(self, models, threads: int = 4) -> None:
        import logging

        import waitress

        # "Task queue depth is N" for every queued request: the point of the client test, not news.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)

        from peftqa.serve import create_app

        self.server = waitress.create_server(create_app({"MODELS": models}), host="127.0.0.1", port=0, threads=threads)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.effective_port}/api/predict"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # Workers first (each pulls the trigger when it finishes a request), then the server is closed
        # from inside its own loop thread, which then ends: nothing touches a closed socket.
        self.server.task_dispatcher.shutdown()
        self.server.trigger.pull_trigger(self.server.close)
        self.thread.join(timeout=10)

    def ask(self, body: bytes) -> tuple[float, dict]:
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        return 1000 * (time.perf_counter() - began), answer


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]
