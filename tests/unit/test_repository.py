"""The repository stands alone, and docs/security.md tells the truth about its tests.

- No tracked file reads or points at a directory beside the repository: a fresh clone has only
  what is tracked.
- Every rule of docs/security.md marked done or partly names tests, and every test it names
  exists.
- Every id the code, the tests and the docs cite ("SECURITY R2", `test_R2_...`,
  `security.md#r2`) has its section in docs/security.md.

Plain file reading (and `git ls-files`): no servers, no sockets.
"""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SECURITY_MD = REPO_ROOT / "docs" / "security.md"
CORPUS = REPO_ROOT / "tests" / "data" / "openredirects.txt"
CORPUS_README = REPO_ROOT / "tests" / "data" / "README.md"

# -- Nothing outside the repository ------------------------------------------------------------

# The name of the directory that used to sit beside the repository, spelled in two parts so
# that this file does not match its own patterns.
_BESIDE = "sha" + "red"
OUTSIDE_REFERENCE = re.compile(
    r"\.\./+" + _BESIDE + r"\b"  # ../<dir>, however deep
    + r"|(?<![\w./-])" + _BESIDE + "/"  # <dir>/... from the repository root: there is none
    + r"|(?:^|[\s\"'`(=])/[\w./-]*/" + _BESIDE + "/"  # an absolute path through <dir>/
    + r"|/\s*[\"']" + _BESIDE + r"[\"']"  # Path(...) / "<dir>"
)


@cache
def tracked_files() -> tuple[Path, ...]:
    """What a clone holds: the files git tracks, and new ones it would add (tests run before a
    commit too). Outside a git checkout (an unpacked sdist): every file but hidden and build
    directories."""
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    try:
        listed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True,
                                check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return tuple(p for p in sorted(REPO_ROOT.rglob("*")) if p.is_file() and not any(
            part.startswith(".") or part.endswith(".egg-info") or part == "__pycache__"
            for part in p.relative_to(REPO_ROOT).parts))
    return tuple(REPO_ROOT / name for name in listed.split("\0") if name)


def text_files() -> Iterator[tuple[Path, str]]:
    """Every tracked file that is text (binary files, such as the PNGs, are skipped)."""
    for path in tracked_files():
        if not path.is_file():  # deleted in the work tree, not yet in the index
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            yield path, data.decode("utf-8", "replace")


def where(path: Path, text: str, offset: int) -> str:
    return f"{path.relative_to(REPO_ROOT)}:{text.count(chr(10), 0, offset) + 1}"


def test_the_outside_reference_pattern_catches_each_form() -> None:
    beside = _BESIDE
    for reference in (f"../{beside}/testdata/openredirects.txt", f"see ../../{beside}/STYLE.md",
                      f"`{beside}/SECURITY.md`", f"/srv/{beside}/testdata",
                      f'Path(__file__).parents[1].parent / "{beside}" / "testdata"'):
        assert OUTSIDE_REFERENCE.search(reference), reference
    for innocent in ("verify_shared = true", "shared by several replicas", "shared=True",
                     "a cookie shared with your subdomains", "the shared 2-core host",
                     "https://example.com/docs/shared/page"):
        assert not OUTSIDE_REFERENCE.search(innocent), innocent


def test_no_tracked_file_points_outside_the_repository() -> None:
    assert not (REPO_ROOT / _BESIDE).exists()  # else "<dir>/" would be a path inside
    found = [f"{where(path, text, m.start())}: {m.group(0).strip()}"
             for path, text in text_files() for m in OUTSIDE_REFERENCE.finditer(text)]
    assert found == [], "files that point outside the repository:\n" + "\n".join(found)


def test_the_open_redirect_corpus_is_tracked_with_its_source_license_and_digest() -> None:
    assert CORPUS in tracked_files() and CORPUS_README in tracked_files()
    readme = CORPUS_README.read_text(encoding="utf-8")
    assert "oauth2-proxy/oauth2-proxy" in readme and "`testdata/openredirects.txt`" in readme
    assert re.search(r"commit: `[0-9a-f]{40}`", readme)
    assert "Permission is hereby granted, free of charge" in readme
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in readme
    # Copied byte for byte: the digest written beside it is the file's own.
    stated = re.search(r"SHA-256 of the file: `([0-9a-f]{64})`", readme)
    assert stated and hashlib.sha256(CORPUS.read_bytes()).hexdigest() == stated.group(1)


# -- docs/security.md: its rules and their tests -----------------------------------------------

RULE = re.compile(r'^<a id="([a-z][0-9]{1,2})"></a>\n### ([A-Z][0-9]{1,2}) — \S', re.MULTILINE)
STATUS = re.compile(r"^\*\*Status:\*\* (done|partly|not yet)\b", re.MULTILINE)
TEST_REFERENCE = re.compile(r"\btests/([\w/]+\.py)::(test_\w+)")


@dataclass(frozen=True)
class Rule:
    id: str
    status: str | None
    tests: tuple[tuple[str, str], ...]  # (file under tests/, function name)


def rules(text: str) -> dict[str, Rule]:
    """The rules of a security model page, by id: each from its anchor to the next one."""
    found: dict[str, Rule] = {}
    matches = list(RULE.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        anchor, heading = match.groups()
        assert anchor == heading.lower(), f"anchor {anchor!r} above the heading of {heading}"
        assert heading not in found, f"{heading} has two sections"
        body = text[match.end():following.start() if following else len(text)]
        status = STATUS.search(body)
        found[heading] = Rule(heading, status.group(1) if status else None,
                              tuple(TEST_REFERENCE.findall(body)))
    return found


@cache
def functions_in_tests(relative: str) -> frozenset[str]:
    """The test functions pytest would collect from tests/<relative> (module level or in a
    class), by name; empty when there is no such file."""
    path = REPO_ROOT / "tests" / relative
    if not path.is_file():
        return frozenset()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                     and node.name.startswith("test_"))


