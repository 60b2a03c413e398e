"""The `peftqa` command: configs built from flags, then library calls (what `--help` tells people: usage.py).

Bad input (a PeftqaError) prints one line and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn

from peftqa import files
from peftqa.cli.flags import HelpFormatter, add_config_flags, add_run_flags, config_from_args, given_fields, method_help
from peftqa.cli.usage import DESCRIPTION, EPILOG
from peftqa.data.make_v2 import DEFAULT_SEED, DEFAULT_SHARE
from peftqa.errors import PeftqaError
from peftqa.scoring.stats import BOOTSTRAP_SEED, RESAMPLES
from peftqa.serve.options import ServeOptions
from peftqa.study.pipeline import StudyConfig
from peftqa.sweep.sweep_config import SET_BY_THE_SWEEP, SweepConfig

# SweepConfig fields without a flag: the run template (the run flags make it) and free-form notes.
_SWEEP_NO_FLAG = {"base", "extra"}


def _cmd_train(args: argparse.Namespace) -> int:
    from peftqa.training.loop import train
    from peftqa.training.output_dir import check_resumable

    config = config_from_args(args)
    if args.resume:  # the library's resume goes on when there is a run; the command's requires one
        check_resumable(config.output_dir)
    train(config, resume=args.resume, force=args.force)
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from peftqa.methods.listing import methods_table

    print(methods_table() if args.name is None else method_help(args.name))
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from peftqa.data import fetch_squad

    folder = fetch_squad(args.dest or args.data_dir)
    print(f"SQuAD v1.1 is in {folder}")
    return 0


def _cmd_make_v2(args: argparse.Namespace) -> int:
    from peftqa.data import make_squad2

    counts = make_squad2(args.source, args.out, args.share, args.seed)
    print(f"{args.out}: {counts['questions']} questions, {counts['unanswerable']} of them moved to another article")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from peftqa.inference.rescore import evaluate_run

    scored = evaluate_run(args.run_dir, args.eval_limit, args.data_dir, args.train_file, args.dev_file)
    print(files.to_json(files.finite(scored), indent=2))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from peftqa.inference.answer import predict

    answer = predict(args.run_dir, args.question, args.context, args.top_k, args.file, args.out, args.nbest)
    if answer is not None:
        print(files.to_json(files.finite(answer)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from peftqa.export import export_run

    export_run(args.run_dir, args.out, args.format, args.quantize, args.force, args.data_dir)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from peftqa.inference.rescore import score_file

    result = score_file(args.dev_json, args.predictions_json, args.ci, args.version, args.na_probs, args.na_prob_thresh)
    print(files.to_json(files.finite(result)))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from peftqa.serve.options import serve

    values = given_fields(args, ServeOptions)
    serve(ServeOptions(**{**values, "run_dirs": tuple(values.get("run_dirs") or ())}))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from peftqa.sweep import SweepConfig, run_sweep

    base = config_from_args(args)
    values = given_fields(args, SweepConfig, _SWEEP_NO_FLAG)
    # A preset's question limits size the trials unless --train-limit / --eval-limit are given.
    for name in ("train_limit", "eval_limit"):
        if name not in values and getattr(base.data, name) is not None:
            values[name] = getattr(base.data, name)
    # --eval-limit also sizes dev's sample when the trials are final runs (--score-dev).
    config = SweepConfig(base=base.replace(eval_limit=values.get("eval_limit")), **values)
    run_sweep(dataclasses.replace(config, base=config.base.replace(epochs=config.epochs)))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from peftqa.report import REPORT_PDF, build_report

    markdown, page = build_report(
        args.run_dirs, args.sweep, args.out, not args.no_qualitative, pdf=args.pdf, force=args.force
    )
    printed = f" and {page.with_name(REPORT_PDF)}" if args.pdf else ""
    print(f"report: {markdown} and {page} (self-contained: open it in a browser){printed}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from peftqa.study.pipeline import StudyConfig, run_study

    run_study(StudyConfig(**given_fields(args, StudyConfig)))
    return 0


def package_version() -> str:
    """The installed package's version; the source tree's (peftqa.__version__) when it runs uninstalled."""
    try:
        return metadata.version("peftqa")
    except metadata.PackageNotFoundError:
        from peftqa import __version__

        return __version__


class _Parser(argparse.ArgumentParser):
    """argparse's own refusals (an unknown flag, a value of the wrong type, a missing argument) as one line
    and exit status 2, as every other bad input is, rather than a usage block and the error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog if " " in self.prog else f"{self.prog} COMMAND"
        self.exit(2, f"peftqa: error: {message} (see `{command} --help`)\n")


