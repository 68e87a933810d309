"""The demo's jobs: module-level functions, so that a worker finds them.

Each is queued with ``getUtility(IAsyncService).queueJob(func, folder,
...)``; it runs later in a worker, as the user who queued it, with
``folder`` (the demo folder) looked up again by its path. Results are
small dicts of plain data, which the demo page shows.

What the jobs say (their progress, their errors) is kept in English in the
job, as every tool shows it; each text is also a message id of the
``zasync`` domain (:data:`PROGRESS_MESSAGES`, :data:`FAILURE_MESSAGE`,
:attr:`InvalidInput.message`), which the demo page translates.
"""

import time

from AccessControl import getSecurityManager
from plone.app.textfield.value import RichTextValue
from plone.i18n.normalizer.interfaces import IURLNormalizer
from zope.component import getUtility
from zope.i18n import interpolate

from plone import api
from zasync import local
from zasync.plone.i18n import _

#: The folder of the site root the demo works in.
DEMO_FOLDER_ID = "zasync-demo"
#: How many documents one job may create.
MAX_DOCUMENTS = 200
#: The longest title (prefix) accepted for created documents.
MAX_TITLE_LENGTH = 100
#: The workflow state, and transition to it, that publish_contents uses
#: (those of Plone's default simple_publication_workflow).
PUBLISHED = "published"
PUBLISH = "publish"

#: What the jobs report as their progress (``${...}`` filled in).
CREATED_PROGRESS = _("demo_progress_created", default="${number} of ${count} created")
SEEN_PROGRESS = _("demo_progress_seen", default="${number} of ${count} seen")
EMPTY_PROGRESS = _("demo_progress_empty", default="the folder is empty")
STEPS_PROGRESS = _("demo_progress_steps", default="${step} of ${steps} steps")
FAILING_PROGRESS = _("demo_progress_failing", default="half done, about to fail")
PROGRESS_MESSAGES = (
    CREATED_PROGRESS,
    SEEN_PROGRESS,
    EMPTY_PROGRESS,
    STEPS_PROGRESS,
    FAILING_PROGRESS,
)
#: The message of the exception :func:`fail_on_purpose` raises.
FAILURE_MESSAGE = _(
    "demo_failure_message",
    default="This demo job fails on purpose, to show what a failed job looks "
    "like: its Failure keeps the exception's type, message and traceback.",
)


def english(message, **mapping):
    """The English text of ``message`` (its default), filled in with
    ``mapping`` (or the message's own)."""
    return interpolate(message.default or str(message), mapping or message.mapping)


class InvalidInput(ValueError):
    """Bad input for a demo job. ``str()`` of it is the English text;
    ``message`` is the message id, for a page to translate."""

    def __init__(self, message):
        self.message = message
        super().__init__(english(message))


class DemoJobFailed(RuntimeError):
    """Raised on purpose by :func:`fail_on_purpose`."""


def check_count(count):
    """``count`` as an int from 1 to MAX_DOCUMENTS; ValueError saying what
    is allowed otherwise."""
    try:
        number = int(str(count).strip())
    except (TypeError, ValueError):
        raise InvalidInput(
            _(
                "demo_error_count_not_a_number",
                default="The number of documents must be a whole number from 1 "
                "to ${max}, not ${value}.",
                mapping={"max": str(MAX_DOCUMENTS), "value": repr(count)},
            )
        ) from None
    if not 1 <= number <= MAX_DOCUMENTS:
        raise InvalidInput(
            _(
                "demo_error_count_out_of_range",
                default="The number of documents must be from 1 to ${max}, "
                "not ${value}.",
                mapping={"max": str(MAX_DOCUMENTS), "value": str(number)},
            )
        )
    return number


