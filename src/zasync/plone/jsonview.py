"""The JSON answer of the pages' polling views."""

import json

from zasync import admin


def json_response(request, data):
    """``data`` (plain data; ints too long for JavaScript become strings,
    see zasync.admin.for_json) as the body of a JSON response that no
    cache keeps. ``<``, ``>`` and ``&`` are escaped too, so that nothing of
    a job can read as markup anywhere."""
    response = request.response
    response.setHeader("Content-Type", "application/json; charset=utf-8")
    response.setHeader("Cache-Control", "no-store")
    return (
        json.dumps(admin.for_json(data))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
