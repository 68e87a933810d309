"""zasync for Zope and Plone: IAsyncService, jobs that run as their user.

Install with the ``zasync[plone]`` extra; plone.autoinclude loads the ZCML.
"""

from zasync.plone.decorator import asyncfunction, is_async
from zasync.plone.service import makeJob

__all__ = ["asyncfunction", "is_async", "makeJob"]
