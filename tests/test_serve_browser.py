"""The page in a real browser: Debian's chromium driven by Playwright, headless, no network.

`make browser-deps` installs chromium with apt-get (never `playwright install`); without it these
tests are skipped. With PEFTQA_SCREENSHOT_RUNS=dir1:dir2 the page shows those runs instead of the
tiny test runs, and the screenshot is also written to PEFTQA_SCREENSHOT (docs/screenshot.png, shown
by the README and docs/index.md) - that is how that picture is made from real runs.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest
import torch

from peftqa.data import load_examples
from peftqa.report.pdf import CHROMIUM, CHROMIUM_ARGS
from peftqa.serve import create_app
from peftqa.serve.loading import load_models, threads_per_model
from tests.helpers import TOKENIZER_DIR, PointAtWord, train_abstaining_run, train_tiny_runs

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run `make browser-deps` (apt-get)"),
]


def _serving(models):
    """The page for `models` on a free local port, in a waitress thread: yields its URL, then stops it."""
    import waitress

    server = waitress.create_server(create_app({"MODELS": models}), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    # Workers first (each pulls the trigger when it finishes a request), then the server is closed
    # from inside its own loop thread, which then ends: nothing touches a closed socket.
    server.task_dispatcher.shutdown()
    server.trigger.pull_trigger(server.close)
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(tiny_bert_dir, squad_dir, tmp_path_factory):
    """The app under waitress in a thread, on a free port; the real runs when asked for."""

    chosen = os.environ.get("PEFTQA_SCREENSHOT_RUNS")
    if chosen:
        folders = chosen.split(":")
    else:
        tiny = train_tiny_runs(("lora", "ia3"), tiny_bert_dir, squad_dir, tmp_path_factory.mktemp("browser-runs"))
        folders = list(tiny.values())
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_model(len(folders)))  # as `peftqa serve` does: the latency shown is real
    try:
        yield from _serving(load_models(folders))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_form_answers_with_both_models_in_a_real_browser(browser, server_url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server_url + "/")
    example = load_examples()["examples"][0]
    # The example picker submits itself on change (JavaScript) and fills the form.
    page.select_option("#example", example["id"])
    page.wait_for_url(re.compile(r"example="))
    assert page.input_value("#question") == example["question"]
    assert page.input_value("#context") == example["context"]
    # Keyboard only: focus the submit button and press Enter.
    page.focus("#submit")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    columns = page.locator("article.model")
    assert columns.count() == 2
    for i in range(2):
        column = columns.nth(i)
        answer = column.locator(".answer .text").inner_text().strip()
        assert answer
        highlighted = column.locator("blockquote.context mark").inner_text()
        assert highlighted == answer
        assert re.fullmatch(r"\d+ / \d+\.\d", column.locator(".score").inner_text().strip())
    assert all(url.startswith(server_url) for url in requested), "the page asked for something off this server"

    page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
    destination = os.environ.get("PEFTQA_SCREENSHOT")
    if destination:
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "screenshot.png", destination)
    page.close()


def test_too_long_context_gets_a_clear_message_in_the_browser(browser, server_url):
    page = browser.new_page()
    page.goto(server_url + "/")
    page.fill("#context", "word " * 20_001)
    page.fill("#question", "What?")
    assert "over the limit" in page.inner_text("#context-count")
    with page.expect_navigation():
        page.click("#submit")
    assert "the limit is 100,000" in page.inner_text("#form-error")
    page.close()


def test_page_is_usable_on_a_phone_sized_screen(browser, server_url):
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(server_url + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.close()


@pytest.fixture(scope="module")
def far_answer_url():
    """A server whose two stand-in models answer "zebra", about 8,000 characters into any context."""
    from transformers import AutoTokenizer

    from peftqa.inference import run_folder
    from peftqa.serve.served import ServedModel

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    settings = {"config": {"method": "lora", "model": "stub", "max_length": 128, "doc_stride": 32}}
    models = [
        ServedModel(
            name,
            run_folder.LoadedRun(
                Path(name), settings, {}, PointAtWord(tokenizer.convert_tokens_to_ids("zebra")), tokenizer
            ),
        )
        for name in ("left", "right")
    ]
    yield from _serving(models)


def test_long_context_answer_is_in_view_and_nothing_fails_to_load(browser, far_answer_url):
    # A phone-width column: with 600 characters before the answer, the answer sat below the box's fold.
    page = browser.new_page(viewport={"width": 375, "height": 740})
    failed: list[tuple[int, str]] = []
    page.on(
        "response", lambda response: failed.append((response.status, response.url)) if response.status >= 400 else None
    )
    page.goto(far_answer_url + "/")
    context = "The river runs through the old town, and the market opens on Mondays. " * 110 + "A zebra lives here."
    page.fill("#context", context)
    page.fill("#question", "Who lives here?")
    with page.expect_navigation():
        page.click("#submit")
    boxes = page.locator("article.model blockquote.context")
    assert boxes.count() == 2
    for i in range(2):
        assert boxes.nth(i).locator("mark").inner_text() == "zebra"
        box = boxes.nth(i).bounding_box()
        mark = boxes.nth(i).locator("mark").bounding_box()
        assert box and mark and box["y"] <= mark["y"] and mark["y"] + mark["height"] <= box["y"] + box["height"]
    assert page.request.get(far_answer_url + "/favicon.ico").status == 200
    assert failed == [], failed
    page.close()


@pytest.fixture(scope="module")
def abstaining_url(tiny_bert_dir, tmp_path_factory):
    """A server for one run trained on SQuAD 2.0-format data that answers nothing."""
    yield from _serving(load_models([train_abstaining_run(tiny_bert_dir, tmp_path_factory.mktemp("v2-browser"))]))


def test_the_page_shows_no_answer_in_a_real_browser(browser, abstaining_url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(abstaining_url + "/")
    page.fill("#context", "Pride and Prejudice was written by Jane Austen and published in 1813.")
    page.fill("#question", "Who illustrated the first edition?")
    page.check("#no_answer")
    with page.expect_navigation():
        page.click("#submit")
    column = page.locator("article.model")
    assert column.count() == 1
    assert column.locator(".answer .text").inner_text().strip() == "no answer"
    assert "Null / best span score" in column.inner_text()
    assert column.locator(".best-span").inner_text().strip()
    assert column.locator(".score").inner_text().strip() == "100 / 100.0"
    assert page.is_checked("#no_answer")
    page.screenshot(path=str(tmp_path / "no-answer.png"), full_page=True)
    page.close()
