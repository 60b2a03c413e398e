"""The comparison web page and JSON API: trained runs side by side with live EM/F1.

    create_app({"RUN_DIRS": [...]})   loads the runs (each merged into its own fp32 weights)
    create_app({"MODELS": [...]})     serves runs already loaded (tests build them once)

`peftqa serve` runs the app under waitress; `--debug` alone uses Flask's development server.

The package, by job:
    compare    the blueprint: the page, the JSON API, the health check
    served     ServedModel: one loaded run answering as `peftqa evaluate` does
    loading    load_models: the runs loaded once, merged, shared or fast, torch or ONNX
    discovery  newest_runs: the runs served when none is named; paths the page may show
    options    ServeOptions and serve: `peftqa serve`'s flags, checked, and the server
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from peftqa import files

DEFAULTS: dict[str, Any] = {
    "RUN_DIRS": [],  # run directories to load when MODELS is not given
    "MODELS": None,  # already loaded ServedModels
    "MAX_INPUT_CHARS": 100_000,  # longest context, question or answers accepted, in characters
    "SERVER_THREADS": None,  # requests the server handles at once (waitress threads); None: SERVER_THREADS
}


class _DocumentedOrderJSON(DefaultJSONProvider):
    """Flask's JSON, in the documented order, never writing NaN and never failing on deep nesting."""

    sort_keys = False  # answers read best in the documented order: name, method, answer, ...

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        # NaN is not JSON (a browser's JSON.parse refuses it): a score that is not a number is null.
        return super().dumps(files.finite(obj), **{**kwargs, "allow_nan": False})

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            # A ValueError is what Flask answers with 400 (bad JSON); RecursionError would be a 500.
            raise ValueError("the JSON is nested too deeply") from None


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The Flask application: defaults, then `config`, then the models, the blueprint and error pages.

    Args:
        config: Flask settings plus RUN_DIRS / MODELS / MAX_INPUT_CHARS (see DEFAULTS).
    """
    from peftqa.serve import compare_page as compare
    from peftqa.serve.loading import SERVER_THREADS, load_models

    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    app.json = _DocumentedOrderJSON(app)
    # A form field of MAX_INPUT_CHARS characters is at most 4 bytes each, 3 more when %-encoded:
    # larger bodies are cut off by werkzeug before they are read, and answered with 413.
    body_limit = 12 * app.config["MAX_INPUT_CHARS"] + 65_536
    app.config["MAX_CONTENT_LENGTH"] = app.config.get("MAX_CONTENT_LENGTH") or body_limit
    app.config["MAX_FORM_MEMORY_SIZE"] = max(app.config.get("MAX_FORM_MEMORY_SIZE") or 0, body_limit)

    models = app.config["MODELS"]
    if models is None:
        models = load_models(app.config["RUN_DIRS"], report=app.logger.warning)
    app.extensions["peftqa_models"] = list(models)
    # Every request in flight can have each of its models at work: tokenising and post-processing
    # overlap freely; each model's lock lets one forward pass at a time through.
    workers = max(1, len(models) * (app.config["SERVER_THREADS"] or SERVER_THREADS))
    app.extensions["peftqa_pool"] = ThreadPoolExecutor(workers, thread_name_prefix="peftqa-model")
    app.register_blueprint(compare.bp)
    app.register_error_handler(HTTPException, compare.handle_http_error)
    return app
