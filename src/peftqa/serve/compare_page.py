"""The `compare` blueprint: the side-by-side page, the JSON API and the health check.

The page is a plain HTML form rendered on the server, so it works with no JavaScript and no
network. The form and `POST /api/predict` go through the same validation (`parse_query`) and
the same prediction (`ServedModel.answer`, which is `predict.ask` + `score_answer`). A run trained on
SQuAD 2.0 data may answer nothing: the page and the API then say "no answer" and show the null score
beside the best span's; a true answer of "no answer" (`no_answer`) is scored as SQuAD 2.0 scores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request
from werkzeug.exceptions import BadRequest, HTTPException

from peftqa.data import load_examples
from peftqa.serve.served import ServedModel

bp = Blueprint("compare", __name__)

MAX_TOP_K = 20  # the post-processor keeps 20 candidates per question
DEFAULT_TOP_K = 4  # the answer and its 3 best alternatives
# Text around a highlighted answer on the page: a 100,000-character context is not shown whole, and
# the answer must be in view in a narrow column (600 characters before it pushed it out of the box).
EXCERPT_BEFORE = 200
EXCERPT_AFTER = 400


class InputError(Exception):
    """A request the server refuses: its message is shown to the user, with an HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Query:
    """A validated request: one question over one context, for some of the loaded models."""

    context: str
    question: str
    answers: tuple[str, ...]
    models: tuple[str, ...]
    top_k: int
    no_answer: bool = False  # the true answer is "no answer" (SQuAD 2.0)

    @property
    def scored(self) -> bool:
        """Whether the answers are scored: true answers given, or "no answer" is the true one."""
        return bool(self.answers) or self.no_answer


def served_models() -> list[ServedModel]:
    return current_app.extensions["peftqa_models"]


def _text_field(values: dict[str, Any], name: str, limit: int, required: bool) -> str:
    value = values.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InputError(f"'{name}' must be a string" if value is not None else f"'{name}' is required")
    if len(value) > limit:
        raise InputError(f"'{name}' has {len(value):,} characters; the limit is {limit:,}", 413)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON can carry lone surrogates ("\ud800") that no tokenizer accepts.
        raise InputError(f"'{name}' is not valid Unicode text") from None
    if required and not value.strip():
        raise InputError(f"'{name}' must not be empty")
    return value


