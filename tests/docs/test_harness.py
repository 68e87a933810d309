"""The docs harness fails when it should: each way a page can be wrong,
given as text to docexamples.check()."""

import textwrap

import pytest
from docexamples import check

FENCE = "```"


def page(text):
    return textwrap.dedent(text).replace("'''", FENCE)


def test_a_right_page_passes():
    assert (
        check(
            page(
                """\
                % test: file myapp/jobs.py
                '''python
                def add(a, b):
                    return a + b
                '''

                '''pycon
                >>> from myapp.jobs import add
                >>> add(1, 2)
                3
                '''

                '''python
                print(add(2, 2))
                '''

                % test: output
                '''text
                4
                '''

                '''console
                $ echo hello
                hello
                $ true
                '''
                """
            )
        )
        == "ok"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "'''pycon\n>>> 1 + 1\n3\n'''\n",
            ["docs/new-page.md:1 (doctest)", "Expected:\n    3\nGot:\n    2"],
        ),
        (
            "Text.\n\n'''text\nhello\n'''\n",
            [
                "docs/new-page.md:3: no test for a '''text block: put a marker on "
                "the line directly before the fence"
            ],
        ),
        (
            "Text.\n\n    indented = True\n",
            ["docs/new-page.md:3: an indented code block"],
        ),
        (
            "% test: run\n\nText.\n",
            ["docs/new-page.md:1: a '% test:' marker that is not directly before"],
        ),
        (
            "% test: frobnicate\n'''python\npass\n'''\n",
            ["docs/new-page.md:2: unknown kind 'frobnicate'", "the kinds are "],
        ),
        (
            "% test: file x.py\n'''console\n$ true\n'''\n",
            ["'% test: file' is for py, python, python3 blocks, not '''console"],
        ),
        (
            "% test: illustration\n'''text\nx\n'''\n",
            ["'% test: illustration' needs a reason"],
        ),
        (
            "'''python\nx = 1\nraise ValueError('no')\n'''\n",
            ["docs/new-page.md:1 (run)", "line 3", "ValueError: no"],
        ),
        (
            "% test: file m.py\n'''python\ndef f():\n    return undefined_name\n'''\n",
            ["undefined names", "undefined_name"],
        ),
        (
            "'''python\nprint(1)\n'''\n\n% test: output\n'''text\n2\n'''\n",
            ["(output): the run block before: the output differs"],
        ),
        (
            "'''console\n$ echo hello\ngoodbye\n'''\n",
            ["line 2: $ echo hello: the output differs", "goodbye", "hello"],
        ),
        ("'''console\n$ false\n'''\n", ["line 2: $ false: exited with 1"]),
        (
            "% test: covered-by Makefile\n'''console\n$ make frobnicate\n'''\n",
            ["no file of Makefile contains the command 'make frobnicate'"],
        ),
        (
            "% test: pip\n'''console\n$ pip install 'zasync[nosuchextra]'\n'''\n",
            ["zasync has no extra nosuchextra"],
        ),
        (
            "'''apacheconf\n<product-config zasync>\n  threads 3\n  colour blue\n"
            "</product-config>\n'''\n",
            ["<product-config zasync> has unknown keys colour"],
        ),
        (
            "'''apacheconf\n<zodb_db main>\n  <nosuchstorage/>\n</zodb_db>\n'''\n",
            ["Zope does not accept it"],
        ),
        (
            "% test: zodb-conf\n'''apacheconf\n<zodb>\n  <zeoclient>\n"
            "    no-such-key 1\n  </zeoclient>\n</zodb>\n'''\n",
            ["not a valid ZODB configuration"],
        ),
        (
            "'''xml\n<include package=\"zasync.nosuchpackage\" />\n'''\n",
            ["zope.configuration refuses it"],
        ),
        (
            "% test: gs-metadata\n'''xml\n<metadata><dependencies><dependency>"
            "profile-zasync.plone:nosuchprofile</dependency></dependencies>"
            "</metadata>\n'''\n",
            ["registers no profile 'nosuchprofile'"],
        ),
        (
            "% test: systemd-unit\n'''ini\n[Unit]\nDescription=x\n[Service]\n"
            "ExecStart=/srv/plone/.venv/bin/zasync worker --zodb-conf z.conf "
            "--no-such-option\n'''\n",
            ["zasync refuses", "--no-such-option"],
        ),
        (
            "% test: systemd-unit\n'''ini\n[Unit]\nDescription=x\n[Service]\n"
            "ExecStart=/srv/plone/.venv/bin/zasync worker --zodb-conf z.conf "
            "--grace 90\nTimeoutStopSec=60\n'''\n",
            ["TimeoutStopSec=60 must be above the worker's --grace (90)"],
        ),
        (
            "% test: crontab\n'''text\n0 3 * * * zasync prune --zodb-conf z.conf\n'''\n",
            ["zasync refuses", "--older-than"],
        ),
        (
            "% test: buildout\n'''ini\n[instance]\nhttp-address = ${zeo:port}\n'''\n",
            ["${zeo:port}: no section [zeo]"],
        ),
        (
            "'''yaml\nproduct_config:\n  zasync:\n    threads: none\n'''\n",
            ["threads must be a number, not 'none'"],
        ),
        (
            "% test: console nosuchfixture\n'''console\n$ true\n'''\n",
            ["unknown fixture 'nosuchfixture'"],
        ),
        (
            "````{note}\nA note.\n\n'''text\nx\n'''\n````\n",
            ["docs/new-page.md:4: no test for a '''text block"],
        ),
        (
            ":::{warning}\n'''text\nx\n'''\n:::\n",
            ["docs/new-page.md:2: no test for a '''text block"],
        ),
        (
            "'''{eval-rst}\n.. code-block:: python\n\n   x = 1\n'''\n",
            ["docs/new-page.md:1: code inside {eval-rst} is not tested"],
        ),
        (
            "'''{literalinclude} nosuchfile.py\n'''\n",
            ["the included file nosuchfile.py does not exist"],
        ),
        (
            "% test: page\n````markdown\n'''text\nuntested\n'''\n````\n",
            ["docs/new-page.md:3: no test for a '''text block"],
        ),
    ],
)
def test_a_wrong_page_fails_saying_where_and_why(text, expected):
    said = check(text.replace("'''", FENCE))
    assert said != "ok"
    for part in expected:
        assert part.replace("'''", FENCE) in said, said
