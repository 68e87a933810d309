"""Every code block of the documentation runs as a test.

``tests/docs/test_examples.py`` finds every page under ``docs/`` (``*.md``,
by glob: a new page is covered the day it is added), parses it with the
MyST parser Sphinx uses, and tests every fenced code block according to its
language, or to a *marker*: a MyST comment on the line directly before the
fence::

    % test: <kind> [arguments] [option=value ...]
    ```python
    ...
    ```

MyST comments start with ``%`` and are not rendered. Arguments are split
like a shell command line (quote what contains spaces). docs/contributing-
docs.md explains the same to writers of pages, with examples.

A block that no kind can test fails, naming file:line and what to write.
So does an indented code block, a marker that is not directly before a
fence, code inside ``{eval-rst}``, and a ``{literalinclude}`` or
``{include}`` of a file that does not exist (the included file itself is
not tested here: test it where it is used). Blocks inside other directives
(``{note}``, ``:::``) are found and tested like the others.

Blocks of one page run in page order, in a temporary directory of the
page's own: the working directory while they run, and first on
``sys.path``, so that modules written there can be imported. It holds a
``.venv`` link to the running environment (``.venv/bin/python`` works in
commands) and ``etc``, ``log``, ``var/filestorage``, ``var/blobstorage``.
The docs' deployment directory ``/srv/plone`` is that directory: it is
substituted in commands and in written files, and back in output. Python
blocks of a page share one namespace; what they leave running
(dispatchers, databases) is stopped at the end of the page, and
``os.environ`` restored.

Kinds (the default for a language needs no marker):

``doctest`` (default for ``pycon``)
    A doctest, with ELLIPSIS and NORMALIZE_WHITESPACE.

``run`` (default for ``python``)
    Executed. Its printed output is kept for a following ``output`` block.

``file PATH``
    (``python``) Written to PATH in the page's directory, e.g. ``% test: file
    myapp/jobs.py`` for "put this in your package"; it must compile and use
    no undefined name (ruff's F821). Later blocks import it, or run it.

``output``
    (``text``) What the ``run`` block before it printed.

``pytest FILE``
    (``python``) Written to FILE and run with pytest in a subprocess, in the
    page's directory (with the ``conftest.py`` a ``file`` block wrote there,
    plugins not loaded); every test must pass. ``pytest FILE plone``: its
    test functions and unittest TestCases run in-process, in the page's
    Plone layer (below), the functions getting pytest-plone's ``portal``,
    ``app``, ``http_request`` and ``integration`` by name: one Plone setup
    for the whole session instead of one per example.

``console [FIXTURE ...]`` (default for ``console``, ``shell``, ``bash``)
    Lines starting with ``$ `` are commands (a trailing ``\\`` continues one),
    run with bash in the page's directory, the environment's ``bin`` first
    on ``PATH``. The lines after a command are its output (stdout and stderr),
    compared as described below. A command shown without output must exit
    with 0. FIXTUREs are in docfixtures.py: ``zeo`` (a ZEO server; the docs'
    ``127.0.0.1:8100`` is its address), ``zeo-stopped`` (that server,
    stopped), ``zope-instance`` (a Zope instance at ``parts/worker`` on that
    server), ``ops`` (the cluster docs/operations.md shows), ``postgres``
    (a PostgreSQL database; the docs' DSN ``host=127.0.0.1 dbname=zodb
    user=zodb`` is it; without PostgreSQL its blocks are skipped with a
    warning, except under CI, where they fail).

``serve [FIXTURE ...] [then=NAME]``
    A console block whose one command runs until stopped (``zasync
    worker``): it is started, its output must come to match the lines shown
    (within 30 s), then it gets SIGTERM and must exit with 0. ``then=NAME``
    calls ``docsetup.NAME(page)`` once the first line shown has appeared (to
    queue a job for it, say).

``covered-by PATH [PATH ...]``
    A console block of commands that serve forever or need a whole
    deployment (``make run``, ``zasync cluster start``, ``bin/buildout``,
    ``systemctl ...``). Each command (without its ``# comment``) must occur
    verbatim in one of the files named (relative to the repository): the
    tests that run it. The output shown is not checked here.

``pip``
    A console block of ``pip install REQUIREMENT...`` commands: each
    requirement must parse, and ``zasync[EXTRA]`` must name extras that
    pyproject.toml defines. Nothing is installed.

``zope-conf [file=PATH]`` (default for ``apacheconf`` and ``zconfig``)
    A zope.conf, or a snippet of one (``<product-config zasync>``,
    ``<zodb_db ...>``), embedded into a minimal zope.conf when it has no
    ``<zodb_db main>`` (``$INSTANCE`` is the page's directory), parsed with
    Zope's own schema, as Zope loads it; ``<product-config zasync>`` then
    goes through zasync.plone.config's validation, and its ``database``
    must be one of the ``<zodb_db>`` sections when the snippet has any.
    ``file=PATH`` writes the block to PATH as well (for later commands).

``zodb-conf [file=PATH]``
    A ZODB configuration file, as ``zasync --zodb-conf`` reads it
    (``<zodb>`` sections), parsed with ZODB's schema.

``zeo-conf [file=PATH]``
    A ZEO server's configuration, or a snippet of one, parsed with ZEO's
    schema.

``zodbpack-conf [file=PATH]``
    A configuration file for RelStorage's ``zodbpack`` (storage sections, no
    ``<zodb>``), parsed with zodbpack's schema.

``zcml [package=DOTTED] [file=PATH]`` (default for ``xml`` whose root is
``configure``, ``include``, ``subscriber`` or ``utility``)
    ZCML, wrapped in ``<configure>`` if it is a fragment, parsed with
    zope.configuration (with zope.component's directives) without executing
    it, so nothing is registered: every ``package=``, ``file=``,
    ``component=``, ``handler=`` and ``for=`` must resolve. ``package=`` is
    the package relative names (``.jobs.handler``) are relative to.

``gs-metadata``
    A GenericSetup ``metadata.xml`` (or its ``<dependencies>``): every
    ``profile-PACKAGE:NAME`` it names must be a profile that PACKAGE's ZCML
    registers.

``ini`` (default for ``ini``)
    Parsed with configparser.

``systemd-unit``
    An ``ini`` block that is a systemd unit: ``[Unit]``, ``[Service]`` and
    ``ExecStart``; a ``zasync`` command in ExecStart must be accepted by
    zasync's own argument parser, and ``TimeoutStopSec`` must exceed its
    ``--grace``.

``crontab``
    (``text``) Crontab lines (five time fields and a command); ``zasync``
    commands in them must be accepted by zasync's argument parser, and
    every program must exist (in the environment's ``bin``, or on PATH).

``buildout``
    A buildout configuration (``ini``). The page's buildout blocks are
    merged in page order (a later one changes options of an earlier one);
    every ``${section:option}`` must resolve (``${buildout:directory}`` is
    ``/srv/plone``), ``<=`` must name a section, and ``zcml-additional``,
    ``zope-conf-additional`` and ``zeo-conf-additional`` are tested as
    ``zcml``, ``zope-conf`` and ``zeo-conf``.

``yaml`` (default for ``yaml``)
    Parsed with yaml.safe_load; a ``product_config: {zasync: ...}`` mapping
    in it goes through zasync.plone.config's validation.

``page``
    (``markdown``) A page in a page: its blocks are tested as a page of
    their own (docs/contributing-docs.md shows markers this way).

``illustration REASON``
    Not tested, because of REASON (required): code for the old Python 2
    stack, say. Keep these rare.

``doctest`` and ``run`` take ``plone``: the block runs in
zasync.plone.testing's ZASYNC_INTEGRATION_TESTING layer (set up once for
the test session; the page runs, from its first block to its last, in one
test of the layer, with the layer's dispatcher), with ``app``, ``portal``,
``request``, ``layer`` and ``context`` (a folder ``a-folder`` that the
logged-in test user owns; ``folder`` too) in the namespace. They also take
``setup=NAME``: ``docsetup.NAME(page)`` prepares what the page needs and
does not show, before the block.

Output comparison (console, serve, output) works as a doctest's, with
ELLIPSIS (``...`` matches anything, across lines) and NORMALIZE_WHITESPACE,
after these replacements on both sides: the fixtures' substitutions are
undone (the real port becomes the docs' ``127.0.0.1:8100``); times such
as ``2026-11-23 21:02:11`` (with fractions, ``T`` and ``+00:00``, or a
log's ``,123``) become ``<TIME>``, UUIDs ``<UUID>``, numbers of 15 to 20
digits (job ids) ``<ID>``, fractional seconds such as ``4.210s``
``<SECONDS>``; then a fixture's own normalizers (see docfixtures.py).

``check(text)`` tests a page given as text and returns what the tests would
say: test_harness.py uses it to show that each kind fails when it should.
"""

