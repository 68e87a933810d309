"""The jobs dashboard ``@@zasync-jobs`` (see views.py and docs/dashboard.md)."""
