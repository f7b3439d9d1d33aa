"""The plugin's exceptions: one root, one-line messages written for users."""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class NatsnetError(Exception):
    """Root of every error pytest-natsnet raises on purpose."""


class ConfigError(NatsnetError):
    """Bad user input: ``str()`` is one line naming the file/key/option and what to do."""

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        self.where = where
        self.problem = problem
        self.fix = fix
        super().__init__(where, problem, fix)

    def __str__(self) -> str:
        text = f"{self.where}: {self.problem}"
        if self.fix:
            text += f"; {self.fix}"
        return " ".join(text.split())


class CommandError(NatsnetError):
    """An external command failed; renders the command so it can be pasted into a shell."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(self.argv, returncode, output)

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def __str__(self) -> str:
        text = f"command failed (exit {self.returncode}): {self.command}"
        tail = self.output.strip()
        return f"{text}\n{tail}" if tail else text


class ToolNotFound(NatsnetError):
    """A required binary is missing: says which, the version needed and how to provide it."""

    def __init__(self, tool: str, reason: str, how: str) -> None:
        self.tool = tool
        self.reason = reason
        self.how = how
        super().__init__(tool, reason, how)

    def __str__(self) -> str:
        return f"{self.tool} not found: {self.reason}; {self.how}"