def missing_tests(references: list[tuple[str, str]]) -> list[str]:
    return [f"tests/{file}::{name}" for file, name in references
            if name not in functions_in_tests(file)]


def test_the_rule_parser_reads_ids_statuses_and_tests() -> None:
    page = ('<a id="r2"></a>\n### R2 — return_to\n\n**Status:** done.\nTests:\n'
            "- `tests/test_a.py::test_R2_x`\n- `tests/test_b.py::test_y`\n\n"
            '<a id="p9"></a>\n### P9 — back-channel logout\n\n**Status:** not yet: planned.\n')
    assert rules(page) == {"R2": Rule("R2", "done", (("test_a.py", "test_R2_x"),
                                                     ("test_b.py", "test_y"))),
                           "P9": Rule("P9", "not yet", ())}
    with pytest.raises(AssertionError, match="anchor"):
        rules('<a id="r3"></a>\n### R2 — return_to\n')
    this_test = "test_the_rule_parser_reads_ids_statuses_and_tests"
    assert missing_tests([("unit/test_repository.py", this_test),
                          ("unit/test_repository.py", "test_that_does_not_exist"),
                          ("no_such_file.py", "test_x")]) == [
        "tests/unit/test_repository.py::test_that_does_not_exist", "tests/no_such_file.py::test_x"]


def test_every_rule_has_its_anchor_heading_and_status() -> None:
    text = SECURITY_MD.read_text(encoding="utf-8")
    model = rules(text)
    assert len(model) >= 60
    assert [r.id for r in model.values() if r.status is None] == []
    # Every "### X1" heading is a rule with its anchor (none slipped past the parser).
    headings = re.findall(r"^### ([A-Z][0-9]{1,2})\b", text, re.MULTILINE)
    assert sorted(headings) == sorted(model)


def test_every_rule_done_or_partly_names_a_test() -> None:
    model = rules(SECURITY_MD.read_text(encoding="utf-8"))
    untested = [r.id for r in model.values() if r.status in ("done", "partly") and not r.tests]
    assert untested == []
    claimed = [r.id for r in model.values() if r.status == "not yet" and r.tests]
    assert claimed == [], "rules not yet done must not name tests as their proof"


@pytest.mark.parametrize("page", [SECURITY_MD, CORPUS_README],
                         ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_test_a_page_names_exists(page: Path) -> None:
    references = TEST_REFERENCE.findall(page.read_text(encoding="utf-8"))
    assert references
    assert missing_tests(references) == []


# -- Every cited id has its section ------------------------------------------------------------

ID = r"[A-Z][0-9]{1,2}"
# "SECURITY R2", "SECURITY K5/P3", "(SECURITY R1, R3, S2)", "SECURITY J1-J9", "D1 and D3"
SECURITY_CITATION = re.compile(rf"\bSECURITY\s+({ID}(?:\s*(?:,|/|-|\u2013|\band\b)\s*{ID})*)\b")
TEST_NAME_IDS = re.compile(rf"^\s*(?:async\s+)?def\s+test_((?:{ID}_)+)", re.MULTILINE)
PAGE_LINK = re.compile(r"\bsecurity\.md#([a-z][0-9]{1,2})\b")


def cited_ids(text: str) -> list[tuple[str, int]]:
    """The rule ids a text cites, each with the offset of its citation: a "SECURITY" list
    (ranges such as J1-J9 spelled out), a test named after ids, a link to a rule's anchor."""
    found: list[tuple[str, int]] = []
    for match in SECURITY_CITATION.finditer(text):
        ids = re.findall(ID, match.group(1))
        for first, last in re.findall(rf"({ID})\s*[-\u2013]\s*({ID})", match.group(1)):
            if first[0] == last[0]:
                ids += [f"{first[0]}{n}" for n in range(int(first[1:]), int(last[1:]) + 1)]
        found += [(rule_id, match.start()) for rule_id in ids]
    for match in TEST_NAME_IDS.finditer(text):
        found += [(rule_id, match.start()) for rule_id in match.group(1).split("_") if rule_id]
    found += [(m.group(1).upper(), m.start()) for m in PAGE_LINK.finditer(text)]
    return found


def test_the_citation_parser_reads_lists_ranges_names_and_links() -> None:
    def ids(text: str) -> set[str]:
        return {rule_id for rule_id, _ in cited_ids(text)}

    assert ids("# SECURITY K5/P3: a dict of versions") == {"K5", "P3"}
    assert ids("(SECURITY R1, R3, S2, C1) and J5") == {"R1", "R3", "S2", "C1"}
    assert ids('"""Our JWTs (SECURITY J1-J9)."""') == {f"J{n}" for n in range(1, 10)}
    assert ids("SECURITY D1 and D3, never D2") == {"D1", "D3"}
    assert ids("SECURITY T1\u2013T3") == {"T1", "T2", "T3"}
    assert ids("def test_S1_S2_R4_login_redirect(stack):\n    T0 = 1") == {"S1", "S2", "R4"}
    assert ids("see [R2](docs/security.md#r2)") == {"R2"}
    assert ids("SECURITY_HEADERS, SECURITY: R2, T0 = 1, %C3%A9, test_helper_R2") == set()


def test_every_cited_id_has_its_section() -> None:
    documented = set(rules(SECURITY_MD.read_text(encoding="utf-8")))
    undocumented: dict[str, str] = {}
    for path, text in text_files():
        for rule_id, offset in cited_ids(text):
            if rule_id not in documented:
                undocumented.setdefault(rule_id, where(path, text, offset))
    assert undocumented == {}, "ids cited but missing from docs/security.md"
