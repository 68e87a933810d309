import transaction
from zope.component import getUtility

import readme_jobs
from zasync.plone.interfaces import IAsyncService
from zasync.plone.testing import wait_for_result


def test_add_numbers(portal, folder):
    service = getUtility(IAsyncService)
    job = service.queueJob(readme_jobs.addNumbers, folder, 40, 2)
    transaction.commit()
    assert wait_for_result(job) == 42
