"""The Jenkinsfile's structure: its stages, what they run, when it promotes, and its post steps.

No Jenkins runs here. A small brace-matching reader (strings and comments skipped) turns the
declarative pipeline into nested blocks; a Groovy parser would be a heavy dependency for a structure check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

JENKINSFILE = Path(__file__).resolve().parents[1] / "Jenkinsfile"


@dataclass
class Block:
    """``name(args) { statements and blocks }``; ``items`` keeps statements (str) and blocks in order."""

    name: str
    args: str = ""
    line: int = 0
    items: list["Block | str"] = field(default_factory=list)

    @property
    def blocks(self) -> list["Block"]:
        return [i for i in self.items if isinstance(i, Block)]

    @property
    def statements(self) -> list[str]:
        return [i for i in self.items if isinstance(i, str)]

    def block(self, name: str, args: str | None = None) -> "Block":
        found = [b for b in self.blocks if b.name == name and (args is None or _unquote(b.args) == args)]
        assert len(found) == 1, f"{self.name}: expected one {name}({args or ''}) block, found {len(found)}"
        return found[0]

    def text(self) -> str:
        """Every statement of this block and the blocks inside it, one a line."""
        return "\n".join(i if isinstance(i, str) else f"{i.name}({i.args})\n{i.text()}" for i in self.items)


def parse(text: str, path: str = "Jenkinsfile") -> Block:
    """Nested blocks of a Groovy file; raises ValueError naming the file and line of an unbalanced brace or string."""
    root = Block("<file>")
    stack = [root]
    buf: list[str] = []
    parens = 0
    i, line, n = 0, 1, len(text)

    def flush() -> None:
        statement = " ".join("".join(buf).split())
        if statement:
            stack[-1].items.append(statement)
        buf.clear()

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ValueError(f"{path}:{line}: unterminated comment")
            line += text.count("\n", i, end)
            i = end + 2
        elif c in "'\"":
            quote = text[i : i + 3] if text[i : i + 3] in ("'''", '"""') else c
            j = i + len(quote)
            while True:
                if j >= n:
                    raise ValueError(f"{path}:{line}: unterminated string")
                if text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j):
                    break
                j += 1
            end = j + len(quote)
            buf.append(text[i:end])
            line += text.count("\n", i, end)
            i = end
        elif c == "{":
            header = " ".join("".join(buf).split())
            buf.clear()
            match = re.fullmatch(r"(?:\}\s*)?([\w.]*)\s*(?:\((.*)\))?", header, re.S)
            name, args = (match.group(1), match.group(2) or "") if match else (header, "")
            block = Block(name, args, line)
            stack[-1].items.append(block)
            stack.append(block)
            i += 1
        elif c == "}":
            flush()
            if len(stack) == 1:
                raise ValueError(f"{path}:{line}: '}}' without a matching '{{'")
            stack.pop()
            i += 1
        else:
            if c == "(":
                parens += 1
            elif c == ")":
                parens -= 1
            if c == "\n":
                line += 1
                if parens == 0:
                    flush()
                    i += 1
                    continue
            buf.append(c)
            i += 1
    flush()
    if len(stack) > 1:
        raise ValueError(f"{path}:{stack[-1].line}: '{stack[-1].name}' block is never closed")
    return root


def _unquote(text: str) -> str:
    return text.strip().strip("'\"")


@pytest.fixture(scope="module")
def pipeline() -> Block:
    root = parse(JENKINSFILE.read_text(), str(JENKINSFILE))
    assert [b.name for b in root.blocks] == ["pipeline"], "one declarative pipeline, nothing else at the top"
    return root.block("pipeline")


def test_pipeline_sections(pipeline: Block) -> None:
    names = [b.name for b in pipeline.blocks]
    assert names == ["agent", "options", "environment", "stages", "post"]
    options = pipeline.block("options").statements
    assert "skipDefaultCheckout()" in options, "the checkout is an explicit stage, of the exact SHA"
    assert any(s.startswith("timeout(") for s in options), "a hung build is aborted (and so torn down)"


def test_stages_in_order(pipeline: Block) -> None:
    stages = pipeline.block("stages").blocks
    assert [(s.name, _unquote(s.args)) for s in stages] == [
        ("stage", "Checkout"),
        ("stage", "Build and verify"),
        ("stage", "Unit tests"),
        ("stage", "Promote"),
    ]


