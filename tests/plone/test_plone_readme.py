"""plone.app.async's README doctest (tests/plone/plone_app_async_readme.txt)
runs against zasync.plone: the user-facing contract."""

import doctest
import pathlib
import types

HERE = pathlib.Path(__file__).parent


def test_plone_app_async_readme(portal, folder, capsys):
    globs = {"self": types.SimpleNamespace(portal=portal, folder=folder)}
    result = doctest.testfile(
        str(HERE / "plone_app_async_readme.txt"),
        module_relative=False,
        globs=globs,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    report = capsys.readouterr().out
    assert result.attempted > 40
    assert result.failed == 0, report