import configparser
import contextlib
import dataclasses
import doctest
import importlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent
ENVIRONMENT = Path(sys.prefix)
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
COMMAND_TIMEOUT = 120
HOW_TO_MARK = (
    "put a marker on the line directly before the fence, such as "
    "'% test: illustration <why it cannot run>' or another kind described in "
    "tests/docs/docexamples.py and docs/contributing-docs.md"
)


class ExampleFailed(Exception):
    """A block did not do what the page shows; the message says how."""


class BlockSkipped(Exception):
    """A fixture the block needs is not available here (outside CI)."""


def relative(path):
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# -- finding the blocks -------------------------------------------------------


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    marker: str | None = None  # what follows "% test:"
    kind: str | None = None
    args: list = dataclasses.field(default_factory=list)
    options: dict = dataclasses.field(default_factory=dict)
    invalid: bool = False

    @property
    def where(self):
        return f"{relative(self.page)}:{self.line}"

    @property
    def plone(self):
        return "plone" in self.args


@dataclasses.dataclass
class Page:
    path: Path
    blocks: list
    includes: list  # (line, path) of {literalinclude} and {include}
    problems: list  # texts naming file:line

    def runnable(self):
        """The blocks that a kind can test (the others are problems)."""
        return [b for b in self.blocks if b.kind in KINDS and not b.invalid]

    @property
    def name(self):
        return relative(self.path)


def pages():
    """Every page of the documentation, by glob."""
    return sorted(
        path
        for path in DOCS.rglob("*.md")
        if "_build" not in path.relative_to(DOCS).parts
    )


def _myst_extensions():
    namespace = {"__file__": str(DOCS / "conf.py")}
    exec(
        compile((DOCS / "conf.py").read_text(), str(DOCS / "conf.py"), "exec"),
        namespace,
    )
    return set(namespace.get("myst_enable_extensions", ()))


_parser = []


def _markdown():
    if not _parser:
        from markdown_it.renderer import RendererHTML
        from myst_parser.config.main import MdParserConfig
        from myst_parser.parsers.mdit import create_md_parser

        config = MdParserConfig(enable_extensions=_myst_extensions())
        _parser.append(create_md_parser(config, RendererHTML))
    return _parser[0]


# Directives whose content is not Markdown (or not code to test).
NOT_MARKDOWN = {"eval-rst", "raw", "math", "toctree", "mermaid", "graphviz"}
CODE_DIRECTIVES = {"code-block", "code", "sourcecode"}
INCLUDE_DIRECTIVES = {"literalinclude", "include"}
RST_CODE = re.compile(
    r"^\s*\.\. (code-block|code|sourcecode|literalinclude|doctest|testcode)::"
    r"|::\s*$",
    re.MULTILINE,
)


def _strip_options(content):
    """Remove a directive's leading ``:option:`` lines (or --- block);
    returns (content, number of lines removed)."""
    lines = content.splitlines(keepends=True)
    removed = 0
    if lines and lines[0].strip() == "---":
        for index in range(1, len(lines)):
            if lines[index].strip() == "---":
                removed = index + 1
                break
    else:
        while removed < len(lines) and re.match(r"^:[\w-]+:", lines[removed]):
            removed += 1
    return "".join(lines[removed:]), removed


def parse_page(path, text=None):
    text = path.read_text() if text is None else text
    page = Page(path, [], [], [])
    _parse(page, text, 0)
    return page


