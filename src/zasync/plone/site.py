"""The Zope admin user and a Plone site with zasync, made once and reused.

Used by ``zasync serve`` and ``zasync cluster`` on a Zope that has booted
(its database is open); each function commits its own transaction and
does nothing when what it makes exists already.
"""

import contextlib
import logging
import os
import secrets

import transaction

log = logging.getLogger("zasync.plone")

#: Environment variable with the admin password (else one is generated).
PASSWORD_ENVIRONMENT = "ZASYNC_ADMIN_PASSWORD"
ADMIN = "admin"

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


def ensure_site(site_id="Plone", title="zasync demo", user=ADMIN):
    """Make sure the Zope root has a Plone site ``site_id`` with zasync
    (and its demo) installed; return True if it was created now."""
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
            _install_missing(existing, app, user)
            return False
        log.info("zasync: creating the Plone site /%s (this takes a minute)", site_id)
        admin = app.acl_users.getUserById(user)
        newSecurityManager(None, admin.__of__(app.acl_users))
        profiles = _available_profiles()
        site = addPloneSite(app, site_id, title=title, extension_ids=profiles)
        _theme_local_address(site)
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


def _install_missing(site, app, user):
    """A site made before zasync (or its demo) was installed gets them."""
    from AccessControl.SecurityManagement import newSecurityManager
    from zope.component.hooks import setSite

    setup = site.portal_setup
    missing = [
        p
        for p in _available_profiles()
        if p.startswith("zasync.") and setup.getLastVersionForProfile(p) == "unknown"
    ]
    if not missing:
        return
    admin = app.acl_users.getUserById(user)
    newSecurityManager(None, admin.__of__(app.acl_users))
    setSite(site)
    for profile in missing:
        setup.runAllImportStepsFromProfile(f"profile-{profile}")
    transaction.get().note(f"zasync: installed {', '.join(missing)}")
    transaction.commit()
    log.info("zasync: installed %s in /%s", ", ".join(missing), site.getId())
