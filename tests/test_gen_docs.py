"""tools/gen_docs: the committed generated pages are what the code gives now, and a stale one is found."""

from __future__ import annotations

import pytest

from tools import gen_docs


def test_committed_pages_are_current():
    stale = gen_docs.stale_pages()
    assert not stale, f"stale generated docs: {sorted(map(str, stale))}; run `python -m tools.gen_docs`"


def test_cli_reference_has_every_command():
    from peftqa.cli.commands import build_parser

    page = gen_docs.cli_reference()
    for name, _, sub in gen_docs._subcommands(build_parser()):
        assert f"\n## peftqa {name}\n" in page
        for inner, _, _ in gen_docs._subcommands(sub):
            assert f"\n### peftqa {name} {inner}\n" in page


def test_methods_table_has_a_row_per_registered_method():
    from peftqa.methods import METHODS

    table = gen_docs.methods_table()
    for name in METHODS:
        assert sum(line.startswith(f"| `{name}` |") for line in table.splitlines()) == 1, name


def test_stage_map_names_every_module_outside_the_method_modules():
    stage_map = gen_docs.stage_map()
    for path in sorted(gen_docs.PACKAGE.rglob("*.py")):
        relative = path.relative_to(gen_docs.PACKAGE).as_posix()
        if path.name == "__init__.py" or (relative.startswith("methods/") and path.name in gen_docs._method_modules()):
            continue
        assert f"`{relative}`" in stage_map, relative


def test_a_region_is_replaced_and_the_prose_kept(tmp_path):
    page = tmp_path / "page.md"
    text = "before\n<!-- BEGIN GENERATED: x -->\nold\n<!-- END GENERATED: x -->\nafter\n"
    replaced = gen_docs.replace_region(text, "x", "new", page)
    assert replaced.startswith("before\n<!-- BEGIN GENERATED: x -->\n") and replaced.endswith("after\n")
    assert "new" in replaced and "old" not in replaced


def test_a_page_without_its_markers_is_refused(tmp_path):
    page = tmp_path / "page.md"
    with pytest.raises(SystemExit, match="BEGIN GENERATED: x"):
        gen_docs.replace_region("no markers\n", "x", "new", page)


def test_check_reports_a_stale_page(tmp_path, monkeypatch, capsys):
    page = tmp_path / "cli.md"
    page.write_text("out of date\n")
    monkeypatch.setattr(gen_docs, "ROOT", tmp_path)
    monkeypatch.setattr(gen_docs, "GENERATED", ((page, None, lambda: "current\n"),))
    assert gen_docs.main(["--check"]) == 1
    assert "stale: cli.md" in capsys.readouterr().err
    assert page.read_text() == "out of date\n"
    assert gen_docs.main([]) == 0
    assert page.read_text() == "current\n"
    assert gen_docs.main(["--check"]) == 0