def _parse(page, text, offset):
    tokens = [t for t in _markdown().parse(text) if t.map is not None]
    markers = {}  # first line after the marker (0-based) -> (spec, 1-based line)
    for token in tokens:
        if token.type != "myst_line_comment":
            continue
        lines = token.content.splitlines()
        for index, line in enumerate(lines):
            if line.strip().startswith("test:"):
                line_no = offset + token.map[0] + index + 1
                if index != len(lines) - 1:
                    page.problems.append(
                        f"{relative(page.path)}:{line_no}: a '% test:' marker must "
                        f"be the last comment line, directly before the fence"
                    )
                    continue
                markers[token.map[1]] = (line.strip()[len("test:") :].strip(), line_no)
    used = set()
    for token in tokens:
        line = offset + token.map[0] + 1
        where = f"{relative(page.path)}:{line}"
        if token.type == "code_block":
            page.problems.append(
                f"{where}: an indented code block; make it a fenced block with a "
                f"language (```python ... ```), and {HOW_TO_MARK} if its language "
                f"alone does not say how to test it"
            )
            continue
        if token.type not in ("fence", "colon_fence"):
            continue
        marker = markers.get(token.map[0])
        if marker:
            used.add(token.map[0])
        info = token.info.strip()
        content = token.content
        if info.startswith("{") and "}" in info:
            name = info[1 : info.index("}")]
            argument = info[info.index("}") + 1 :].strip()
            if name in CODE_DIRECTIVES:
                content, removed = _strip_options(content)
                language = argument.split()[0] if argument else ""
                page.blocks.append(_block(page, line, language, content, marker))
            elif name in INCLUDE_DIRECTIVES:
                page.includes.append((line, argument))
                if marker:
                    page.problems.append(
                        f"{where}: a marker before {{{name}}}: included files are "
                        f"not tested here; test the file itself"
                    )
            elif name == "eval-rst":
                if RST_CODE.search(content):
                    page.problems.append(
                        f"{where}: code inside {{eval-rst}} is not tested; write "
                        f"it as a MyST fenced block instead"
                    )
            elif name not in NOT_MARKDOWN:
                inner, removed = _strip_options(content)
                _parse(page, inner, offset + token.map[0] + 1 + removed)
            continue
        language = info.split()[0] if info else ""
        page.blocks.append(_block(page, line, language, content, marker))
    for first_line, (_spec, line_no) in markers.items():
        if first_line not in used:
            page.problems.append(
                f"{relative(page.path)}:{line_no}: a '% test:' marker that is not "
                f"directly before a fenced code block"
            )


def _block(page, line, language, content, marker):
    block = Block(page.path, line, language, content)
    if marker is not None:
        block.marker = marker[0]
    return block


# -- kinds --------------------------------------------------------------------


@dataclasses.dataclass
class Kind:
    name: str
    languages: frozenset | None  # None: any
    run: object
    options: frozenset = frozenset()


KINDS = {}


def kind(name, languages=None, options=()):
    def register(func):
        KINDS[name] = Kind(
            name,
            None if languages is None else frozenset(languages),
            func,
            frozenset(options),
        )
        return func

    return register


CONSOLE = ("console", "shell", "bash", "sh", "shell-session")
ZCONFIG = ("apacheconf", "zconfig")
XML_ZCML_ROOTS = {"configure", "include", "includeOverrides", "subscriber", "utility"}


def default_kind(block):
    """The kind a block gets without a marker, or None."""
    language = block.language
    if language == "pycon":
        return "doctest"
    if language in ("python", "py", "python3"):
        return "run"
    if language in CONSOLE:
        return "console"
    if language in ZCONFIG:
        return "zope-conf"
    if language == "ini":
        return "ini"
    if language == "yaml":
        return "yaml"
    if language == "xml":
        root = _xml_root(block.text)
        if root is not None and root.tag.split("}")[-1] in XML_ZCML_ROOTS:
            return "zcml"
    return None


def _xml_root(text):
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None


def classify(block):
    """Set block.kind, .args and .options; returns a problem text or None."""
    if block.marker is None:
        block.kind = default_kind(block)
        if block.kind is None:
            return (
                f"{block.where}: no test for a ```{block.language or '(no language)'} "
                f"block: {HOW_TO_MARK}"
            )
        return None
    try:
        words = shlex.split(block.marker)
    except ValueError as exc:
        return f"{block.where}: cannot read the marker '% test: {block.marker}': {exc}"
    if not words:
        return f"{block.where}: an empty '% test:' marker; name a kind"
    block.kind, rest = words[0], words[1:]
    spec = KINDS.get(block.kind)
    if spec is None:
        return (
            f"{block.where}: unknown kind {block.kind!r} in '% test: {block.marker}'; "
            f"the kinds are {', '.join(sorted(KINDS))} (see tests/docs/docexamples.py)"
        )
    for word in rest:
        key, equals, value = word.partition("=")
        if equals and key in spec.options:
            block.options[key] = value
        else:
            block.args.append(word)
    if spec.languages is not None and block.language not in spec.languages:
        return (
            f"{block.where}: '% test: {block.kind}' is for "
            f"{', '.join(sorted(spec.languages))} blocks, not ```{block.language}"
        )
    if block.kind == "illustration" and not block.args:
        return f"{block.where}: '% test: illustration' needs a reason after it"
    return None


# -- running a page -------------------------------------------------------------


