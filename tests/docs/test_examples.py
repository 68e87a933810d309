"""Every code block of every page of docs/ runs as a test (see
docexamples.py for the markers that say how)."""

import contextlib
import warnings

import docexamples
import pytest

PAGES = docexamples.pages()


def page_id(path):
    return docexamples.relative(path).removeprefix("docs/")


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_every_block_can_be_tested(path):
    page = docexamples.load(path)
    if page.problems:
        pytest.fail("\n".join(page.problems), pytrace=False)


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_examples(path, tmp_path, request):
    page = docexamples.load(path)
    layer = None
    context = contextlib.nullcontext()
    if docexamples.needs_plone(page):
        layer = request.getfixturevalue("plone_layer")
        context = docexamples.plone_test(layer)
    with context as namespace:
        run = docexamples.PageRun(page, tmp_path / "page", layer)
        run.namespace.update(namespace or {})
        failures = page.problems + run.run(page.runnable())
    slow = sorted(run.times, key=lambda t: -t[0])[:3]
    print("slowest blocks:", ", ".join(f"{b.where} {t:.1f}s" for t, b in slow))
    for skipped in run.skipped:
        warnings.warn(skipped, stacklevel=1)
    if failures:
        pytest.fail(docexamples.summary(failures), pytrace=False)
