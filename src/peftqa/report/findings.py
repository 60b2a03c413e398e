"""The report's Findings: paragraphs written from the loaded numbers, never by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from peftqa.data import QuestionChoice
from peftqa.methods.registry import trains_only_the_head
from peftqa.report.answerability import answerability_finding
from peftqa.report.budgets import budget_groups
from peftqa.report.pairing import (
    BEYOND_HEAD,
    NOT_BEYOND_HEAD,
    MethodGroup,
    compare,
    floor_of,
    floor_verdict,
    group_runs,
    signed_difference,
)
from peftqa.report.render import human_bytes
from peftqa.report.results import RunResult
from peftqa.sweep.rungs import separation_text

# SQuAD v1.1 train has 87,599 questions; runs on far fewer (or on a CPU) are small-budget runs.
_FULL_TRAIN_QUESTIONS = 87_599


def _percent(part: float, whole: float) -> str:
    """Two significant digits below 100 % (0.065%, 2.2%, 40%), whole numbers above (400%)."""
    share = 100 * part / max(whole, 1)
    return f"{share:.2g}%" if share < 100 else f"{share:,.0f}%"


def _grid(summary: dict[str, Any]) -> list[float]:
    return sorted(summary.get("search_space", {}).get("lr") or {t["params"]["lr"] for t in summary.get("trials", [])})


def _at_edge(summary: dict[str, Any]) -> bool:
    """Whether the sweep's best learning rate is the lowest or highest of its grid (or it warned so)."""
    lr, grid = summary["best"]["params"]["lr"], _grid(summary)
    return any("lr=" in w for w in summary.get("edge_warnings", [])) or (len(grid) > 1 and lr in (grid[0], grid[-1]))


def _edge_of(summary: dict[str, Any]) -> str:
    """Where the sweep's best learning rate sits on its grid, in words."""
    lr, grid = summary["best"]["params"]["lr"], _grid(summary)
    listed = ", ".join(f"{x:g}" for x in grid)
    if _at_edge(summary):
        side = "lowest" if grid and lr == grid[0] else "highest"
        return f"the {side} value of its grid ({listed}): the best rate may lie outside it"
    return f"inside its grid ({listed})"


def sweep_questions(summary: dict[str, Any]) -> str:
    """Which questions a sweep's trials were scored on (QuestionChoice.describe), from sweep.json."""
    base = summary["base_config"]
    choice = QuestionChoice(
        eval_split=summary["eval_split"],
        eval_limit=summary["eval_limit"],
        eval_sample=base["eval_sample"],
        eval_seed=base["eval_seed"],
        validation_questions=summary["validation_questions"],
    )
    # sweep.json keeps the choice, not how many each trial scored: the limit, unless the held-out
    # articles hold fewer; without a limit, all of them (at least `validation_questions`).
    described = choice.describe(summary["eval_limit"] or summary["validation_questions"])
    return f"{described}, not dev" if choice.eval_split == "validation" else described


def _rates_used(summary: dict[str, Any], groups: Sequence[MethodGroup]) -> list[float]:
    """The rates the runs of the sweep's method used; a study's sweep stands only for the runs of its own
    budget (its trials are those runs)."""
    budgets = (None, summary["train_questions"]) if summary.get("score_dev") else None
    rates = {
        g.first.settings.get("learning_rate")
        for g in groups
        if g.method == summary["method"] and (budgets is None or g.first.config.get("train_limit") in budgets)
    }
    return sorted(float(rate) for rate in rates if rate is not None)