class PageRun:
    """The state the blocks of one page share while they run."""

    def __init__(self, page, directory, plone=None):
        self.page = page
        self.dir = Path(directory)
        self.plone = plone  # the Plone layer, when a block needs it
        self.namespace = {"__name__": "__docs__"}
        self.last_output = None
        self.fixtures = {}
        self.substitutions = []  # (as in the docs, as here)
        self.normalizers = []  # (compiled regex, replacement)
        self.buildout = {}  # the page's buildout blocks, merged
        self.cleanups = []
        self.times = []  # (seconds, block)
        self.unavailable = {}  # fixture name: why
        self.skipped = []  # texts
        self.environ = dict(os.environ)  # restored at the end of the page
        self.dir.mkdir(parents=True, exist_ok=True)
        venv = self.dir / ".venv"
        if not venv.exists():
            venv.symlink_to(ENVIRONMENT, target_is_directory=True)
        # The docs' deployment lives in /srv/plone: here, the page's directory.
        for name in INSTANCE_DIRECTORIES:
            (self.dir / name).mkdir(parents=True, exist_ok=True)
        self.substitutions.append((DOCS_DEPLOYMENT, str(self.dir)))

    # environment

    def env(self):
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(self.dir), env.get("PYTHONPATH")])
        )
        env["PYTHONUNBUFFERED"] = "1"
        env["COLUMNS"] = "80"
        for name in ("ZASYNC_UUID", "ZC_ASYNC_UUID", "ZASYNC_DISPATCHER"):
            env.pop(name, None)
        return env

    @contextlib.contextmanager
    def inside(self):
        """Run with the page's directory as working directory."""
        previous = os.getcwd()
        os.chdir(self.dir)
        try:
            yield
        finally:
            os.chdir(previous)

    def substitute(self, text):
        for docs, here in self.substitutions:
            text = text.replace(docs, here)
        return text

    def unsubstitute(self, text):
        for docs, here in self.substitutions:
            text = text.replace(here, docs)
        return text

    def write(self, relative_path, text):
        path = self.dir / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.substitute(text))
        importlib.invalidate_caches()
        return path

    def fixture(self, name):
        import docfixtures

        if name in self.unavailable:
            if os.environ.get("CI"):
                raise ExampleFailed(f"{self.unavailable[name]} (CI needs it)")
            raise BlockSkipped(self.unavailable[name])
        if name not in self.fixtures:
            factory = docfixtures.FIXTURES.get(name)
            if factory is None:
                raise ExampleFailed(
                    f"unknown fixture {name!r}; the fixtures are "
                    f"{', '.join(sorted(docfixtures.FIXTURES))} (tests/docs/docfixtures.py)"
                )
            try:
                self.fixtures[name] = factory(self)
            except docfixtures.Unavailable as exc:
                self.unavailable[name] = str(exc)
                return self.fixture(name)
        return self.fixtures[name]

    # comparing output

    def normalize(self, text):
        text = self.unsubstitute(text)
        for pattern, replacement in NORMALIZERS + self.normalizers:
            text = pattern.sub(replacement, text)
        return text

    def check_output(self, expected, got, what):
        want = self.normalize(expected)
        have = self.normalize(got)
        if not want.endswith("\n"):
            want += "\n"
        if not have.endswith("\n"):
            have += "\n"
        if doctest.OutputChecker().check_output(want, have, DOCTEST_FLAGS):
            return
        raise ExampleFailed(
            f"{what}: the output differs from the page's.\n"
            f"--- shown (normalized):\n{want}--- got (normalized):\n{have}"
            f"--- got:\n{got}"
        )

    # the page

    def run(self, blocks):
        """Run the blocks in order; returns the failures (texts)."""
        failures = []
        sys.path.insert(0, str(self.dir))
        try:
            for name in self.fixture_names(blocks):
                with contextlib.suppress(BlockSkipped, ExampleFailed):
                    self.fixture(name)  # errors show in the blocks that need it
            for block in blocks:
                started = time.monotonic()
                try:
                    KINDS[block.kind].run(block, self)
                except ExampleFailed as exc:
                    failures.append(f"{block.where} ({block.kind}): {exc}")
                except BlockSkipped as exc:
                    self.skipped.append(f"{block.where} ({block.kind}): not run: {exc}")
                except Exception as exc:
                    failures.append(
                        f"{block.where} ({block.kind}): {_traceback(exc, block)}"
                    )
                self.times.append((time.monotonic() - started, block))
        finally:
            self.close()
        return failures

    @staticmethod
    def fixture_names(blocks):
        names = []
        for block in blocks:
            if block.kind in ("console", "serve"):
                for name in block.args:
                    base = name.removesuffix("-stopped")
                    if base not in names:
                        names.append(base)
        return names

    def close(self):
        import transaction

        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        _stop_what_blocks_left(self.namespace)
        for fixture in reversed(list(self.fixtures.values())):
            with contextlib.suppress(Exception):
                fixture.stop()
        with contextlib.suppress(Exception):
            transaction.abort()
        with contextlib.suppress(ValueError):
            sys.path.remove(str(self.dir))
        _forget_modules(self.dir)
        os.environ.clear()
        os.environ.update(self.environ)


def _traceback(exc, block):
    """The traceback of an error in a block, from the page's first frame
    on (the harness's own frames say nothing)."""
    frames = traceback.extract_tb(exc.__traceback__)
    page = str(block.page)
    for index, frame in enumerate(frames):
        if frame.filename == page:
            frames = frames[index:]
            break
    return "".join(
        ["Traceback (most recent call last):\n"]
        + traceback.format_list(frames)
        + traceback.format_exception_only(exc)
    )


def _stop_what_blocks_left(namespace):
    """Stop the dispatchers and close the databases that a page's blocks
    started and did not stop themselves."""
    import ZODB

    import zasync

    for value in list(namespace.values()):
        if isinstance(value, zasync.Dispatcher):
            with contextlib.suppress(Exception):
                value.stop(10)
    for value in list(namespace.values()):
        if isinstance(value, ZODB.DB):
            with contextlib.suppress(Exception):
                value.close()


def _forget_modules(directory):
    """Unimport the modules a page wrote, so that the next page may write
    its own ``myapp``."""
    prefix = str(directory)
    doomed = []
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None) or ""
        try:
            paths = [str(p) for p in getattr(module, "__path__", None) or []]
        except Exception:  # a namespace package whose parent went first
            paths = []
        if where.startswith(prefix) or any(p.startswith(prefix) for p in paths):
            doomed.append(name)
    for name in doomed:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


NORMALIZERS = [
    (
        re.compile(
            r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:[+-]\d{2}:\d{2}|Z)?"
        ),
        "<TIME>",
    ),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
        "<UUID>",
    ),
    (re.compile(r"\b\d{15,20}\b"), "<ID>"),
    (re.compile(r"\b\d+\.\d+s\b"), "<SECONDS>"),
]


# -- the kinds ------------------------------------------------------------------


def _python_code(block):
    """The block compiled so that tracebacks show the page's own lines."""
    return compile("\n" * block.line + block.text, str(block.page), "exec")


def _setup(block, run):
    name = block.options.get("setup")
    if name:
        import docsetup

        function = getattr(docsetup, name, None)
        if function is None:
            raise ExampleFailed(f"no setup function {name!r} in tests/docs/docsetup.py")
        function(run)


def _check_plone(block, run):
    if block.plone and run.plone is None:
        raise ExampleFailed(
            "a 'plone' block, but the page runs without the Plone layer"
        )


@kind("doctest", {"pycon"}, options=("setup",))
def _doctest(block, run):
    _check_plone(block, run)
    _setup(block, run)
    test = doctest.DocTestParser().get_doctest(
        block.text, run.namespace, block.where, relative(block.page), block.line
    )
    test.globs = run.namespace  # get_doctest copied it; the page shares one
    report = []
    runner = doctest.DocTestRunner(
        optionflags=DOCTEST_FLAGS | doctest.REPORT_ONLY_FIRST_FAILURE
    )
    with run.inside():
        runner.run(test, out=report.append, clear_globs=False)
    if runner.failures:
        raise ExampleFailed("".join(report))


