"""The README's curl examples work as written: each one runs with curl against a real gateway
(``$KEY`` and ``$PROJECT`` set as the README says) and gets the answer its comment shows
(``"<...>"`` standing for a value that differs from run to run)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.harness import Gateway

README = Path(__file__).resolve().parents[3] / "README.md"
# A scalar member of a JSON object as the comments write it: "key":value.
_MEMBER = re.compile(r'"(\w+)":(true|false|null|-?\d+(?:\.\d+)?|"[^"]*")')


def examples() -> list[tuple[str, str]]:
    """(command, expected answer) of each curl command in the README's "Sending events", in order:
    the command with its continued lines, the answer the ``# ...`` comment line under it."""
    text = README.read_text()
    section = text.split("## Sending events", 1)[1].split("\n## ", 1)[0]
    found: list[tuple[str, str]] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("curl "):
                i += 1
                continue
            command = [lines[i]]  # continued up to its comment (quotes may span lines)
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "curl ")):
                command.append(lines[i])
                i += 1
            answer = lines[i].removeprefix("# ") if i < len(lines) and lines[i][:2] == "# " else ""
            found.append(("\n".join(command), answer))
    return found


EXAMPLES = examples()


def test_every_dialect_has_an_example() -> None:
    paths = " ".join(command for command, _ in EXAMPLES)
    for path in ("/batch?", "/track", "/api/v1/batch", "/api/v1/identify", "/v1/events/batch"):
        assert path in paths
    assert all(answer for _, answer in EXAMPLES), "every example shows its answer"


def matches(reply: object, shown: object) -> bool:
    """``reply`` is what ``shown`` shows, where a string ``"<...>"`` stands for any value."""
    if isinstance(shown, str) and shown.startswith("<") and shown.endswith(">"):
        return True
    if isinstance(shown, dict):
        return (
            isinstance(reply, dict)
            and reply.keys() == shown.keys()
            and all(matches(reply[k], v) for k, v in shown.items())
        )
    if isinstance(shown, list):
        return (
            isinstance(reply, list)
            and len(reply) == len(shown)
            and all(matches(r, v) for r, v in zip(reply, shown, strict=True))
        )
    return reply == shown


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize(("command", "answer"), EXAMPLES, ids=[c[:60] for c, _ in EXAMPLES])
async def test_example_answers_as_its_comment_says(
    gateway: Gateway, command: str, answer: str
) -> None:
    url = gateway.http_url
    command = command.replace("http://127.0.0.1:8080", url).replace("curl ", "curl -s -i ", 1)
    command = command.replace(" -o pixel.gif", "")  # the headers are what the test reads
    env = {**os.environ, "KEY": gateway.api_key, "PROJECT": gateway.project_id}
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", command, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    raw_head, _, raw_body = out.partition(b"\r\n\r\n")
    head, body = raw_head.decode(), raw_body.decode(errors="replace")
    status = int(head.split()[1])
    expected = re.match(r"HTTP (\d{3}) ", answer)
    assert status == (int(expected.group(1)) if expected else 200), out
    shown = answer.split("   (", 1)[0].removeprefix(expected.group(0) if expected else "")
    if shown.startswith("image/"):  # an image: its media type is what the comment shows
        assert f"content-type: {shown.strip()}" in head.lower(), head
        return
    reply = json.loads(body)
    try:
        assert matches(reply, json.loads(shown))  # a whole answer, shown as it is
    except json.JSONDecodeError:  # an abridged answer ("..."): each member shown is in the reply
        compact = json.dumps(reply, separators=(",", ":"))
        members = _MEMBER.findall(shown)
        assert members, answer
        for name, value in members:
            assert f'"{name}":{value}' in compact, (name, value, compact)
