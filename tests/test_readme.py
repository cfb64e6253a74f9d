"""The README and the docs pages it links, run as a new user would: every ```bash block, in order (the README
first, then `PAGES`), in one fresh directory.

* Every block runs unless the line right above it is `<!-- ci: skip (reason) -->` (the install, which CI runs
  itself; GPU-only commands; hour-long benchmarks; the test suite itself). A block that is neither runnable nor
  marked fails this test.
* The directory holds links to the repository's code, configs, test fixtures and `.venv`, and `../shared` points at
  the shared benchmark data (blocks that read it skip when it is absent). Later blocks reuse what earlier ones
  wrote (the quickstart's adapter), as a reader following the README would. Commands run exactly as written: no
  rewriting, no smaller sizes.
* A block passes when every command exits 0 within `BLOCK_BUDGET_S`, its stderr shows none of the log noise the
  README promises is gone, and, when the README shows the output after "It prints", those lines appear.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from helpers import ROOT, SHARED_DATA

README = ROOT / "README.md"
PAGES = [ROOT / "docs" / f"{name}.md" for name in ("rl", "online-rl", "real-model-cpu", "real_model", "evaluation",
                                                    "results", "performance", "scale-out", "data-sources", "config",
                                                    "design-notes", "format")]
"""Docs pages whose commands run after the README's (they reuse what the quickstart wrote)."""
SKIP = re.compile(r"<!-- ci: skip \((.+)\) -->")
BLOCK_BUDGET_S = 420  # per block on a 2-core CI machine; the slowest (the quickstart) takes 1-2 minutes
LINKED = ("main.py", "tl_lightning", "configs", "benchmarks", "tests", ".venv", "constraints.txt", "requirements.txt")
NOISE = ("Tip:", "FutureWarning", "DeprecationWarning", "LeafSpec", "was called before the `update`",
         "Generating train split", "kernels-community", "The dirpath has changed")


def readme_blocks(text: str, page: str = "README.md") -> list[dict]:
    """Every ```bash block: its commands, the skip reason written above it (or None), the output the page shows
    after it ("It prints ...:" followed by a plain ``` block), and the section it is in."""
    lines, blocks, section = text.splitlines(), [], ""
    for i, line in enumerate(lines):
        if line.startswith("## "):
            section = line[3:].strip()
        if line.strip() != "```bash":
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.fullmatch(above.strip())
        blocks.append({"page": page, "line": i + 1, "section": section, "code": "\n".join(lines[i + 1:end]),
                       "skip": skip.group(1) if skip else None, "expected": _shown_output(lines, end)})
    return blocks


def _shown_output(lines: list[str], end: int) -> list[str]:
    """The lines of a plain ``` block that follows `end` after an "It prints ..." sentence, if any."""
    j = end + 1
    while j < len(lines) and not lines[j].startswith("```"):
        if lines[j].startswith(("## ", "<!--")):
            return []
        j += 1
    if j >= len(lines) or lines[j].strip() != "```" or "It prints" not in " ".join(lines[end + 1:j]):
        return []
    close = next(k for k in range(j + 1, len(lines)) if lines[k].strip() == "```")
    return [x.strip() for x in lines[j + 1:close] if x.strip()]


BLOCKS = readme_blocks(README.read_text()) + [b for p in PAGES for b in readme_blocks(p.read_text(), f"docs/{p.name}")]


def test_every_block_is_run_or_marked():
    assert BLOCKS, "no ```bash block found in README.md"
    for b in BLOCKS:  # a skip marker needs a reason; everything else below must run
        assert b["skip"] is None or b["skip"].strip(), f"{b['page']}:{b['line']}: empty skip reason"


def test_every_page_with_commands_is_run_once():
    """A docs page that shows a ```bash block is in `PAGES` (its commands run), and no runnable block is run twice
    (a command copied into two pages, or a page listed twice)."""
    with_blocks = {p for p in (ROOT / "docs").glob("*.md") if readme_blocks(p.read_text())}
    assert not with_blocks - set(PAGES), f"add to PAGES: {sorted(p.name for p in with_blocks - set(PAGES))}"
    assert len(PAGES) == len(set(PAGES)), "a page is listed twice in PAGES"
    runnable = [b["code"].strip() for b in BLOCKS if not b["skip"]]
    assert len(runnable) == len(set(runnable)), "the same commands run in two blocks"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("readme")
    cwd = base / "tl-lightning"
    cwd.mkdir()
    for name in LINKED:
        (cwd / name).symlink_to(ROOT / name)
    if SHARED_DATA.is_dir():
        (base / "shared").symlink_to(SHARED_DATA.parent)
    return cwd


def _run_block(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=BLOCK_BUDGET_S)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b['page'].removeprefix('docs/').removesuffix('.md')}"
                                                       f"-line{b['line']}")
def test_readme_block(block, workdir):
    if block["skip"]:
        pytest.skip(f"{block['page']}:{block['line']} marked: {block['skip']}")
    if "configs/eval/" in block["code"] and not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (the benchmark files)")
    t0 = time.monotonic()
    r = _run_block(block["code"], workdir)
    took = time.monotonic() - t0
    where = f"{block['page']}:{block['line']} ({block['section']}), {took:.0f} s"
    assert r.returncode == 0, f"{where} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    noise = [x for x in r.stderr.splitlines() if any(n in x for n in NOISE)]
    assert not noise, f"{where}: log noise on stderr: {noise[:5]}"
    missing = [x for x in block["expected"] if x not in r.stdout]
    assert not missing, f"{where}: the page shows output that was not printed: {missing}"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown page ("## Memory: a 7B model" -> "memory-a-7b-model")."""
    seen, anchors = {}, set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_relative_links_point_at_files():
    """Every relative link of the README and the docs pages names a file that exists, and a `#heading` in it names
    a heading of that page (pages moved in #25)."""
    broken = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in re.findall(r"\]\((?!https?:|mailto:)([^)\s#]*)(?:#([^)\s]+))?\)", page.read_text()):
            path = page.parent / target if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, broken