@kind("run", {"python", "py", "python3"}, options=("setup",))
def _run(block, run):
    _check_plone(block, run)
    _setup(block, run)
    output = io.StringIO()
    with run.inside(), contextlib.redirect_stdout(output):
        exec(_python_code(block), run.namespace)
    run.last_output = output.getvalue()


@kind("output", {"text", "none", ""})
def _output(block, run):
    if run.last_output is None:
        raise ExampleFailed("an 'output' block, but no 'run' block before it printed")
    run.check_output(block.text, run.last_output, "the run block before")
    run.last_output = None


def _undefined_names(block, path):
    ruff = BIN / "ruff"
    if not ruff.exists():
        return
    result = subprocess.run(
        [
            str(ruff),
            "check",
            "--isolated",
            "--select",
            "F821,F822,F823",
            "--output-format",
            "concise",
            "--stdin-filename",
            path.name,
            "-",
        ],
        input=block.text,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise ExampleFailed(f"undefined names:\n{result.stdout}{result.stderr}")


@kind("file", {"python", "py", "python3"})
def _file(block, run):
    if len(block.args) != 1:
        raise ExampleFailed("'% test: file PATH' needs one PATH")
    path = run.write(block.args[0], block.text)
    compile(block.text, str(path), "exec")
    _undefined_names(block, path)
    _forget_modules(run.dir)  # a module written again is imported again


@kind("pytest", {"python", "py", "python3"})
def _pytest(block, run):
    names = [a for a in block.args if a != "plone"]
    if len(names) != 1:
        raise ExampleFailed("'% test: pytest FILE [plone]' needs one FILE")
    path = run.write(names[0], block.text)
    if block.plone:
        _check_plone(block, run)
        return _tests_in_plone(path, run)
    env = run.env()
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", names[0]],
        cwd=run.dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0 or " passed" not in result.stdout:
        raise ExampleFailed(
            f"pytest {names[0]} exited with {result.returncode}:\n"
            f"{result.stdout[-4000:]}{result.stderr[-2000:]}"
        )


# The fixtures of pytest-plone that in-process tests may ask for.
PLONE_FIXTURES = {
    "portal": "portal",
    "app": "app",
    "http_request": "request",
    "integration": "layer",
}


def _tests_in_plone(path, run):
    """Run the test functions and unittest TestCases of the module at
    ``path`` in the page's Plone layer: one layer setup for the session,
    instead of a pytest process setting up Plone again."""
    import inspect
    import unittest

    module_name = path.relative_to(run.dir).with_suffix("").as_posix().replace("/", ".")
    sys.modules.pop(module_name, None)
    module = importlib.import_module(module_name)
    problems = []
    count = 0
    for name, value in vars(module).items():
        if name.startswith("test") and inspect.isfunction(value):
            count += 1
            arguments = {}
            for parameter in inspect.signature(value).parameters:
                if parameter not in PLONE_FIXTURES:
                    problems.append(
                        f"{name}: in-process, a test may use only the fixtures "
                        f"{', '.join(PLONE_FIXTURES)}, not {parameter!r}"
                    )
                    break
                arguments[parameter] = run.namespace[PLONE_FIXTURES[parameter]]
            else:
                try:
                    value(**arguments)
                except Exception:
                    problems.append(f"{name}:\n{traceback.format_exc()}")
    tests = list(_flatten(unittest.defaultTestLoader.loadTestsFromModule(module)))
    result = unittest.TestResult()
    for test in tests:
        count += 1
        layer = getattr(test, "layer", None)
        if layer is not None and not _layer_within(layer, run.plone):
            problems.append(
                f"{test.id()} uses the layer {layer!r}; in-process the docs run "
                f"only in {run.plone!r} and its bases"
            )
            continue
        test.run(result)
    problems += [f"{test.id()}:\n{text}" for test, text in result.failures]
    problems += [f"{test.id()}:\n{text}" for test, text in result.errors]
    if not count:
        raise ExampleFailed(f"{path.name} has no tests")
    if problems:
        raise ExampleFailed("\n".join(problems))


def _flatten(suite):
    for item in suite:
        if hasattr(item, "__iter__"):
            yield from _flatten(item)
        else:
            yield item


def _layer_within(layer, top):
    if layer is top:
        return True
    return any(_layer_within(layer, base) for base in getattr(top, "__bases__", ()))


@kind("page", {"markdown", "md", "myst"})
def _page(block, run):
    """A page in a page (docs/contributing-docs.md shows the markers): its
    blocks are classified and run as a page of their own."""
    inner = Page(block.page, [], [], [])
    _parse(inner, block.text, block.line)
    for inner_block in inner.blocks:
        problem = classify(inner_block)
        if problem:
            inner_block.invalid = True
            inner.problems.append(problem)
    if inner.problems:
        raise ExampleFailed("\n".join(inner.problems))
    if not inner.blocks:
        raise ExampleFailed("no code block in it")
    failures = PageRun(inner, run.dir / f"page-{block.line}", run.plone).run(
        inner.runnable()
    )
    if failures:
        raise ExampleFailed("\n".join(failures))


@kind("illustration")
def _illustration(block, run):
    pass


# console ------------------------------------------------------------------


@dataclasses.dataclass
class Command:
    line: int
    text: str
    output: str


def commands(block):
    """The ``$`` commands of a console block, with the output shown after
    each; text before the first command is an error."""
    found = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            if line.strip() and not found:
                raise ExampleFailed(
                    f"line {block.line + 1 + index}: text before the first '$ ' "
                    f"command: {line!r}"
                )
            if found:
                found[-1].output += line + "\n"
            index += 1
            continue
        start = index
        text = line[2:]
        while text.endswith("\\") and index + 1 < len(lines):
            index += 1
            text = text[:-1] + " " + lines[index].strip()
        found.append(Command(block.line + 1 + start, text.strip(), ""))
        index += 1
    if not found:
        raise ExampleFailed("a console block without '$ ' commands")
    for command in found:
        command.output = command.output.rstrip("\n")
    return found


def without_comment(command):
    """The command without a trailing ``# comment`` (outside quotes)."""
    for match in re.finditer(r"\s#", command):
        head = command[: match.start()]
        try:
            shlex.split(head)
        except ValueError:
            continue  # inside quotes
        return head.rstrip()
    return command


def _prepare_fixtures(block, run):
    for name in block.args:
        state = "stopped" if name.endswith("-stopped") else "running"
        run.fixture(name.removesuffix("-stopped")).prepare(state)


@kind("console", CONSOLE)
def _console(block, run):
    _prepare_fixtures(block, run)
    for command in commands(block):
        text = run.substitute(command.text)
        result = subprocess.run(
            ["bash", "-c", text],
            cwd=run.dir,
            env=run.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        what = f"line {command.line}: $ {command.text}"
        if command.output:
            run.check_output(command.output, result.stdout, what)
        elif result.returncode != 0:
            raise ExampleFailed(
                f"{what}: exited with {result.returncode} (a command shown without "
                f"output must succeed):\n{result.stdout}"
            )


@kind("serve", CONSOLE, options=("then",))
def _serve(block, run):
    _prepare_fixtures(block, run)
    (command,) = commands(block)
    what = f"line {command.line}: $ {command.text}"
    log_path = run.dir / f"serve-{block.line}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", "exec " + run.substitute(command.text)],
            cwd=run.dir,
            env=run.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def output():
        return log_path.read_text(errors="replace")

    expected = command.output.splitlines()
    try:
        if expected:
            _wait_for_output(run, expected[:1], output, process, what)
            then = block.options.get("then")
            if then:
                import docsetup

                getattr(docsetup, then)(run)
            _wait_for_output(run, expected, output, process, what)
        elif process.poll() is not None:
            raise ExampleFailed(
                f"{what}: exited with {process.returncode}:\n{output()}"
            )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
                raise ExampleFailed(
                    f"{what}: did not stop within 60s of SIGTERM:\n{output()}"
                ) from None
    if process.returncode != 0:
        raise ExampleFailed(
            f"{what}: exited with {process.returncode} after SIGTERM:\n{output()}"
        )


def _wait_for_output(run, expected_lines, output, process, what, seconds=30):
    # What the lines shown may be followed by; <END> marks the end so far.
    want = run.normalize("\n".join(expected_lines) + "\n...<END>\n")
    deadline = time.monotonic() + seconds
    while True:
        got = output()
        have = run.normalize(got + "\n<END>\n")
        if doctest.OutputChecker().check_output(want, have, DOCTEST_FLAGS):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            state = (
                f"exited with {process.returncode}"
                if process.poll() is not None
                else f"after {seconds}s"
            )
            raise ExampleFailed(
                f"{what}: {state}, the output does not match the page's.\n"
                f"--- shown:\n" + "\n".join(expected_lines) + f"\n--- got:\n{got}"
            )
        time.sleep(0.05)  # polling a child's log file


@kind("covered-by", CONSOLE)
def _covered_by(block, run):
    if not block.args:
        raise ExampleFailed("'% test: covered-by PATH...' needs the test files")
    texts = {}
    for name in block.args:
        path = REPO / name
        if not path.is_file():
            raise ExampleFailed(f"{name} does not exist")
        texts[name] = path.read_text()
    for command in commands(block):
        text = without_comment(command.text)
        if not any(text in content for content in texts.values()):
            raise ExampleFailed(
                f"line {command.line}: no file of {', '.join(block.args)} contains "
                f"the command {text!r} verbatim: a test must run what the page shows"
            )


@kind("pip", CONSOLE)
def _pip(block, run):
    import tomllib

    from packaging.requirements import InvalidRequirement, Requirement

    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    extras = set(project.get("optional-dependencies", {}))
    for command in commands(block):
        words = shlex.split(without_comment(command.text))
        if words[:2] != ["pip", "install"] or len(words) < 3:
            raise ExampleFailed(f"line {command.line}: not 'pip install ...'")
        for word in words[2:]:
            if word.startswith("-"):
                continue
            try:
                requirement = Requirement(word)
            except InvalidRequirement as exc:
                raise ExampleFailed(f"line {command.line}: {exc}") from None
            if requirement.name == project["name"]:
                unknown = set(requirement.extras) - extras
                if unknown:
                    raise ExampleFailed(
                        f"line {command.line}: zasync has no extra "
                        f"{', '.join(sorted(unknown))}; its extras are "
                        f"{', '.join(sorted(extras))}"
                    )


# configuration files ------------------------------------------------------------


DOCS_DEPLOYMENT = "/srv/plone"
INSTANCE_DIRECTORIES = ("etc", "log", "var/filestorage", "var/blobstorage")
MINIMAL_ZOPE_CONF = """\
%define INSTANCE {instance}
instancehome $INSTANCE
<zodb_db main>
    <mappingstorage/>
    mount-point /
</zodb_db>
"""


def check_zope_conf(text, run, where="the block"):
    """Parse zope.conf text (or a snippet) with Zope's schema; validate
    <product-config zasync>."""
    from Zope2.Startup.options import ZopeWSGIOptions

    head = MINIMAL_ZOPE_CONF.format(instance=run.dir)
    if re.search(r"^\s*<zodb_db\s+main\s*>", text, re.MULTILINE):
        head = head.split("<zodb_db")[0]
    if re.search(r"^\s*instancehome\s", text, re.MULTILINE):
        head = head.replace("instancehome $INSTANCE\n", "")
    if re.search(r"^\s*%define\s+INSTANCE\s", text, re.MULTILINE):
        head = head.replace("%define INSTANCE", "# %define INSTANCE")
    text = run.substitute(text)
    make_directories_for(head + text, run)
    path = run.dir / "zope-conf-check.conf"
    path.write_text(head + text + "\n")
    try:
        options = ZopeWSGIOptions(configfile=str(path))()
    except (Exception, SystemExit) as exc:
        raise ExampleFailed(
            f"{where}: Zope does not accept it: {type(exc).__name__}: {exc}"
        ) from None
    root = options.configroot
    product = (getattr(root, "product_config", None) or {}).get("zasync")
    if product is not None:
        from zasync.plone import config

        try:
            settings = config.process_config(product)
        except config.ConfigurationError as exc:
            raise ExampleFailed(f"{where}: {exc}") from None
        names = [db.name for db in root.databases or ()]
        snippet_dbs = re.findall(r"<zodb_db\s+(\S+?)\s*>", text)
        if snippet_dbs and "database" in product and settings.database not in names:
            raise ExampleFailed(
                f"{where}: <product-config zasync> database {settings.database} is "
                f"not one of the <zodb_db> sections ({', '.join(names)})"
            )
    return root


def make_directories_for(text, run):
    """Create, in the page's directory, the parent directories of the
    paths a configuration names there (ZConfig wants them to exist), with
    its %define'd names expanded."""
    names = dict(re.findall(r"^\s*%define\s+(\w+)\s+(\S+)", text, re.MULTILINE))
    for name, value in names.items():
        text = text.replace(f"${{{name}}}", value).replace(f"${name}", value)
    for path in re.findall(re.escape(str(run.dir)) + r"[^\s<>\"']*", text):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


@kind("zope-conf", {*ZCONFIG, "text", "none"}, options=("file",))
def _zope_conf(block, run):
    check_zope_conf(block.text, run)
    _write_option(block, run)


def _write_option(block, run):
    if block.options.get("file"):
        run.write(block.options["file"], block.text)


def _load_config(schema, text, run, what):
    import ZConfig

    text = run.substitute(text)
    make_directories_for(text, run)
    try:
        config, _ = ZConfig.loadConfigFile(schema, io.StringIO(text))
    except ZConfig.ConfigurationError as exc:
        raise ExampleFailed(f"not a valid {what}: {exc}") from None
    return config


@kind("zodb-conf", {*ZCONFIG, "text", "none"}, options=("file",))
def _zodb_conf(block, run):
    import ZODB.config

    config = _load_config(
        ZODB.config.getDbSchema(), block.text, run, "ZODB configuration"
    )
    if not config.database:
        raise ExampleFailed(
            "a ZODB configuration file for zasync needs a <zodb> section"
        )
    _write_option(block, run)


def check_zeo_conf(text, run):
    import ZConfig
    import ZEO

    schema = ZConfig.loadSchema(
        os.path.join(os.path.dirname(ZEO.__file__), "schema.xml")
    )
    if not re.search(r"^\s*<zeo>", text, re.MULTILINE):
        text = "<zeo>\n  address 127.0.0.1:8100\n</zeo>\n" + text

    config = _load_config(schema, text, run, "ZEO server configuration")
    if not config.storages:
        raise ExampleFailed("a ZEO server configuration without a storage")
    return config


@kind("zeo-conf", {*ZCONFIG, "text", "none"}, options=("file",))
def _zeo_conf(block, run):
    check_zeo_conf(block.text, run)
    _write_option(block, run)


@kind("zodbpack-conf", {*ZCONFIG, "text", "none"}, options=("file",))
def _zodbpack_conf(block, run):
    import ZConfig
    from relstorage import zodbpack

    schema = ZConfig.loadSchemaFile(io.StringIO(zodbpack.schema_xml))
    config = _load_config(schema, block.text, run, "zodbpack configuration")
    if not config.storages:
        raise ExampleFailed("zodbpack needs a storage section (no <zodb> around it)")
    _write_option(block, run)


ZCML_NAMESPACES = (
    'xmlns="http://namespaces.zope.org/zope" '
    'xmlns:genericsetup="http://namespaces.zope.org/genericsetup" '
    'xmlns:browser="http://namespaces.zope.org/browser"'
)


def check_zcml(text, run, package=None):
    """Parse ZCML with zope.configuration, without executing it."""
    import zope.component
    from zope.configuration import config, xmlconfig

    root = _xml_root(text)
    if root is None:
        try:
            ElementTree.fromstring(text)
        except ElementTree.ParseError as exc:
            raise ExampleFailed(f"not well-formed XML: {exc}") from None
    if root.tag.split("}")[-1] != "configure":
        text = f"<configure {ZCML_NAMESPACES}>\n{text}\n</configure>"
    context = config.ConfigurationMachine()
    xmlconfig.registerCommonDirectives(context)
    xmlconfig.file("meta.zcml", zope.component, context=context, execute=False)
    if package:
        with run.inside():
            try:
                context.package = importlib.import_module(package)
            except ImportError as exc:
                raise ExampleFailed(f"package={package}: {exc}") from None
    with run.inside():
        try:
            xmlconfig.string(text, context=context, execute=False)
        except Exception as exc:
            raise ExampleFailed(f"zope.configuration refuses it: {exc}") from None


@kind("zcml", {"xml"}, options=("package", "file"))
def _zcml(block, run):
    check_zcml(block.text, run, block.options.get("package"))
    _write_option(block, run)


@kind("gs-metadata", {"xml"})
def _gs_metadata(block, run):
    root = _xml_root(block.text)
    if root is None:
        raise ExampleFailed("not well-formed XML")
    profiles = [e.text.strip() for e in root.iter("dependency")]
    if not profiles:
        raise ExampleFailed("no <dependency> in it")
    for profile in profiles:
        match = re.fullmatch(r"profile-([\w.]+):(\w+)", profile)
        if not match:
            raise ExampleFailed(f"{profile!r} is not profile-PACKAGE:NAME")
        package, name = match.groups()
        if not _registers_profile(package, name):
            raise ExampleFailed(f"{package}'s ZCML registers no profile {name!r}")


def _registers_profile(package, name):
    module = importlib.import_module(package)
    directory = Path(module.__file__).parent
    for zcml in directory.glob("*.zcml"):
        for element in ElementTree.parse(zcml).iter():
            if element.tag.endswith("registerProfile") and element.get("name") == name:
                return True
    return False


def _ini(text):
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ExampleFailed(f"not valid ini: {exc}") from None
    return parser


@kind("ini", {"ini", "cfg", "toml"})
def _ini_kind(block, run):
    _ini(block.text)


def check_zasync_argv(argv, what):
    """``argv`` (the words after the zasync program) must be accepted by
    zasync's argument parser."""
    from zasync import cli

    parser = cli.build_parser()
    error = io.StringIO()
    with contextlib.redirect_stderr(error), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parser.parse_args(argv)
        except SystemExit:
            raise ExampleFailed(
                f"{what}: zasync refuses {shlex.join(argv)!r}: {error.getvalue()}"
            ) from None


@kind("systemd-unit", {"ini"})
def _systemd_unit(block, run):
    unit = _ini(block.text)
    for section in ("Unit", "Service"):
        if section not in unit:
            raise ExampleFailed(f"a systemd unit without [{section}]")
    exec_start = unit["Service"].get("ExecStart")
    if not exec_start:
        raise ExampleFailed("[Service] has no ExecStart")
    argv = shlex.split(exec_start.replace("%i", "1"))
    if Path(argv[0]).name == "zasync":
        args = check_zasync_argv(argv[1:], "ExecStart")
        grace = getattr(args, "grace", None)
        stop = unit["Service"].get("TimeoutStopSec")
        if grace is not None and stop is not None and float(stop) <= grace:
            raise ExampleFailed(
                f"TimeoutStopSec={stop} must be above the worker's --grace ({grace:g})"
            )


@kind("crontab", {"text", "crontab", "none", ""})
def _crontab(block, run):
    lines = [
        line
        for line in block.text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ExampleFailed("no crontab line")
    for line in lines:
        fields = line.split(None, 5)
        if len(fields) < 6:
            raise ExampleFailed(f"{line!r}: five time fields and a command needed")
        for part in re.split(r"&&|\|\||;", fields[5]):
            argv = shlex.split(part)
            if not argv:
                continue
            program = Path(argv[0]).name
            if not (BIN / program).exists() and not shutil.which(program):
                raise ExampleFailed(f"{line!r}: no program {program!r}")
            if program == "zasync":
                check_zasync_argv(argv[1:], repr(line))


# What buildout itself defines in [buildout].
BUILDOUT_BUILTINS = {
    "directory": DOCS_DEPLOYMENT,
    "bin-directory": f"{DOCS_DEPLOYMENT}/bin",
    "parts-directory": f"{DOCS_DEPLOYMENT}/parts",
    "eggs-directory": f"{DOCS_DEPLOYMENT}/eggs",
    "develop-eggs-directory": f"{DOCS_DEPLOYMENT}/develop-eggs",
}
BUILDOUT_REFERENCE = re.compile(r"\$\{([^:}]*):([^}]+)\}")


@kind("buildout", {"ini", "cfg"})
def _buildout(block, run):
    config = _ini(block.text)
    merged = run.buildout
    if not merged:
        merged["buildout"] = dict(BUILDOUT_BUILTINS)
    for section in config.sections():
        merged.setdefault(section, {}).update(config[section])

    def resolve(section, option, seen=()):
        if (section, option) in seen:
            raise ExampleFailed(f"${{{section}:{option}}} refers to itself")
        options = merged.get(section)
        if options is None:
            raise ExampleFailed(f"${{{section}:{option}}}: no section [{section}]")
        if option not in options:
            base = options.get("<")
            if base:
                return resolve(base.strip(), option, (*seen, (section, option)))
            raise ExampleFailed(f"${{{section}:{option}}}: [{section}] has no {option}")
        return expand(options[option], (*seen, (section, option)))

    def expand(value, seen=()):
        return BUILDOUT_REFERENCE.sub(lambda m: resolve(m[1], m[2], seen), value)

    for section in config.sections():
        options = merged[section]
        base = options.get("<")
        if base and base.strip() not in merged:
            raise ExampleFailed(f"[{section}] <= {base.strip()}: no such section")
        for option, value in config[section].items():
            value = expand(value)
            if option == "zcml-additional":
                check_zcml(value, run)
            elif option == "zope-conf-additional":
                check_zope_conf(value, run, f"[{section}] zope-conf-additional")
            elif option == "zeo-conf-additional":
                check_zeo_conf(value, run)


def _product_configs(data):
    if isinstance(data, dict):
        for key, value in data.items():
            if (
                key == "product_config"
                and isinstance(value, dict)
                and "zasync" in value
            ):
                yield value["zasync"]
            else:
                yield from _product_configs(value)
    elif isinstance(data, list):
        for item in data:
            yield from _product_configs(item)


@kind("yaml", {"yaml", "yml"})
def _yaml(block, run):
    import yaml

    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError as exc:
        raise ExampleFailed(f"not valid YAML: {exc}") from None
    from zasync.plone import config

    for section in _product_configs(data):
        try:
            config.process_config({k: str(v) for k, v in section.items()})
        except config.ConfigurationError as exc:
            raise ExampleFailed(str(exc)) from None


# -- what the tests call ----------------------------------------------------------


def load(path, text=None):
    """The page at ``path`` (or ``text`` as if it were there), its blocks
    classified; problems collected."""
    page = parse_page(Path(path), text)
    for block in page.blocks:
        problem = classify(block)
        if problem:
            block.invalid = True
            page.problems.append(problem)
    for line, target in page.includes:
        base = DOCS if target.startswith("/") else page.path.parent
        if not (base / target.lstrip("/")).exists():
            page.problems.append(
                f"{relative(page.path)}:{line}: the included file {target} does not exist"
            )
    return page


@contextlib.contextmanager
def plone_test(layer):
    """One test of the Plone layer: yields the names 'plone' blocks see."""
    import transaction
    from plone.app.testing import (
        SITE_OWNER_NAME,
        TEST_USER_ID,
        TEST_USER_NAME,
        login,
        setRoles,
    )

    layer.testSetUp()
    try:
        portal = layer["portal"]
        login(layer["app"], SITE_OWNER_NAME)
        portal.invokeFactory("Folder", "a-folder", title="A folder")
        folder = portal["a-folder"]
        folder.manage_setLocalRoles(TEST_USER_ID, ["Owner"])
        folder.reindexObjectSecurity()
        login(portal, TEST_USER_NAME)
        setRoles(portal, TEST_USER_ID, ["Member"])
        transaction.commit()
        yield {
            "app": layer["app"],
            "portal": portal,
            "request": layer["request"],
            "layer": layer,
            "context": folder,
            "folder": folder,
        }
    finally:
        transaction.abort()
        layer.testTearDown()


def needs_plone(page):
    return any(block.plone for block in page.blocks)


def run_page(page, directory, plone=None):
    """Run a loaded page's blocks; returns the failures (texts)."""
    return PageRun(page, directory, plone).run(page.blocks)


def check(text, name="docs/new-page.md"):
    """Test the page ``text`` as if it were the file ``name``; returns what
    the tests would say about it ("ok" if nothing). For
    docs/contributing-docs.md."""
    import tempfile

    page = load(REPO / name, text)
    with tempfile.TemporaryDirectory() as directory:
        failures = PageRun(page, directory).run(page.runnable())
    return "\n".join(page.problems + failures) or "ok"


def summary(failures):
    return "\n\n".join(textwrap.indent(f, "  ").lstrip() for f in failures)
