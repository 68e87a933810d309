"""``zasync serve``: a Plone site with zasync, in one process.

The first run makes an instance home (an embedded one unless it exists:
FileStorage in var/, the dispatcher runs in this process), a Zope admin
user and a Plone site with zasync and its browser demo installed; every
run then serves it with waitress. A second run reuses all of it. Ctrl-C
(or SIGTERM) stops serving, lets running jobs finish for a few seconds,
puts the others back in the queue and closes the database.

``zasync cluster`` runs the same command on the web instance home it
writes (a ZEO or RelStorage client that only queues).
"""

import errno
import logging
import os
import signal
import socket
import sys

from zasync.deploy.instance import InstanceHome
from zasync.exceptions import CommandError

log = logging.getLogger("zasync.plone")

#: Printed when the site is served; the cluster command waits for it.
READY = "zasync serve: ready at"


def add_arguments(parser):
    parser.add_argument(
        "--instance",
        default="instance",
        metavar="DIR",
        help="the Zope instance home, made if missing (default: ./instance)",
    )
    parser.add_argument(
        "--host",
        metavar="ADDRESS",
        help="address to listen on (default: the instance's etc/zope.ini, "
        "127.0.0.1 for a new one)",
    )
    parser.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help="port to listen on (default: the instance's etc/zope.ini, "
        "8080 for a new one)",
    )
    parser.add_argument(
        "--site",
        default="Plone",
        metavar="ID",
        help="id of the Plone site, made if missing (default: Plone)",
    )
    parser.add_argument(
        "--no-site",
        action="store_true",
        help="make no Plone site (and no admin user): serve the instance as it is",
    )
    parser.set_defaults(run=run)


def _check_port_free(host, port):
    """Fail now, not after a minute of booting, if the port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"{host}:{port} is in use (another Zope, or a second "
                    f"`zasync serve`?); stop it or choose another --port"
                ) from None
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None


def _load_app(home):
    """Configure logging from etc/zope.ini and boot Zope; the WSGI app."""
    try:
        from paste.deploy import loadapp
        from Zope2.Startup.serve import setup_logging
    except ImportError:
        raise CommandError(
            "zasync serve needs Zope and Plone: pip install 'zasync[plone]'"
        ) from None
    from zasync.plone.config import ConfigurationError

    setup_logging(home.zope_ini)
    try:
        return loadapp(f"config:{os.path.abspath(home.zope_ini)}", name="main")
    except ConfigurationError as exc:
        raise CommandError(f"{home.zope_conf}: {exc}") from None
    except Exception as exc:
        raise CommandError(
            f"cannot start the Zope instance in {home.path}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _close_databases():
    import Zope2

    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, _interrupted_while_stopping)
    # Closing stops the dispatcher first (zasync.plone.startup), while its
    # jobs can still be put back in the queue.
    for db in list(getattr(Zope2, "opened", ())):
        db.close()


def _interrupted(signum, frame):
    signal.signal(signal.SIGINT, _interrupted_while_stopping)
    raise KeyboardInterrupt


def _interrupted_while_stopping(signum, frame):
    # Ctrl-C pressed again while running jobs finish: say why it waits,
    # then quit at once on the next one (FileStorage survives that).
    signal.signal(signal.SIGINT, lambda *a: os._exit(128 + signal.SIGINT))
    print(
        "zasync serve: stopping: running jobs get a few seconds to finish; "
        "Ctrl-C again quits at once",
        flush=True,
    )


def run(args):
    home = InstanceHome(args.instance)
    if not home.exists():
        written = home.write_embedded(args.host or "127.0.0.1", args.port or 8080)
        print(f"zasync serve: made the instance home {home.path}")
        for path in written:
            print(f"  {path}")
    host, port = home.listen_address()
    host, port = args.host or host, args.port or port
    _check_port_free(host, port)

    print(f"zasync serve: starting Zope from {home.zope_conf}", flush=True)
    app = _load_app(home)
    try:
        url = f"http://{host}:{port}"
        if not args.no_site:
            _prepare_site(home, args.site, url)
        import waitress

        # Listening before saying so: whoever waits for READY may connect.
        server = waitress.create_server(app, listen=f"{host}:{port}", threads=4)
        print(f"{READY} {url}/ (Ctrl-C stops)", flush=True)
        # run() returns on Ctrl-C, and on SIGTERM through zasync.plone's
        # handler; the databases are closed below either way.
        signal.signal(signal.SIGINT, _interrupted)
        server.run()
    finally:
        _close_databases()
    print("zasync serve: stopped", flush=True)
    return 0


def _prepare_site(home, site_id, url):
    from zasync.deploy import site

    password_file = os.path.join(home.var, "admin-password.txt")
    password, created = site.ensure_admin(password_file)
    if site.ensure_site(site_id):
        print(f"zasync serve: made the Plone site /{site_id}")
    if os.environ.get(site.PASSWORD_ENVIRONMENT):
        shown = f"from ${site.PASSWORD_ENVIRONMENT}"
    else:
        shown = (
            f"{password} (kept in {password_file}; "
            f"${site.PASSWORD_ENVIRONMENT} sets another)"
        )
    new = " (new)" if created else ""
    print(f"zasync serve: Zope user {site.ADMIN}{new}, password {shown}")
    print(f"zasync serve: the site is {url}/{site_id}")
    print(f"zasync serve: the demo is {url}/{site_id}/@@zasync-demo")
    sys.stdout.flush()