def _sweep_finding(summary: dict[str, Any], groups: Sequence[MethodGroup], budget: bool = False) -> str:
    """A sentence on one sweep; `budget`: say its training questions (one method swept at several)."""
    name = f"{summary['method']} sweep" + (f" at {summary['train_questions']:,} training questions" if budget else "")
    best = summary.get("best")
    if not best:
        return f"The {name} finished no trial."
    lr = best["params"]["lr"]
    others = ", ".join(f"{k}={v:g}" for k, v in best["params"].items() if k != "lr")
    text = (
        f"The {name} chose learning rate {lr:g}{f' ({others})' if others else ''}, "
        f"{_edge_of(summary)}; its trials were scored on {sweep_questions(summary)}."
    )
    used = _rates_used(summary, groups)
    if used and lr not in used:
        text += f" The {summary['method']} run(s) here used {', '.join(f'{x:g}' for x in used)} instead."
    separated = separation_text(summary)
    return f"{text} {separated}" if separated else text


def _unremarkable(summary: dict[str, Any], groups: Sequence[MethodGroup]) -> bool:
    """A sweep that chose only a learning rate, inside its grid, separated from the next (where the sweep
    says), and whose runs here used it."""
    best = summary.get("best")
    if not best or set(best["params"]) != {"lr"} or _at_edge(summary):
        return False
    if "separation" in summary and not (summary["separation"] or {}).get("settled", False):
        return False  # the held-out questions did not tell the choice from the next: worth its own sentence
    used = _rates_used(summary, groups)
    return not used or best["params"]["lr"] in used


def sweep_findings(sweeps: Sequence[dict[str, Any]], groups: Sequence[MethodGroup]) -> list[str]:
    """A sentence per sweep; with three or more, the unremarkable ones scored on the same questions share
    one sentence, so a study of many methods reads as the few sweeps that need a look."""
    shared: dict[str, list[dict[str, Any]]] = {}
    if len(sweeps) >= 3:
        for summary in sweeps:
            if _unremarkable(summary, groups):
                shared.setdefault(sweep_questions(summary), []).append(summary)
    shared = {where: members for where, members in shared.items() if len(members) >= 2}
    grouped = {id(summary) for members in shared.values() for summary in members}
    sentences = [
        "The sweeps of "
        + ", ".join(f"{s['method']} ({s['best']['params']['lr']:g})" for s in members)
        + f" each chose a learning rate inside its grid (*Learning-rate sweeps*); their trials were scored on {where}."
        for where, members in shared.items()
    ]
    sizes: dict[str, set[int]] = {}
    for summary in sweeps:
        sizes.setdefault(summary["method"], set()).add(summary.get("train_questions", 0))
    return sentences + [
        _sweep_finding(summary, groups, len(sizes[summary["method"]]) > 1)
        for summary in sweeps
        if id(summary) not in grouped
    ]


def _thousands(value: float) -> str:
    return f"{value:,.0f}"


def _per_point(amount: float, f1: float, unit: Callable[[float], str]) -> str:
    return unit(amount / f1) if f1 > 0 else "n/a (F1 is 0)"


def budget_finding(by_budget: dict[int, list[MethodGroup]]) -> str:
    """Which method leads at each training budget, by how much over the next (paired, settled or not),
    the whole order at each, and between which budgets the leader changes."""
    leads = []
    for budget, groups in by_budget.items():
        if len(groups) < 2:
            leads.append(f"at {budget:,} questions only **{groups[0].label}** ran")
            continue
        lead = compare(groups[0], groups[1], "f1")
        settled = "settled" if lead["settled"] else "not settled"
        leads.append(
            f"at {budget:,} questions **{groups[0].label}** leads, {signed_difference(lead)} F1 over {groups[1].label} "
            f"({settled})"
        )
    text = "Across training budgets (each budget's rates from its own sweeps, the same dev questions): " + "; ".join(
        leads
    )
    order = "; ".join(f"{budget:,}: " + " > ".join(g.label for g in groups) for budget, groups in by_budget.items())
    text += f". The order, best first: {order}."
    budgets = list(by_budget)
    leaders = [by_budget[b][0].label for b in budgets]
    changes = [i for i in range(1, len(budgets)) if leaders[i] != leaders[i - 1]]
    if not changes:
        return text + f" **{leaders[0]}** leads at every budget."
    spans = []
    for number, start in enumerate([0, *changes]):
        end = changes[number] if number < len(changes) else len(budgets)
        everywhere = all(
            len(by_budget[b]) > 1 and compare(by_budget[b][0], by_budget[b][1], "f1")["settled"]
            for b in budgets[start:end]
        )
        if start == 0:
            where = f"below ~{budgets[end]:,} questions"
        elif end == len(budgets):
            where = f"from {budgets[start]:,}"
        else:
            where = f"from {budgets[start]:,} to {budgets[end - 1]:,}"
        spans.append(f"{where} {leaders[start]} leads" + (", settled" if everywhere else ", not settled everywhere"))
    return text + " The leader changes: " + "; ".join(spans) + "."


