"""Schemathesis hooks for tests/schemathesis.rs.

The OpenAPI document can only say that an XML body is a string: this
check validates every XML body against schemas/reports.xsd (with xmllint,
as the other tests do) and checks that its root element is the one the
operation and status call for.

One hook keeps the run bounded: `If-None-Match: *` with `?wait=` is a
long-poll that, as documented, holds the request for the whole wait (up to
300 s) when nothing changes.
"""

import os
import subprocess

import schemathesis

# schemas/reports.xsd, found from this file unless the test says otherwise.
XSD = os.environ.get("AUDREY_REPORTS_XSD") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "reports.xsd"
)

# The root element of a 200 answer, by the operation's path.
ROOTS = {
    "/reports/deployment/{uuid}": "deployment",
    "/reports/{version}/deployment/{uuid}": "deployment",
    "/reports/deployment/{uuid}/events": "events",
    "/reports/instance/{uuid}": "instance",
    "/reports/{version}/instance/{uuid}": "instance",
    "/reports/instance/{uuid}/events": "events",
    "/reports/instance/{uuid}/service/{name}": "service",
    "/reports/deployments": "deployments",
    "/reports/configserver": "config-servers",
    "/health": "health",
}


def names_any(if_none_match):
    """Whether an If-None-Match value holds `*` (which names any ETag)."""
    return any(tag.strip() == "*" for tag in str(if_none_match).split(","))


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """A long-poll on `*` holds the request the whole wait: ask for a tag
    that names nothing instead (the wait itself is sent as generated)."""
    query = case.query or {}
    headers = case.headers or {}
    if "wait" not in query:
        return
    for name in list(headers):
        if name.lower() == "if-none-match" and names_any(headers[name]):
            headers[name] = '"not-a-current-etag"'


def expected_root(path, status):
    if path == "/health" and status == 503:
        return "health"
    if status >= 400:
        return "error"
    return ROOTS.get(path)


def root_element(body):
    """The name of the first element of a document, without parsing it."""
    text = body.decode("utf-8", errors="replace")
    at = 0
    while True:
        at = text.find("<", at)
        if at < 0:
            return None
        if text.startswith(("<?", "<!"), at):
            at += 2
            continue
        end = at + 1
        while end < len(text) and text[end] not in " \t\r\n/>":
            end += 1
        return text[at + 1 : end]


@schemathesis.check
def xml_conforms_to_reports_xsd(ctx, response, case):
    """Every XML body validates against schemas/reports.xsd, with the right root."""
    content_type = ",".join(response.headers.get("content-type", []))
    if not content_type.lower().startswith("application/xml"):
        return None
    if response.request.method == "HEAD" or response.status_code == 304:
        return None
    body = response.content
    if len(body) < response.content_size:
        raise AssertionError(
            f"the body was kept only in part ({len(body)} of {response.content_size} bytes): "
            "cannot validate it"
        )
    result = subprocess.run(
        ["xmllint", "--noout", "--schema", XSD, "-"],
        input=body,
        capture_output=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(
            "the XML body is not valid against schemas/reports.xsd:\n"
            + result.stderr.decode("utf-8", errors="replace")
        )
    expected = expected_root(case.operation.path, response.status_code)
    root = root_element(body)
    if expected is not None and root != expected:
        raise AssertionError(
            f"the root element is <{root}>, expected <{expected}> "
            f"for {case.operation.path} answering {response.status_code}"
        )
    # Tells the test which documents were checked (so that a check that
    # never ran cannot pass unnoticed).
    log = os.environ.get("AUDREY_XML_CHECK_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{root}\n")
    return None
