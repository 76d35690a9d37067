"""The docs: the site builds with no broken link and no page left out of the nav, every measured or published
number in them is what its source says (docs/fill_numbers.py --check), and every file or module they name exists."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def fill_numbers():
    spec = importlib.util.spec_from_file_location("fill_numbers", REPO / "docs" / "fill_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mkdocs(root: Path, site: Path) -> subprocess.CompletedProcess:
    # mkdocs is in the dev extra (.ci/run installs it): no skip, a missing mkdocs fails here.
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path):
    result = mkdocs(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "weights" / "index.html").is_file()


@pytest.mark.slow
def test_a_broken_link_a_missing_anchor_or_a_page_outside_the_nav_fails_the_build(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    (root / "docs" / "orphan.md").write_text("# A page no one listed\n")
    page = root / "docs" / "commands.md"
    page.write_text(page.read_text() + "\nSee [there](no_such_page.md) and [here](weights.md#no-such-section).\n")
    result = mkdocs(root, tmp_path / "site")
    assert result.returncode != 0
    assert "not included in the \"nav\"" in result.stderr and "orphan.md" in result.stderr
    assert "'no_such_page.md', but the target is not found among documentation files" in result.stderr
    assert "does not contain an anchor '#no-such-section'" in result.stderr


def test_every_page_is_in_the_nav():
    nav = (REPO / "mkdocs.yml").read_text()
    for page in (REPO / "docs").glob("*.md"):
        assert f": {page.name}" in nav, f"docs/{page.name} is not in mkdocs.yml's nav"


@pytest.mark.slow
def test_the_numbers_in_the_docs_are_those_of_their_sources():
    result = subprocess.run([sys.executable, str(REPO / "docs" / "fill_numbers.py"), "--check"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_a_stale_number_is_found_and_rewritten(tmp_path, monkeypatch):
    numbers = fill_numbers()
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(REPO / "benchmarks" / "results" / "data_scale.csv", results / "data_scale.csv")
    page = tmp_path / "page.md"
    page.write_text("Before.\n<!-- numbers:data_scale -->\n| typed | by | hand |\n<!-- /numbers -->\nAfter.\n")
    monkeypatch.setattr(numbers, "RESULTS", results)
    monkeypatch.setattr(numbers, "ROOT", tmp_path)
    monkeypatch.setattr(numbers, "files", lambda: [page])
    assert numbers.main(["--check"]) == 1
    assert "typed" in page.read_text()                    # --check changes nothing
    assert numbers.main([]) == 0
    text = page.read_text()
    assert "typed" not in text and "10.55 MiB" in text and text.startswith("Before.") and text.endswith("After.\n")
    assert numbers.main(["--check"]) == 0
    frame = pd.read_csv(results / "data_scale.csv")      # a new measurement makes the page stale again
    frame.loc[frame.path == "cache", "patches_per_cpu_s"] *= 2
    frame.to_csv(results / "data_scale.csv", index=False)
    assert numbers.main(["--check"]) == 1
    page.write_text(page.read_text() + "<!-- numbers:nonsense -->\n<!-- /numbers -->\n")
    with pytest.raises(SystemExit, match="unknown numbers block 'nonsense'"):
        numbers.main(["--check"])


def test_published_numbers_come_from_the_weights_table_and_measured_ones_from_the_csv(tmp_path, monkeypatch):
    from m3l import hub

    numbers = fill_numbers()
    monkeypatch.setattr(numbers, "RESULTS", tmp_path)
    entry = next(e for e in hub.WEIGHTS.values() if e.metrics)
    key, published = next(iter(entry.metrics.items()))
    text = numbers.BLOCKS["published"]()
    assert f"`{entry.name}`" in text and numbers.exact(published) in text and "Not measured" in text
    dataset, degradation, metric = key.split("/")
    rows = [{"entry": entry.name, "ensemble": ensemble, "file": entry.released_name, "dataset": dataset,
             "degradation": degradation, "metric": metric, "measured": published + delta, "published": published,
             "delta": delta} for ensemble, delta in (("none", 0.5), ("x8", 0.625))]
    pd.DataFrame(rows).to_csv(tmp_path / "published.csv", index=False)
    text = numbers.BLOCKS["published"]()
    assert f"{numbers.alike(published + 0.5, published)} ({numbers.exact(published)})" in text
    assert "are within 0.02" in numbers.BLOCKS["published_deltas"]() and "+0.50" in numbers.BLOCKS["published_deltas"]()
    if metric == "psnr":
        assert "+0.125" in numbers.BLOCKS["ensemble_gain"]()


# ------------------------------------------------------------------------------- the paths the pages name

PREFIXES = ("m3l/", "workflow/", "benchmarks/", "tests/", "examples/", "docs/", "hydra_plugins/", ".ci/")
PLACEHOLDER = re.compile(r"[<>*{}$\[\]]|\.\.\.|NAME|TASK")


def code_spans(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", text)


def named_paths(text: str) -> set[str]:
    paths = set()
    for span in code_spans(text):
        for token in span.split():
            token = token.split("::")[0].rstrip(",.;:)")
            if token.startswith(PREFIXES) and not PLACEHOLDER.search(token) \
                    and not token.startswith("benchmarks/results/"):
                paths.add(token)
    return paths


def top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_problem(dotted: str) -> str | None:
    """Why ``m3l.a.b[.Name]`` does not resolve in the source tree (no import), or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            rest = parts[cut:]
            if rest and rest[0] not in top_level_names(source):
                return f"{'.'.join(parts[:cut])} defines no {rest[0]}"
            return None
    return "no such module"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_file_and_module_a_page_names_exists(page):
    text = page.read_text()
    missing = sorted(p for p in named_paths(text) if not (REPO / p).exists())
    assert not missing, f"{page.name} names files that do not exist: {missing}"
    modules = {t.rstrip(",.;:)") for span in code_spans(text) for t in span.split()
               if re.fullmatch(r"m3l(\.\w+){2,}[,.;:)]*", t) and not PLACEHOLDER.search(t)}
    wrong = {m: module_problem(m) for m in modules if module_problem(m)}
    assert not wrong, f"{page.name} names modules that do not exist: {wrong}"


@pytest.mark.parametrize("page", [REPO / "README.md", REPO / "CONTRIBUTING.md"], ids=lambda p: p.name)
def test_the_links_of_the_root_pages_lead_somewhere(page):
    # docs/*.md are checked by mkdocs; the root pages link into them by relative paths.
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    broken = [t for t in targets if not t.startswith(("http://", "https://")) and not (REPO / t).exists()]
    assert not broken, f"{page.name} links to missing files: {broken}"