def _sentence(words: str) -> str:
    """`words` starting a sentence (str.capitalize would lower the rest: 'QA')."""
    return words[:1].upper() + words[1:]


def floor_finding(groups: Sequence[MethodGroup]) -> str:
    """Which methods' own parameters learned beyond the QA head that every method trains: each against the
    run that trained the head alone, paired on the questions both were scored on."""
    floor = floor_of(groups)
    if floor is None:
        return (
            "No run trained the QA head alone (method `head`), so whether each method's own parameters learned "
            "beyond the QA head that every method trains is not shown."
        )
    text = (
        f"The floor: the QA head alone on the frozen encoder ({floor.label}) scores F1 {floor.formatted('f1')}; "
        "every other method trains the same head besides its own parameters."
    )
    verdicts: dict[str, list[str]] = {BEYOND_HEAD: [], NOT_BEYOND_HEAD: []}
    for group in groups:
        if not trains_only_the_head(group.method):
            above = compare(group, floor, "f1")
            verdicts[floor_verdict(above)].append(
                f"{group.label} {signed_difference(above)} ({above['questions']:,} questions)"
            )
    if verdicts[BEYOND_HEAD]:
        text += (
            f" {_sentence(BEYOND_HEAD)} (F1 above the floor's, the 95% paired interval above 0): "
            + "; ".join(verdicts[BEYOND_HEAD])
            + "."
        )
    if verdicts[NOT_BEYOND_HEAD]:
        text += (
            f" {_sentence(NOT_BEYOND_HEAD)} (the interval includes 0, or lies below it): "
            + "; ".join(verdicts[NOT_BEYOND_HEAD])
            + "."
        )
    return text


