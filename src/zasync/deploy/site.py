"""The Zope admin user and a Plone site with zasync, made once and reused.

Used by ``zasync serve`` and ``zasync cluster`` on a Zope that has booted
(its database is open); each function commits its own transaction and
does nothing when what it makes exists already.
"""

import contextlib
import html
import logging
import os
import secrets

import transaction

log = logging.getLogger("zasync.plone")

#: Environment variable with the admin password (else one is generated).
PASSWORD_ENVIRONMENT = "ZASYNC_ADMIN_PASSWORD"
ADMIN = "admin"

#: The title of the site ``zasync serve`` makes.
SITE_TITLE = "zasync demo"
#: The description its front page gets.
FRONT_PAGE_DESCRIPTION = (
    "A Plone site with zasync: durable background jobs that run as the "
    "user who queued them."
)

#: The profiles of a Classic UI site, as Plone's "Create a Plone site" form
#: installs them, then zasync and its browser demo.
PROFILES = (
    "plone.app.contenttypes:default",
    "plonetheme.barceloneta:default",
    "zasync.plone:default",
    "zasync.plone:demo",
)


def _app():
    import Zope2
    from Testing.makerequest import makerequest

    return makerequest(Zope2.app())


def _close(app):
    transaction.abort()
    app._p_jar.close()


def ensure_admin(password_file, user=ADMIN):
    """Make sure the Zope root has a Manager called ``user``.

    The password is $ZASYNC_ADMIN_PASSWORD if set (an existing user gets
    it too, and ``password_file`` is removed), else the one kept in
    ``password_file``, else a new random one kept there (readable by the
    owner only). Returns (password, created).
    """
    password = os.environ.get(PASSWORD_ENVIRONMENT)
    if not password and os.path.exists(password_file):
        with open(password_file) as f:
            password = f.read().strip() or None
    generated = not password
    if generated:
        password = secrets.token_urlsafe(12)
    app = _app()
    try:
        users = app.acl_users
        created = users.getUserById(user) is None
        if created:
            users._doAddUser(user, password, ["Manager"], [])
        elif os.environ.get(PASSWORD_ENVIRONMENT) or generated:
            # A new password for a user whose old one was not kept (or that
            # the environment now sets): the password shown must work.
            _set_password(users, user, password)
        transaction.get().note(f"zasync: Zope user {user}")
        transaction.commit()
    finally:
        _close(app)
    if os.environ.get(PASSWORD_ENVIRONMENT):
        # The kept password no longer works; a later run without the
        # variable makes a new one.
        with contextlib.suppress(FileNotFoundError):
            os.remove(password_file)
    elif generated:
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    return password, created


def _set_password(users, user, password):
    manager = getattr(users, "users", None)  # Zope's root PAS: ZODBUserManager
    if manager is not None and hasattr(manager, "updateUserPassword"):
        manager.updateUserPassword(user, password)
    else:  # a classic user folder
        users._doChangeUser(user, password, ["Manager"], [])


def _available_profiles():
    from Products.GenericSetup import profile_registry

    known = set(profile_registry.listProfiles())
    return [p for p in PROFILES if p in known]


def ensure_site(site_id="Plone", title=SITE_TITLE, user=ADMIN):
    """Make sure the Zope root has a Plone site ``site_id`` with zasync
    (and its demo) installed and a front page that says what it is;
    return True if it was created now. An existing site gets what it
    lacks: zasync's profiles, and the front page if its own is still the
    blank one of a site made before (see :func:`ensure_front_page`)."""
    from AccessControl.SecurityManagement import (
        newSecurityManager,
        noSecurityManager,
    )
    from Products.CMFPlone.factory import addPloneSite
    from zope.component.hooks import setSite

    app = _app()
    try:
        existing = app.get(site_id)
        if existing is not None:
            _update_existing(existing, app, user, title)
            return False
        log.info("zasync: creating the Plone site /%s (this takes a minute)", site_id)
        admin = app.acl_users.getUserById(user)
        newSecurityManager(None, admin.__of__(app.acl_users))
        profiles = _available_profiles()
        site = addPloneSite(app, site_id, title=title, extension_ids=profiles)
        _theme_local_address(site)
        ensure_front_page(site, title)
        transaction.get().note(
            f"zasync: Plone site {site_id} with {', '.join(profiles)}"
        )
        transaction.commit()
        log.info("zasync: created /%s with %s", site_id, ", ".join(profiles))
        return True
    finally:
        setSite(None)
        noSecurityManager()
        _close(app)


def _theme_local_address(site):
    """Plone leaves sites unthemed when reached as 127.0.0.1 (a developer's
    back door); ``zasync serve`` listens there, so theme it."""
    from plone.registry.interfaces import IRegistry
    from zope.component import getUtility

    registry = getUtility(IRegistry, context=site)
    key = "plone.app.theming.interfaces.IThemeSettings.hostnameBlacklist"
    if key in registry:
        registry[key] = [host for host in registry[key] or () if host != "127.0.0.1"]


