"""zasync.config: one table of dispatcher options and defaults, one check,
used by zasync.start, the worker command and the Plone product-config."""

import dataclasses
import pathlib
import uuid

import pytest
import transaction

import zasync
from zasync import cli, config, worker
from zasync.config import COMMAND_LINE, ConfigurationError, DispatcherConfig
from zasync.connect import CommandError
from zasync.dispatcher import Dispatcher


def test_defaults_are_the_documented_ones():
    defaults = DispatcherConfig()
    assert defaults == config.DEFAULTS
    assert defaults.queues == ("",)
    assert (defaults.poll_interval, defaults.ping_interval) == (1.0, 30)
    # Whole numbers, as stored in dispatcher records (and shown by commands).
    assert repr(defaults.death_interval) == "300"
    assert (defaults.agent_size, defaults.agent_size_source) == (None, None)
    assert defaults.uuid is None and defaults.database is None


def test_every_option_is_documented_in_the_class():
    """Each field has a #: comment just above it in config.py (what Sphinx
    shows); a field added without one fails here."""
    source = pathlib.Path(config.__file__).read_text().splitlines()
    for field in dataclasses.fields(DispatcherConfig):
        (line,) = [
            i for i, text in enumerate(source) if text.startswith(f"    {field.name}:")
        ]
        assert source[line - 1].strip().startswith("#:"), field.name


def test_frozen_and_normalised():
    made = DispatcherConfig(queues="reports", agent_size=2)
    assert made.queues == ("reports",)
    assert made.agent_size_source == "agent_size argument"
    assert DispatcherConfig(agent_size_source="zope.conf").agent_size_source is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.poll_interval = 3
    assert made.replace(poll_interval=3).poll_interval == 3


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"ping_interval": 30, "death_interval": 30},
            "death_interval (30) must be longer than ping_interval (30)",
        ),
        ({"poll_interval": 0}, "poll_interval must be a number of seconds > 0"),
        ({"ping_interval": "30"}, "ping_interval must be a number of seconds > 0"),
        ({"agent_size": -1}, "agent_size must be a whole number >= 0, not -1"),
        ({"agent_size": True}, "agent_size must be a whole number >= 0"),
        ({"queues": ()}, "queues must name at least one queue"),
        ({"queues": ("", 3)}, "queues must be queue names (str), not 3"),
        ({"prefetch": -1}, "prefetch must be a whole number >= 0"),
        ({"batch_window": -0.1}, "batch_window must be a number of seconds >= 0"),
        ({"uuid": "not-a-uuid"}, "uuid must be a UUID, not 'not-a-uuid'"),
        ({"clock": "now"}, "clock must be callable"),
        ({"agent_filter": 3}, "agent_filter must be callable"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigurationError) as raised:
        DispatcherConfig(**options)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)  # what it was before


def test_errors_name_the_options_as_the_front_end_spells_them():
    with pytest.raises(ConfigurationError) as raised:
        DispatcherConfig(ping_interval=30, death_interval=20, names=COMMAND_LINE)
    assert str(raised.value).startswith(
        "--death-interval (20) must be longer than --ping-interval (30)"
    )
    with pytest.raises(ConfigurationError) as raised:
        DispatcherConfig(poll_interval=-1, names={"poll_interval": "poll"}, where="[x]")
    assert str(raised.value).startswith("[x] poll must be")


def test_uuid_is_normalised():
    value = uuid.uuid4()
    assert DispatcherConfig(uuid=value.hex).uuid == str(value)


def test_dispatcher_takes_a_config_or_its_fields(db):
    me = str(uuid.uuid4())
    made = DispatcherConfig(uuid=me, queues=("", "reports"), poll_interval=0.5)
    dispatcher = Dispatcher(db, config=made, poll_interval=0.25)
    assert dispatcher.config.poll_interval == dispatcher.poll_interval == 0.25
    assert dispatcher.queue_names == ("", "reports") and dispatcher.uuid == me
    assert Dispatcher(db, uuid=me, prefetch=4).config.prefetch == 4


def test_dispatcher_refuses_bad_options_before_starting(db):
    with pytest.raises(ConfigurationError, match="must be longer than"):
        zasync.start(db, ping_interval=10, death_interval=5)
    with pytest.raises(TypeError, match="must be a zasync.config.DispatcherConfig"):
        Dispatcher(db, config={"poll_interval": 1})
    with pytest.raises(TypeError):
        zasync.start(db, 0.5)  # options are keyword arguments
    with pytest.raises(TypeError):
        Dispatcher(db, poll_intervals=1)  # misspelt


def test_a_dispatcher_without_a_uuid_gets_one(db, monkeypatch):
    monkeypatch.delenv("ZASYNC_UUID", raising=False)
    monkeypatch.delenv("ZC_ASYNC_UUID", raising=False)
    dispatcher = Dispatcher(db)
    assert str(uuid.UUID(dispatcher.uuid)) == dispatcher.uuid == dispatcher.config.uuid


def worker_args(*argv):
    return cli.build_parser().parse_args(["worker", "--zodb-conf", "x.conf", *argv])


def test_worker_checks_its_options_with_dispatcher_config():
    args = worker_args("--ping-interval", "30", "--death-interval", "20")
    with pytest.raises(CommandError) as raised:
        worker._dispatcher_options(args)
    assert "--death-interval (20.0) must be longer than --ping-interval (30.0)" in str(
        raised.value
    )
    options = worker._dispatcher_options(
        worker_args("--queue", "default", "--queue", "x", "--group-commit", "1")
    )
    assert options == {"queues": ("", "x"), "group_commit": 1}


def test_worker_refuses_bad_options_before_opening_the_database(tmp_path, capsys):
    """The database named does not exist: the options are refused first."""
    code = cli.main(
        [
            "worker",
            "--zodb-conf",
            str(tmp_path / "missing.conf"),
            "--ping-interval",
            "5",
            "--death-interval",
            "5",
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "--death-interval (5.0) must be longer than --ping-interval (5.0)" in error
    assert "missing.conf" not in error


def test_worker_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["worker", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {config.DEFAULTS.ping_interval:g})" in text
    assert f"(default: {config.DEFAULTS.death_interval:g})" in text
    assert f"else {config.DEFAULT_AGENT_SIZE};" in text
    assert f"alone (default: {config.DEFAULTS.group_commit})" in text


def test_queue_label_and_name():
    assert config.queue_label("") == "default" == config.DEFAULT_QUEUE_LABEL
    assert config.queue_label("reports") == "reports"
    assert config.queue_name("default") == config.queue_name("") == ""
    assert config.queue_name("reports") == "reports"


def test_one_spelling_of_the_shared_names():
    """The old homes of these names hold the same values."""
    from zasync import admin, processes, queue, registry

    assert queue.DEFAULT_QUEUE is config.DEFAULT_QUEUE
    assert admin.queue_label is config.queue_label
    assert admin.queue_name is config.queue_name
    assert registry.Agent().name == config.MAIN_AGENT
    assert registry.check_agent_size is config.check_agent_size
    assert registry.DEFAULT_AGENT_SIZE == config.DEFAULT_AGENT_SIZE
    assert worker.READY == processes.READY == config.WORKER_READY


def test_the_agent_is_named_main(queue, dispatcher):
    transaction.abort()  # see the dispatcher's registration
    record = queue.dispatchers[dispatcher.uuid]
    assert list(record.agents) == [config.MAIN_AGENT] == ["main"]
