"""The zasync control panel, ``@@zasync-controlpanel`` in Site Setup.

It shows and edits the cluster-wide settings (kept with the queues, shared
by every site of the database and every worker) and the site's own (its
registry). ``settings.py`` reads and changes them as plain data, so that
the form here, and a REST ``@controlpanels`` endpoint later, are thin.
"""
