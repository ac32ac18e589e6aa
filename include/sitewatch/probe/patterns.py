"""Body decoding and the regex assertions, bounded by the attempt's deadline in wall-clock time.

The ``regex`` module's ``timeout=`` counts the process's CPU time, not wall time: on a starved
worker a catastrophic pattern given one second can take several. So each search runs in a helper
thread with that CPU budget, and the caller waits at most the same budget of wall time. Trade-off:
when the wall budget runs out first, the search thread keeps running until its own CPU budget is
spent (it holds nothing but the decoded text), and the attempt has already returned.
"""

from __future__ import annotations

import codecs
from email.message import Message

from sitewatch.config.key_checks import compile_pattern
from sitewatch.probe import offload
from sitewatch.probe.failures import Failure
from sitewatch.probe.timing import Deadline

_MIN_SECONDS = 0.01  # a search started with no time left still gets a token slice
_GRACE = 0.05  # extra wall time for the search thread to notice its own timeout and exit


# Python codecs that are not charsets: a site naming one gets UTF-8 like an unknown name would
# (idna and undefined raise whatever the bytes, punycode and the escapes turn text into garbage).
_NOT_CHARSETS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"})


def decode(body: bytes, content_type: str | None) -> str:
    """Decode with the response's charset, else UTF-8; bad bytes become U+FFFD.

    Never raises: a charset that is unknown, not a text encoding, not a charset at all, or cannot
    decode with replacement falls back to UTF-8.
    """
    charset = "utf-8"
    if content_type:
        message = Message()
        message["content-type"] = content_type
        charset = message.get_content_charset() or charset
    try:
        if codecs.lookup(charset).name not in _NOT_CHARSETS:
            return body.decode(charset, errors="replace")
    except (LookupError, UnicodeError):  # unknown, not a text encoding, or no "replace" handler
        pass
    return body.decode("utf-8", errors="replace")


def check_patterns(site, text: str, deadline: Deadline) -> tuple[bool | None, list[Failure]]:
    """Search ``site.regex`` (must match), then ``site.forbid_regex`` (must not), in ``text``.

    Returns ``regex_matched`` (None when there is no regex or its search timed out) and the
    failures found, each of kind ``regex``; both searches share what is left of ``deadline``.
    """
    matched: bool | None = None
    failures: list[Failure] = []
    try:
        if site.regex is not None:
            matched = search(site.regex, text, deadline) is not None
            if not matched:
                failures.append(Failure("regex", f"pattern {site.regex!r:.60} not found in body"))
        if site.forbid_regex is not None:
            found = search(site.forbid_regex, text, deadline)
            if found is not None:
                excerpt = found.group()[:40]
                detail = f"forbidden pattern matched at {found.start()}: {excerpt!r}"
                failures.append(Failure("regex", detail))
    except Failure as failure:
        failures.append(failure)
    except ValueError as exc:  # config validates patterns; this only guards a bypassed config
        failures.append(Failure("regex", f"invalid pattern: {exc}"))
    return matched, failures


def search(pattern: str, text: str, deadline: Deadline):
    """``pattern.search(text)`` within what is left of the deadline (never more than all of it).

    Raises Failure when the search does not finish in time, ValueError for a bad pattern.
    """
    compiled = compile_pattern(pattern)  # the config's cache: validation already compiled it
    budget = min(max(deadline.remaining(), _MIN_SECONDS), deadline.seconds)
    outcome: dict = {}

    def run() -> None:
        try:
            # concurrent=True releases the GIL, so the waiting thread can give up on time.
            outcome["match"] = compiled.search(text, timeout=budget, concurrent=True)
        except TimeoutError:
            outcome["timeout"] = True

    if not offload.run(run, budget + _GRACE) or "match" not in outcome:
        raise Failure("regex", f"regex search timed out after {budget:.2g} s")
    return outcome["match"]
