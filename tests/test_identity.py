"""zasync.identity: the process's dispatcher UUID and the file keeping it."""

import logging
import os
import pathlib
import uuid

import pytest

from zasync import dispatcher, identity


@pytest.fixture(autouse=True)
def no_uuid_environment(monkeypatch):
    for name in identity.UUID_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def test_the_file_is_created_once_and_read_back(tmp_path):
    path = str(tmp_path / "var" / "uuid.txt")
    first = identity.read_uuid_file(path)
    assert str(uuid.UUID(first)) == first
    assert identity.read_uuid_file(path) == first
    assert pathlib.Path(path).read_text().startswith("# The zasync dispatcher UUID")


def test_a_zc_async_file_is_read(tmp_path):
    value = uuid.uuid4()
    path = tmp_path / "uuid.txt"
    path.write_text(f"# from zc.async\n\n{value.hex}\n")
    assert identity.read_uuid_file(str(path)) == str(value)


def test_a_file_with_something_else_says_what_to_do(tmp_path):
    path = tmp_path / "uuid.txt"
    path.write_text("not a uuid\n")
    with pytest.raises(ValueError, match="delete the file to get a new one"):
        identity.read_uuid_file(str(path))


@pytest.mark.parametrize("variable", identity.UUID_ENVIRONMENT)
def test_the_environment_names_the_file(tmp_path, monkeypatch, variable):
    path = str(tmp_path / "env.txt")
    monkeypatch.setenv(variable, path)
    assert identity.environment_uuid_file() == path
    found, where = identity.uuid_and_file(default=str(tmp_path / "default.txt"))
    assert where == path and found == identity.read_uuid_file(path)
    assert identity.dispatcher_uuid() == found


def test_an_explicit_file_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ZASYNC_UUID", str(tmp_path / "env.txt"))
    path = str(tmp_path / "asked.txt")
    assert identity.uuid_and_file(path) == (identity.read_uuid_file(path), path)
    assert not (tmp_path / "env.txt").exists()


def test_the_default_file_is_the_last_choice(tmp_path):
    assert identity.uuid_and_file() == (None, None)
    path = str(tmp_path / identity.UUID_FILENAME)
    assert identity.uuid_and_file(default=path) == (identity.read_uuid_file(path), path)


def test_a_default_file_that_cannot_be_written_is_logged(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = str(blocker / "uuid.txt")  # a directory that is a file
    with caplog.at_level(logging.WARNING, "zasync.dispatcher"):
        assert identity.uuid_and_file(default=unwritable) == (None, None)
    assert "set ZASYNC_UUID to a writable file" in caplog.text


def test_a_file_asked_for_that_cannot_be_written_is_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ZASYNC_UUID", str(blocker / "uuid.txt"))
    with pytest.raises(OSError):
        identity.uuid_and_file(default=str(tmp_path / "default.txt"))


def test_dispatcher_uuid_without_a_file_is_new_each_time():
    first, second = identity.dispatcher_uuid(), identity.dispatcher_uuid()
    assert first != second
    value = uuid.uuid4()
    assert identity.dispatcher_uuid(value.hex) == str(value)


def test_the_old_names_are_importable_from_the_dispatcher_module():
    assert dispatcher.read_uuid_file is identity.read_uuid_file
    assert dispatcher.dispatcher_uuid is identity.dispatcher_uuid
    assert dispatcher.UUID_ENVIRONMENT is identity.UUID_ENVIRONMENT


def test_plone_instances_keep_the_file_under_its_name(tmp_path):
    instance = pytest.importorskip("zasync.plone.instance")
    home = instance.InstanceHome(str(tmp_path))
    assert os.path.basename(home.uuid_file) == identity.UUID_FILENAME