def check_title(title):
    """The title prefix of created documents, stripped; ValueError
    (InvalidInput) if it is empty or longer than MAX_TITLE_LENGTH."""
    text = " ".join(str(title or "").split())
    if not text:
        raise InvalidInput(
            _(
                "demo_error_title_empty",
                default="The title of the documents must not be empty.",
            )
        )
    if len(text) > MAX_TITLE_LENGTH:
        raise InvalidInput(
            _(
                "demo_error_title_too_long",
                default="The title of the documents must be at most ${max} "
                "characters long, not ${length}.",
                mapping={"max": str(MAX_TITLE_LENGTH), "length": str(len(text))},
            )
        )
    return text


def _progress_every(total):
    """Report progress about 20 times over ``total`` steps: each report is
    a commit of its own."""
    return max(1, total // 20)


def _free_id(folder, title):
    """An id for ``title`` that ``folder`` does not use yet. (Chosen before
    creating, as plone.api's safe_id would rename each new document, which
    Plone's catalog logs as an error.)"""
    base = getUtility(IURLNormalizer).normalize(title)
    candidate, suffix = base, 1
    while candidate in folder:
        suffix += 1
        candidate = f"{base}-{suffix}"
    return candidate


def create_documents(folder, count, title="Demo document"):
    """Create ``count`` Documents titled "<title> 1", "<title> 2", ... in
    ``folder``, reporting progress; returns how many, the title and the
    documents' paths."""
    count = check_count(count)
    title = check_title(title)
    user = getSecurityManager().getUser().getId() or "Anonymous"
    every = _progress_every(count)
    paths = []
    for number in range(1, count + 1):
        document = api.content.create(
            container=folder,
            type="Document",
            id=_free_id(folder, f"{title} {number}"),
            title=f"{title} {number}",
            description=f"Document {number} of {count}, created by a zasync job.",
            text=RichTextValue(
                f"<p>This document was created in the background by a zasync "
                f"job, running as the user {user} who queued it from the "
                f"demo page. It is number {number} of {count}.</p>",
                "text/html",
                "text/x-html-safe",
            ),
        )
        paths.append("/".join(document.getPhysicalPath()))
        if number % every == 0 or number == count:
            local.set_progress(
                number / count, english(CREATED_PROGRESS, number=number, count=count)
            )
    return {"created": len(paths), "title": title, "paths": paths}


def publish_contents(folder):
    """Publish the items of ``folder`` through workflow (transition
    ``publish``), skipping those published already; returns the counts of
    published, already published, and refused items (no such transition
    for this user in the item's state: e.g. a Contributor may not publish)."""
    items = folder.contentValues()
    published = already = refused = 0
    every = _progress_every(len(items))
    for number, item in enumerate(items, 1):
        if api.content.get_state(item, default=None) == PUBLISHED:
            already += 1
        else:
            try:
                api.content.transition(obj=item, transition=PUBLISH)
            except api.exc.InvalidParameterError:
                refused += 1
            else:
                published += 1
        if number % every == 0 or number == len(items):
            local.set_progress(
                number / len(items),
                english(SEEN_PROGRESS, number=number, count=len(items)),
            )
    if not items:
        local.set_progress(1.0, english(EMPTY_PROGRESS))
    return {"published": published, "already_published": already, "refused": refused}


def count_slowly(folder, steps=10, pause=0.5):
    """Take ``steps`` steps of ``pause`` seconds each, reporting progress
    after each, so that a person watching sees the progress bar move."""
    started = time.monotonic()
    local.set_progress(0.0, english(STEPS_PROGRESS, step=0, steps=steps))
    for step in range(1, steps + 1):
        time.sleep(pause)  # the demo's "work"
        local.set_progress(
            step / steps, english(STEPS_PROGRESS, step=step, steps=steps)
        )
    return {"steps": steps, "seconds": round(time.monotonic() - started, 1)}


def fail_on_purpose(folder):
    """Do half the work, then raise DemoJobFailed: the job completes with
    a Failure (its type, message and traceback), and its progress, which
    was committed apart from the job, stays at one half."""
    local.set_progress(0.5, english(FAILING_PROGRESS))
    raise DemoJobFailed(english(FAILURE_MESSAGE))