# The usage line of a command with a flag per setting: the flags follow, by group.
_SETTINGS_USAGE = "%(prog)s [--method NAME] [--preset NAME] [--FLAG VALUE ...]"


def _command(
    commands: Any, name: str, help_text: str, usage: str | None = None, abbreviations: bool = True
) -> argparse.ArgumentParser:
    """A sub-command whose help shows each flag's default (HelpFormatter)."""
    return commands.add_parser(
        name, help=help_text, formatter_class=HelpFormatter, usage=usage, allow_abbrev=abbreviations
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="peftqa", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    data = _command(commands, "data", "get the SQuAD v1.1 files, or make a SQuAD 2.0-format file from one")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    fetch = _command(data_commands, "fetch", "put train-v1.1.json and dev-v1.1.json in the data directory")
    fetch.add_argument("--dest", default=None, help="folder (default: --data-dir, PEFTQA_DATA_DIR or user cache)")
    fetch.add_argument("--data-dir", default=None, help="the data directory (default: PEFTQA_DATA_DIR or user cache)")
    fetch.set_defaults(handler=_cmd_fetch)
    make_v2 = _command(data_commands, "make-v2", "a SQuAD 2.0-format file made from a v1.1 file (docs/data.md)")
    make_v2.add_argument("source", help="a SQuAD v1.1 file (.json or .json.gz)")
    make_v2.add_argument("out", help="the file to write (gzipped when it ends in .gz)")
    make_v2.add_argument("--share", type=float, default=DEFAULT_SHARE, help="share of questions made unanswerable")
    make_v2.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seeds which questions move")
    make_v2.set_defaults(handler=_cmd_make_v2)

    train = _command(
        commands, "train", "fine-tune one method and score it on dev", _SETTINGS_USAGE + " [--resume] [--force]"
    )
    run_flags = add_run_flags(train)
    run_flags.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    run_flags.add_argument(
        "--force", action="store_true", help="write the run into an --output-dir that holds files of your own"
    )
    train.set_defaults(handler=_cmd_train)

    methods = _command(commands, "methods", "the fine-tuning methods: defaults, trainable parameters, export")
    methods.add_argument("name", nargs="?", default=None, help="a method: its options, with their help and defaults")
    methods.set_defaults(handler=_cmd_methods)

    evaluate = _command(commands, "evaluate", "reload a run (or an exported folder) and score it again")
    evaluate.add_argument("run_dir", help="a run directory, or a folder written by `peftqa export`")
    evaluate.add_argument("--eval-limit", type=int, default=None, help="score on a sample (default: the run's)")
    evaluate.add_argument("--data-dir", default=None, help="where SQuAD is (default: the run's)")
    evaluate.add_argument(
        "--train-file",
        default=None,
        help="score on held-out articles of this file (validation runs; default: the run's)",
    )
    evaluate.add_argument(
        "--dev-file", default=None, help="score on this file's questions instead (default: the run's dev)"
    )
    evaluate.set_defaults(handler=_cmd_evaluate)

    predict = _command(commands, "predict", "answer one question, or every question of a file, with a run")
    predict.add_argument("run_dir", help="a run directory, or a folder written by `peftqa export`")
    predict.add_argument("--question", default=None, help="one question (default: none; or --file)")
    predict.add_argument("--context", default=None, help="the text that answers --question (default: none)")
    predict.add_argument("--top-k", type=int, default=1, help="--question: the answer and the K-1 next best")
    predict.add_argument(
        "--file", default=None, help="questions to answer: SQuAD JSON or JSON Lines, answers optional (default: none)"
    )
    predict.add_argument(
        "--out", default=None, help="with --file: the predictions to write, {id: answer} (default: printed)"
    )
    predict.add_argument(
        "--nbest", type=int, default=None, help="with --file: also nbest.json, the K best spans (default: none)"
    )
    predict.set_defaults(handler=_cmd_predict)

    score = _command(commands, "score", "official EM/F1 of a predictions file ({id: answer}), SQuAD v1.1 or 2.0")
    score.add_argument("dev_json", help="the questions: SQuAD JSON (v1.1 or v2.0) or JSON Lines")
    score.add_argument("predictions_json", help="the predictions, {id: answer}")
    score.add_argument("--version", type=int, default=None, help="1 or 2 (default: 2 when a question has no answer)")
    score.add_argument(
        "--na-probs", default=None, help="version 2: the official --na-prob-file, JSON {id: number} (default: none)"
    )
    score.add_argument("--na-prob-thresh", type=float, default=1.0, help="version 2: no answer above it")
    score.add_argument(
        "--ci",
        action="store_true",
        help=f"also print 95%% bootstrap intervals ({RESAMPLES} resamples, seed {BOOTSTRAP_SEED}): "
        "exact_match_ci, f1_ci, questions",
    )
    score.set_defaults(handler=_cmd_score)

    sweep = _command(
        commands,
        "sweep",
        "choose a method's learning rate (and rank) with Optuna, by F1 on held-out training questions",
        _SETTINGS_USAGE,
        # No abbreviations: a run's --lr, which a sweep does not take, would be read as --lrs.
        abbreviations=False,
    )
    add_run_flags(sweep, skip=SET_BY_THE_SWEEP)
    searched = sweep.add_argument_group(
        "sweep", "what is searched, and each trial's size (every other flag: the trials')"
    )
    add_config_flags(searched, SweepConfig, skip=_SWEEP_NO_FLAG)
    sweep.set_defaults(handler=_cmd_sweep)

    report = _command(commands, "report", "results, curves, error analysis and examples as report.md/.html")
    report.add_argument("run_dirs", nargs="+", help="finished run directories")
    report.add_argument("--sweep", nargs="*", default=[], help="sweep directories to include (default: none)")
    report.add_argument("--out", default="report", help="output folder")
    report.add_argument("--no-qualitative", action="store_true", help="skip answering the hand-written examples")
    report.add_argument("--pdf", action="store_true", help="also report.pdf, printed by headless chromium")
    report.add_argument(
        "--force", action="store_true", help="write into an --out that holds files other than an earlier report"
    )
    report.set_defaults(handler=_cmd_report)

    export = _command(commands, "export", "a merged Hugging Face folder or an ONNX model of a run, checked")
    export.add_argument("run_dir", help="a run directory")
    export.add_argument("--out", required=True, help="folder to write (must not exist, unless --force)")
    # Checked by export_run rather than argparse `choices`, so a wrong value is one line and exit 2.
    export.add_argument("--format", default="hf", help="hf (merged safetensors folder) or onnx")
    export.add_argument("--quantize", default=None, help="int8: dynamic int8 quantisation (onnx only; default: none)")
    export.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    export.add_argument(
        "--data-dir", default=None, help="SQuAD for --quantize's before/after scores (default: the run's)"
    )
    export.set_defaults(handler=_cmd_export)

    study = _command(commands, "study", "sweep, train at the best lr and report, for several methods")
    add_config_flags(study, StudyConfig)
    study.set_defaults(handler=_cmd_study)

    serve = _command(commands, "serve", "compare trained runs side by side in a browser (and a JSON API)")
    add_config_flags(serve, ServeOptions)
    serve.set_defaults(handler=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Deprecation notices from inside transformers/peft are for their developers, not our users.
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        return args.handler(args)
    except PeftqaError as error:
        print(f"peftqa: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("peftqa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