def _answers_field(value: Any, limit: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # the form's textarea: one answer per line
        value = value.splitlines()
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise InputError("'answers' must be a list of strings")
    if sum(len(a) for a in value) > limit:
        raise InputError(f"'answers' have more than {limit:,} characters in all", 413)
    answers = tuple(a.strip() for a in value if a.strip())
    for answer in answers:
        _text_field({"answers": answer}, "answers", limit, required=False)
    return answers


def _models_field(value: Any) -> tuple[str, ...]:
    known = [model.name for model in served_models()]
    if value is None or value == []:
        return tuple(known)
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise InputError("'models' must be a list of model names")
    unknown = [m for m in value if m not in known]
    if unknown:
        raise InputError(f"unknown model {unknown[0]!r}; loaded models: {', '.join(known)}")
    return tuple(dict.fromkeys(value))


def _top_k_field(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_TOP_K
    if isinstance(value, str):  # the form sends text
        try:
            value = int(value.strip()) if value.strip().isascii() else value
        except ValueError:  # not a number, or more digits than int() takes
            pass
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InputError(f"'top_k' must be a whole number from 1 to {MAX_TOP_K}")
    return value


def _no_answer_field(value: Any) -> bool:
    """The API's boolean, or the form's checkbox ("on" when ticked, absent when not)."""
    if value is None or value is False or value == "":
        return False
    if value is True or value == "on":
        return True
    raise InputError("'no_answer' must be true or false")


def parse_query(values: Any) -> Query:
    """Check every field of a request (a JSON object or the form) before any model runs."""
    if not isinstance(values, dict):
        raise InputError("the request body must be a JSON object")
    limit = current_app.config["MAX_INPUT_CHARS"]
    query = Query(
        context=_text_field(values, "context", limit, required=True),
        question=_text_field(values, "question", limit, required=True),
        answers=_answers_field(values.get("answers"), limit),
        models=_models_field(values.get("models")),
        top_k=_top_k_field(values.get("top_k")),
        no_answer=_no_answer_field(values.get("no_answer")),
    )
    if query.no_answer and query.answers:
        raise InputError("'no_answer' says the question has no answer: leave 'answers' empty")
    return query


def run_query(query: Query) -> dict[str, Any]:
    """Every chosen model's answer; with true answers, which model did better (by F1, then EM)."""
    by_name = {model.name: model for model in served_models()}

    def ask(name: str) -> dict[str, Any]:
        return by_name[name].answer(query.question, query.context, query.top_k, query.answers, query.no_answer)

    # The models answer side by side (each has its own lock and weights-sharing is read-only).
    results = list(current_app.extensions["peftqa_pool"].map(ask, query.models))
    response: dict[str, Any] = {"models": results}
    if query.scored and len(results) > 1:
        response.update(verdict(results))
    return response


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Which models scored best (F1, then EM), over every score shown: `best` names all that share the
    top score ([] when every model scored the same), `better` the one model alone at the top (else None)."""
    score = lambda result: (result["f1"], result["exact_match"])  # noqa: E731
    top = max(score(result) for result in results)
    best = [result["name"] for result in results if score(result) == top]
    if len(best) == len(results):
        best = []
    return {"better": best[0] if len(best) == 1 else None, "best": best}


def _json_error(message: str, status: int):
    return jsonify(error=message), status


@bp.after_app_request
def _security_headers(response):
    """Only this server's own files may load: a page that needs the network fails here, not offline."""
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok", models=len(served_models()))


@bp.get("/api/models")
def api_models():
    return jsonify(models=[model.describe() for model in served_models()])


@bp.post("/api/predict")
def api_predict():
    if not request.is_json:
        return _json_error("send JSON with 'Content-Type: application/json'", 415)
    try:
        values = request.get_json()
    except BadRequest:
        return _json_error("the request body is not valid JSON", 400)
    try:
        return jsonify(run_query(parse_query(values)))
    except InputError as error:
        return _json_error(error.message, error.status)


def _form_values(example_id: str | None) -> dict[str, str]:
    """The form's fields: a picked example, or what was posted."""
    if example_id:
        for example in load_examples()["examples"]:
            if example["id"] == example_id:
                return {**example, "answers": "\n".join(example["answers"])}
    if request.method == "POST":
        return {name: request.form.get(name, "") for name in ("context", "question", "answers", "top_k", "no_answer")}
    return {}


def excerpt(context: str, start: int | None, end: int | None) -> dict[str, str]:
    """The answer and the text around it (EXCERPT_BEFORE / EXCERPT_AFTER characters, cut at white
    space), for the page to highlight; Jinja escapes it."""
    if start is None or end is None:
        return {"before": _cut_after(context, EXCERPT_BEFORE + EXCERPT_AFTER), "answer": "", "after": ""}
    before = context[:start]
    if len(before) > EXCERPT_BEFORE:
        kept = before[-EXCERPT_BEFORE:]
        space = kept.find(" ")
        before = "…" + (kept[space + 1 :] if 0 <= space < 40 else kept)
    return {"before": before, "answer": context[start:end], "after": _cut_after(context[end:], EXCERPT_AFTER)}


def _cut_after(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    kept = text[:limit]
    space = kept.rfind(" ")
    return (kept[:space] if space > limit - 40 else kept) + "…"


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page links: answer it rather than log a 404."""
    return current_app.send_static_file("favicon.svg"), 200, {"Content-Type": "image/svg+xml"}


@bp.route("/", methods=["GET", "POST"])
def index():
    values = _form_values(request.args.get("example"))
    result, error, status = None, None, 200
    if request.method == "POST":
        try:
            query = parse_query({**values, "models": request.form.getlist("models") or None})
            result = run_query(query)
            for model in result["models"]:
                model["excerpt"] = excerpt(query.context, model["start"], model["end"])
        except InputError as problem:
            error, status = problem.message, problem.status
    chosen = request.form.getlist("models") if request.method == "POST" else []
    return _render(values, result, error, chosen), status


def _render(values: dict[str, Any], result: dict[str, Any] | None, error: str | None, chosen=()) -> str:
    models = {model.name: model.describe() for model in served_models()}
    return render_template(
        "compare.html",
        values=values,
        result=result,
        error=error,
        models=models,
        chosen=set(chosen) or set(models),
        examples=load_examples(),
        max_chars=current_app.config["MAX_INPUT_CHARS"],
        default_top_k=DEFAULT_TOP_K,
    )


def handle_http_error(error: HTTPException):
    """Werkzeug's own refusals (too large, bad method, unknown URL): JSON for the API, a page else."""
    status = error.code or 500
    message = error.description or error.name
    if status == 413:
        message = f"the request is larger than {current_app.config['MAX_CONTENT_LENGTH']:,} bytes"
    if request.path.startswith("/api/") or request.path == "/healthz":
        return _json_error(message, status)
    if status == 413 and request.path == "/":
        return _render({}, None, f"{message}; the limit is {current_app.config['MAX_INPUT_CHARS']:,} characters"), 413
    return _json_error(message, status) if request.is_json else (f"{status} {error.name}: {message}", status)
