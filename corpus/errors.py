"""The one exception type the CLI turns into a one-line message and exit code 2."""


class BadInput(Exception):
    """Bad user input or a missing prerequisite. The message is one line and names the file/line when there is one."""


def at(path, line: int | None, problem: str) -> BadInput:
    """`BadInput` in the house format: `FILE:LINE: problem`."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return BadInput(f"{where}: {problem}")
