"""The one way from the ``zasync`` command into Zope: ``--zope-conf``.

Everything else in zasync.cli works without Zope. This module imports
Zope and zasync.plone only inside its functions, when a command was given
``--zope-conf``, so that ``zasync --zodb-conf`` and the engine never load
them.
"""

import os

from zasync.exceptions import CommandError


def boot(zope_conf, dispatcher, overrides=None):
    """Boot the Zope instance of ``zope_conf`` without serving HTTP; return
    (the main database, the name of the queues' database or None).

    ``dispatcher`` forces this process's dispatcher on or off whatever its
    ZCML role says; ``overrides`` replace product-config values (threads,
    poll_interval, queues, ...) for this process.
    """
    if not os.path.exists(zope_conf):
        raise CommandError(f"--zope-conf {zope_conf}: no such file")
    try:
        import Zope2
        from Zope2.Startup.run import make_wsgi_app

        from zasync.plone import config as plone_config
        from zasync.plone import roles
    except ImportError:
        raise CommandError(
            "--zope-conf needs Zope and zasync's Plone integration: "
            "pip install 'zasync[plone]'"
        ) from None
    plone_config.set_overrides(dispatcher=dispatcher, **(overrides or {}))
    try:
        make_wsgi_app({}, zope_conf)
    except plone_config.ConfigurationError as exc:
        raise CommandError(f"{zope_conf}: {exc}") from None
    except Exception as exc:
        raise CommandError(
            f"cannot start the Zope instance of {zope_conf}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return Zope2.DB, roles.queues_database()


def started_dispatcher(zope_conf):
    """The dispatcher the Plone integration started in the booted Zope, and
    the UUID file it uses; CommandError if it did not start one."""
    from zasync.plone import startup

    dispatcher = startup.get_dispatcher()
    if dispatcher is None:
        raise CommandError(
            f"{zope_conf}: Zope started but zasync's dispatcher did not; is "
            f"zasync.plone loaded (plone.autoinclude, or <include "
            f'package="zasync.plone" />)?'
        )
    # Without --uuid-file, the Plone integration chose the file (ZASYNC_UUID,
    # or var/zasync-uuid.txt of the instance).
    return dispatcher, startup.process_uuid()[1]


def stop_dispatcher(grace):
    """Stop the dispatcher of the booted Zope as the Plone integration does
    at shutdown; True if its running jobs finished within ``grace``."""
    from zasync.plone import startup

    return startup.stop_dispatcher(grace)