def _update_existing(site, app, user, title):
    """A site made before gets zasync's profiles it lacks (made before
    zasync, or its demo, was installed) and, if its front page is still
    the blank default, zasync's front page."""
    from AccessControl.SecurityManagement import newSecurityManager
    from zope.component.hooks import setSite

    setup = site.portal_setup
    missing = [
        p
        for p in _available_profiles()
        if p.startswith("zasync.") and setup.getLastVersionForProfile(p) == "unknown"
    ]
    if not missing and not front_page_is_blank(site, title):
        return
    admin = app.acl_users.getUserById(user)
    newSecurityManager(None, admin.__of__(app.acl_users))
    setSite(site)
    done = []
    for profile in missing:
        setup.runAllImportStepsFromProfile(f"profile-{profile}")
        done.append(profile)
    if ensure_front_page(site, title):
        done.append("the front page")
    transaction.get().note(f"zasync: {', '.join(done)} in /{site.getId()}")
    transaction.commit()
    log.info("zasync: updated /%s: %s", site.getId(), ", ".join(done))


# -- the front page -------------------------------------------------------------


def front_page_is_blank(site, title=SITE_TITLE):
    """Is the front page (the site root's title, description and text) the
    untouched default of a site ``ensure_site`` made: its title, and no
    description or text? Anything else is somebody's own."""
    text = getattr(site, "text", None)
    raw = getattr(text, "raw", text) or ""
    return (
        site.title == title
        and not (getattr(site, "description", "") or "").strip()
        and not raw.strip()
    )


def ensure_front_page(site, title=SITE_TITLE):
    """Give ``site`` zasync's front page (what the site is, links to the
    demo and where the documentation is) if its own is still blank (see
    :func:`front_page_is_blank`); never over what a user wrote. Returns
    True if it wrote it; the caller commits."""
    if not front_page_is_blank(site, title):
        return False
    from plone.app.textfield.value import RichTextValue

    site.description = FRONT_PAGE_DESCRIPTION
    site.text = RichTextValue(front_page_html(site), "text/html", "text/x-html-safe")
    site.reindexObject()
    log.info("zasync: wrote the front page of /%s", site.getId())
    return True


def _demo_link(site):
    """The demo's address: its path from the Zope root, which is where
    ``zasync serve`` serves it. (An internal link by UID is no use here:
    Plone 6.2 does not resolve the UID of the site root.)"""
    return "/".join(site.getPhysicalPath()) + "/@@zasync-demo"


def _database_text(site):
    """The database the site is in, as the front page names it."""
    storage = site._p_jar.db().storage
    kind = type(storage).__name__
    name = storage.getName()
    if isinstance(name, str) and name.endswith(".fs") and os.path.isfile(name):
        return f"a FileStorage database, <code>{html.escape(name)}</code>"
    if kind == "ClientStorage":
        return f"the database of a ZEO server (<code>{html.escape(str(name))}</code>)"
    if "RelStorage" in kind:
        return "a relational database through RelStorage"
    return f"its database ({html.escape(kind)})"


def _process_text(site):
    """How this process runs zasync, as the front page says it."""
    from zasync.plone import roles

    database = _database_text(site)
    if roles.current_role() is roles.EMBEDDED and roles.runs_dispatcher():
        return (
            "<p><code>zasync serve</code> made it, and runs it the embedded "
            "way, zasync's default for development and small sites: one Zope "
            "process serves the web pages <em>and</em> runs the dispatcher "
            f"that executes the jobs, on {database}.</p>"
        )
    if not roles.runs_dispatcher():
        return (
            "<p>zasync made it in a cluster: the web process that serves it "
            "only queues jobs, and worker processes run them, all on "
            f"{database}.</p>"
        )
    return (
        "<p>zasync made it; the process that serves it runs a dispatcher "
        f"that executes the jobs, on {database}.</p>"
    )


def _docs_text():
    """Where the documentation is: this checkout's docs/ if zasync runs
    from one, else the source distribution's."""
    import zasync

    checkout = os.path.dirname(os.path.dirname(os.path.dirname(zasync.__file__)))
    docs = os.path.join(checkout, "docs")
    if os.path.isfile(os.path.join(docs, "index.md")):
        where = (
            f"in <code>{html.escape(docs)}</code> (the <code>docs/</code> "
            f"directory of the zasync checkout this site runs from)"
        )
    else:
        where = "in the <code>docs/</code> directory of zasync's source"
    return (
        f"<p>zasync's documentation is {where}; <code>make docs</code> in the "
        f"checkout builds it as HTML, <code>docs/_build/html/index.html</code>. "
        f"Start with <code>README.rst</code>, <code>docs/quickstart.md</code> "
        f"and <code>docs/plone.md</code> (queueing jobs from your add-on); "
        f"<code>docs/deployment.md</code> tells how to run zasync in a "
        f"cluster: ZEO or PostgreSQL, web instances that only queue, worker "
        f"processes.</p>"
    )


def front_page_html(site):
    """The text of zasync's front page for ``site``."""
    return (
        "<p>This is a Plone site with <strong>zasync</strong>: durable, "
        "transactional background jobs stored in the ZODB, the Python 3 "
        "successor of zc.async and plone.app.async.</p>"
        f"{_process_text(site)}"
        "<h2>The demo</h2>"
        f'<p><a href="{_demo_link(site)}">Open the zasync demo</a> (log in '
        "first: it is for users who may add content). Its buttons queue real "
        "jobs on the folder <code>/zasync-demo</code>: create documents, "
        "publish them through the workflow, report progress, fail on "
        "purpose. They run in the background as you, and the page follows "
        "them as they run.</p>"
        "<h2>Documentation</h2>" + _docs_text()
    )
