"""The README is a short front door whose links work, and the documentation states the product.

Checked without MkDocs and without a subprocess (the strict MkDocs build in .ci/run checks the
pages in docs/ among themselves): README.md has at most 250 lines; every relative link in it
names an existing file, and every ``#anchor`` a heading of the page it points to (slugs as GitHub
and MkDocs make them); no README or docs page speaks of the project's development history; the
quick start's two commands are in the README verbatim, and its test command is the one CI runs.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from .conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"

QUICK_START = (
    "python3 -m pip install uv && uv run --locked snakemake --cores all --resources gpu=2",
    "uv run --locked pytest",
)

# Phrases that describe how the project was developed rather than what it does.
HISTORY = [
    r"\bthe issue\b",
    r"\bissue \d",
    r"\bthis version\b",
    r"\bprevious version\b",
    r"\bprevious README\b",
    r"\bthis README\b",
    r"\bbefore this change\b",
    r"\bused to\b",
    r"\bwhen this was (?:written|built)\b",
    r"\bno GPU was available\b",
]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code (which may hold brackets)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """GitHub's anchor: lowercase, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def mkdocs_slug(heading: str) -> str:
    """Python-Markdown's ``toc`` slugify (MkDocs' default): ASCII, runs of spaces and hyphens
    become one hyphen."""
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def heading_text(raw: str) -> str:
    """A heading as rendered: links reduced to their text, code and emphasis marks dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    return re.sub(r"[`*]", "", text).strip()


def anchors(page: Path) -> set[str]:
    """Every anchor a page's headings get, as GitHub and as MkDocs make them (GitHub numbers
    repeated headings: -1, -2, ...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in HEADING.finditer(FENCE.sub("", page.read_text(encoding="utf-8"))):
        text = heading_text(match.group(2))
        slug = github_slug(text)
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
        found.add(mkdocs_slug(text))
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page.read_text(encoding="utf-8")))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)
    ]


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_readme_is_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_links_point_to_existing_files_and_headings():
    links = relative_links(README)
    assert links, "no relative links found in README.md"
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve() if path else README
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, "README.md links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_development_history(page: Path):
    text = page.read_text(encoding="utf-8")
    hits = [
        f"{page.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for pattern in HISTORY
        for m in re.finditer(pattern, text, re.I)
    ]
    assert not hits, "state what the product does, not how it was made:\n" + "\n".join(hits)


def test_quick_start_commands_are_in_the_readme_verbatim():
    blocks = [
        block.strip()
        for block in re.findall(
            r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S
        )
    ]
    for command in QUICK_START:
        assert command in blocks, f"README.md has no code block holding exactly: {command}"
    readme = README.read_text(encoding="utf-8")
    assert "snakemake --cores all plan" in readme, "the quick start names the plan target"


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if not line.lstrip().startswith("#")]
    assert QUICK_START[1] in commands, f".ci/run does not run the README's `{QUICK_START[1]}`"


def test_slugs_match_github_and_mkdocs():
    assert github_slug("On a cluster (SLURM)") == "on-a-cluster-slurm"
    assert mkdocs_slug("On a cluster (SLURM)") == "on-a-cluster-slurm"
    heading = heading_text("Measured on `shapes10`: why not 6×?")
    assert github_slug(heading) == mkdocs_slug(heading) == "measured-on-shapes10-why-not-6"
    assert github_slug("a -- b") == "a----b" and mkdocs_slug("a -- b") == "a-b"
