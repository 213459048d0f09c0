"""The one exception type the CLI turns into a one-line message and exit code 2, and what makes any message fit to
print: secrets redacted, one line, a bounded length."""

import re

MAX_MESSAGE = 400  # characters of a one-line message; a 10 MB field value is cut, not printed

# user:password@ in any URL, and password=... in a libpq key=value string
_URL_PASSWORD = re.compile(r"(://[^:/?#@\s]*):[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.I)
# a credential in a url's query string (a search service's `?api_key=...`)
_URL_SECRET = re.compile(r"([?&](?:api[_-]?key|access[_-]?token|token|secret|key|sig|signature)=)[^&#\s]*", re.I)


class BadInput(Exception):
    """Bad user input or a missing prerequisite. The message is one line and names the file/line when there is one."""


def at(path, line: int | None, problem: str) -> BadInput:
    """`BadInput` in the house format: `FILE:LINE: problem`."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return BadInput(f"{where}: {problem}")


def redact(text: str) -> str:
    """`text` with every password in a connection string replaced by `***` (URLs and key=value strings alike), and
    every key or token in a url's query string."""
    return _URL_SECRET.sub(r"\1***", _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text)))


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message as one short line: secrets redacted, newlines folded, and the middle of anything over `limit`
    characters cut (the start names the file, the end usually says what is wrong)."""
    text = " ".join(redact(str(text)).split())
    if len(text) <= limit:
        return text
    keep = limit - 40
    return f"{text[:keep * 2 // 3]} ...[{len(text) - keep:,} characters cut]... {text[-(keep // 3):]}"
