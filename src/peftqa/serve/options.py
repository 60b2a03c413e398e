"""What `peftqa serve` is asked for, checked before anything loads; the models it serves for it, with
the torch threads divided between them; and the server that runs the page."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from peftqa import hardware
from peftqa.checks import COUNT, Range, check_fields
from peftqa.errors import PeftqaError
from peftqa.serve.discovery import DEFAULT_SEARCH_DIRS, newest_runs
from peftqa.serve.loading import SERVER_THREADS, load_models, threads_per_model
from peftqa.serve.served import ServedModel
from peftqa.settings.fields import setting

BACKENDS = ("torch", "onnx")  # what answers: torch, or ONNX Runtime (serve.loading)


@dataclass(frozen=True)
class ServeOptions:
    """`peftqa serve`'s flags; flags that cannot go together are refused here, as PeftqaError."""

    run_dirs: tuple[str, ...] = setting(
        (), "run directories or export folders (default: the newest lora and ia3 runs in runs/)", positional=True
    )
    backend: str = setting(
        "torch",
        "torch (run directories or hf exports) or onnx: ONNX Runtime on folders from `peftqa export --format onnx`, "
        "or on run directories, exported once into peftqa's cache (same answers, faster on a CPU)",
        choices=BACKENDS,
    )
    shared_base: bool = setting(
        False,
        "runs on one backbone share one copy of the base weights, adapters unmerged: less memory for many runs, "
        "slower answers (default: each run merged into its own fp32 copy)",
    )
    fast: bool = setting(
        False,
        "merged weights answering in bf16: faster on CPUs with bf16 units, and a few answers may differ from "
        "`peftqa evaluate`",
    )
    host: str = setting("127.0.0.1", "the address to listen on")
    port: int = setting(5000, "the port to listen on", within=Range(at_least=1, at_most=65535))
    threads: int = setting(
        SERVER_THREADS, "requests the server handles at once (waitress worker threads)", within=COUNT
    )
    debug: bool = setting(False, "Flask's development server instead of waitress")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.backend == "onnx" and (self.fast or self.shared_base):
            raise PeftqaError("--fast and --shared-base apply to the torch backend, not --backend onnx")
        if self.fast and self.shared_base:
            raise PeftqaError("--fast merges each adapter into its own weights: it cannot go with --shared-base")
        if self.fast and hardware.cpu_has_bf16() is False:  # the page answers on the CPU
            raise PeftqaError(
                "--fast needs a CPU with bf16 units (AMX or AVX-512 BF16): this one emulates bf16, several times "
                "slower than the default (exact, fp32); for speed use `--backend onnx` on an int8 export"
            )

    @property
    def mode(self) -> str:
        """How the torch backend holds the runs (serve.loading.MODES)."""
        return "fast" if self.fast else "shared" if self.shared_base else "merged"


def load_for_serving(options: ServeOptions, report: Callable[[str], None]) -> list[ServedModel]:
    """The runs `options` name (or the newest ones), loaded, with this process's torch threads divided
    between them; PeftqaError when none loads.

    Args:
        report: gets one line per skipped run (and load_models' other notices).
    """
    run_dirs = list(options.run_dirs) or newest_runs()
    # Set before loading, so that each model's warm-up answer runs as the server will.
    share = threads_per_model(len(run_dirs))
    torch.set_num_threads(share)
    models = load_models(run_dirs, report=report, mode=options.mode, backend=options.backend, onnx_threads=share)
    if not models:
        searched = ", ".join(options.run_dirs) if options.run_dirs else _searched_folders()
        raise PeftqaError(
            f"no trained run to serve in {searched}: train two with `make demo`, or one with "
            "`peftqa train --method lora --preset quick`, then run `peftqa serve [RUN_DIR ...]`"
        )
    torch.set_num_threads(threads_per_model(len(models)))  # fewer when some runs were skipped
    return models


def serve(options: ServeOptions) -> None:
    """Load the runs and serve the page until interrupted: under waitress, or Flask's development
    server with `debug`; notices go to stderr."""
    from peftqa.serve import create_app

    models = load_for_serving(options, report=lambda line: print(f"peftqa: {line}", file=sys.stderr))
    app = create_app({"MODELS": models, "SERVER_THREADS": options.threads})
    names = ", ".join(f"{model.name} ({model.backend})" for model in models)
    print(f"serving {names} on http://{options.host}:{options.port}/", file=sys.stderr)
    try:
        if options.debug:
            app.run(host=options.host, port=options.port, debug=True, use_reloader=False)
        else:
            import waitress

            waitress.serve(app, host=options.host, port=options.port, threads=options.threads)
    except OSError as error:  # port taken, unknown host, no permission
        raise PeftqaError(f"cannot listen on {options.host}:{options.port}: {error.strerror or error}") from error


def _searched_folders() -> str:
    """DEFAULT_SEARCH_DIRS as the error message names them: "runs/, backend/ and studies/quick/runs/"."""
    folders = [f"{folder}/" for folder in DEFAULT_SEARCH_DIRS]
    return ", ".join(folders[:-1]) + " and " + folders[-1]