def test_checkout_is_of_the_sha(pipeline: Block) -> None:
    checkout = pipeline.block("stages").block("stage", "Checkout").block("steps").text()
    assert "checkout scm" in checkout
    assert "git rev-parse HEAD" in checkout and "$GIT_COMMIT" in checkout
    assert "ENVFIXTURES_SHA" not in checkout, "the SHA comes from git, so a dirty tree is never promoted"
    assert "rm -rf reports" in checkout, "no report (nor promotion record) of an earlier build survives"


def test_the_gate_runs_make_verify(pipeline: Block) -> None:
    steps = pipeline.block("stages").block("stage", "Build and verify").block("steps")
    assert steps.statements == [], "the gate's one step, inside catchError"
    caught = steps.block("catchError")
    assert "buildResult: 'FAILURE'" in caught.args, "a failed gate fails the build (and so never promotes)"
    assert caught.statements == ["sh 'make verify'"]
    makefile = (JENKINSFILE.parent / "Makefile").read_text()
    assert re.search(r"^verify:.*\n\t\$\(TOX\) -e build-and-verify", makefile, re.M), "make verify is the tox gate"
    assert re.search(r"^TOX = \.venv/bin/python -m tox$", makefile, re.M), "tox from the project's own venv"


def test_the_unit_tests_run_on_every_change_with_reports_of_their_own(pipeline: Block) -> None:
    """The gate's static stage no longer runs tests_unit: a stage of its own does, whether the gate passed or not
    (the gate's catchError lets it run), its reports away from the gate's summary.md and promotion.json."""
    steps = pipeline.block("stages").block("stage", "Unit tests").block("steps").statements
    assert len(steps) == 1 and steps[0].startswith("sh 'make unit ARGS="), steps
    junit = re.search(r"--junitxml=(\S+?)[\"']", steps[0])
    assert junit and junit[1].startswith("reports/") and junit[1].count("/") >= 2, "a directory under reports/"
    makefile = (JENKINSFILE.parent / "Makefile").read_text()
    assert re.search(r"^unit:.*\n\t\$\(TOX\) -e unit -- \$\(ARGS\)$", makefile, re.M), "make unit is tox -e unit"
    tox = (JENKINSFILE.parent / "tox.ini").read_text()
    assert re.search(r"^\[testenv:unit\]\n(?:.*\n)*?commands = pytest tests_unit ", tox, re.M)


def test_promote_only_on_main_when_the_record_exists(pipeline: Block) -> None:
    promote = pipeline.block("stages").block("stage", "Promote")
    condition = promote.block("when").block("allOf")
    assert "branch 'main'" in condition.statements
    expressions = [b.text() for b in condition.blocks if b.name == "expression"]
    assert "fileExists('reports/promotion.json')" in expressions
    assert "currentBuild.currentResult == 'SUCCESS'" in expressions
    steps = promote.block("steps").text()
    assert 'r["sha"] != os.environ["GIT_COMMIT"]' in steps, "the record must name the SHA that was built"


def test_post_always_publishes_archives_then_reaps(pipeline: Block) -> None:
    always = pipeline.block("post").block("always")
    statements = always.statements
    junit = [s for s in statements if s.startswith("junit ")]
    assert len(junit) == 1 and "'reports/**/*.xml'" in junit[0], "the gate's, the static stage's and the unit xml"
    assert "archiveArtifacts artifacts: 'reports/**', allowEmptyArchive: true" in statements
    assert statements[-1].startswith("sh ") and "envfixtures reap || true" in statements[-1], "reap last, never failing"
    assert statements.index(junit[0]) < statements.index(statements[-1])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("pipeline {\n  stages {\n  }\n", "Jenkinsfile:1: 'pipeline' block is never closed"),
        ("pipeline {\n}\n}\n", "Jenkinsfile:3: '}' without a matching '{'"),
        ("pipeline {\n  sh 'echo }\n}\n", "Jenkinsfile:2: unterminated string"),
    ],
)
def test_reader_names_the_line_of_an_unbalanced_file(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse(text)


def test_reader_skips_braces_in_strings_and_comments() -> None:
    root = parse("a {\n  sh '''echo }{'''\n  // }\n  /* { */\n  b('x') { c \"}\" }\n}\n")
    a = root.block("a")
    assert a.statements == ["sh '''echo }{'''"]
    assert a.block("b", "x").statements == ['c "}"']