def findings(
    results: Sequence[RunResult], sweeps: Sequence[dict[str, Any]] = (), budgets: Sequence[RunResult] = ()
) -> list[str]:
    """The report's Findings, one paragraph per subject, written from the loaded numbers (never by hand).

    Args:
        results: the loaded runs (`load_results`).
        sweeps: sweep summaries (`read_sweep`), for what the sweeps chose and on which questions.
        budgets: runs at several training budgets (`peftqa study --budgets`), for where the order changes.
    """
    groups = sorted(group_runs(results), key=lambda g: g.mean("f1"), reverse=True)
    paragraphs = []
    seeds = lambda g: f", mean of {len(g.runs)} seeds" if len(g.runs) > 1 else ""  # noqa: E731

    best = groups[0]
    if len(groups) == 1:
        paragraphs.append(
            f"Only one method was run: **{best.label}**, F1 {best.formatted('f1')}, EM {best.formatted('exact_match')}"
            f"{seeds(best)}."
        )
    else:
        second = groups[1]
        lead = compare(best, second, "f1")
        judged = (
            "the lead is settled (the interval excludes 0)"
            if lead["settled"]
            else "the lead is not settled (the interval includes 0): these questions cannot tell the two apart"
        )
        paragraphs.append(
            f"**{best.label}** has the highest F1, {best.formatted('f1')} (EM {best.formatted('exact_match')}"
            f"{seeds(best)}). Its lead over {second.label} (F1 {second.formatted('f1')}) is {signed_difference(lead)} "
            f"F1 points on the {lead['questions']:,} questions both were scored on; {judged}."
        )

    full = next((g for g in groups if g.method == "full"), None)
    if full is None:
        paragraphs.append("No full fine-tuning run is among these runs, so no method's gap to it is given.")
    elif len(groups) > 1:
        gaps = []
        for group in groups:
            if group is full:
                continue
            gap = compare(group, full, "f1")
            settled = "settled" if gap["settled"] else "not settled"
            gaps.append(f"{group.label} {signed_difference(gap)} ({settled}, {gap['questions']:,} questions)")
        paragraphs.append(
            f"Gap to full fine-tuning (F1 {full.formatted('f1')}), in F1 points with 95% paired intervals: "
            + "; ".join(gaps)
            + "."
        )

    paragraphs.append(floor_finding(groups))

    costs = []
    for group in groups:
        m, f1 = group.first.metrics, group.mean("f1")
        params, size = m.get("trainable_params", 0), m.get("artifact_bytes", 0)
        text = (
            f"{group.label} trains {params:,} parameters and saves {human_bytes(size)}: "
            f"{_per_point(params, f1, _thousands)} parameters and "
            f"{_per_point(size, f1, human_bytes)} per F1 point"
        )
        if full is not None and group is not full and full.mean("f1") > 0:
            full_m = full.first.metrics
            text += (
                f" ({100 * f1 / full.mean('f1'):.0f}% of full fine-tuning's F1 with "
                f"{_percent(params, full_m.get('trainable_params', 0))} of its trainable parameters and "
                f"{_percent(size, full_m.get('artifact_bytes', 0))} of its size on disk)"
            )
        costs.append(text)
    paragraphs.append("Cost: " + "; ".join(costs) + ".")

    by_budget = budget_groups(budgets)
    if len(by_budget) > 1:
        paragraphs.append(budget_finding(by_budget))
    abstention = answerability_finding(results)
    if abstention:
        paragraphs.append(abstention)
    paragraphs += sweep_findings(sweeps, groups)

    samples = dict.fromkeys(r.scored_on for r in results)
    widths = [(r.interval("f1")[1] - r.interval("f1")[0]) / 2 for r in results if r.scores]
    caveats = [
        f"Scored on {'; '.join(samples)}"
        + (f": at this size an F1 interval is about ±{max(widths):.1f} points." if widths else ".")
    ]
    if all(len(g.runs) == 1 for g in groups):
        used = sorted({r.config.get("seed") for r in results}, key=str)
        caveats.append(
            f"Each method was trained once (seed {', '.join(map(str, used))}): the intervals cover which questions "
            "were asked, not the luck of training, which can move a method by more than its interval."
        )
    else:
        caveats.append(
            "Seeds: "
            + ", ".join(
                f"{g.label} {len(g.runs)}" + (f" (F1 std {g.std('f1'):.1f})" if len(g.runs) > 1 else "") for g in groups
            )
            + "."
        )
    devices = dict.fromkeys(str(r.settings.get("device", "unrecorded")) for r in results)
    caveats.append(f"Trained on {'; '.join(devices)}.")
    questions = sorted({r.settings.get("train_questions") or 0 for r in results})
    epochs = sorted({float(r.config.get("epochs", 0)) for r in results})
    on_cpu = any(d.startswith("cpu") for d in devices)
    if on_cpu or questions[0] < _FULL_TRAIN_QUESTIONS:
        caveats.append(
            f"These are small runs ({'/'.join(f'{q:,}' for q in questions)} training questions, "
            f"{'/'.join(f'{e:g}' for e in epochs)} epoch(s){', on a CPU' if on_cpu else ''}): far from full-data "
            "results, where every method scores much higher and the gaps between methods may differ; read them as "
            "a comparison under one small budget."
        )
    paragraphs.append("Caveats: " + " ".join(caveats))
    return paragraphs
