"""The hostile-input corpus of issue 15 (part 5): malformed, oversized and
contradictory inputs to every command that reads user files.

Every case asserts the exit code, that stderr is exactly one
``trialrun: error:`` line naming the file (or option) with a key phrase of
the message, and that nothing raised past the CLI's guard (no traceback).

The cases that would eat memory or recurse without the bounds (alias bombs,
deep nesting, ``/dev/zero``, an oversized file, too many nodes) run in a real
``python -m trialrun`` process under a 2 GiB address-space limit and a
timeout, so a regression fails instead of taking the machine down; they run
two at a time in one fixture. The rest run in-process through typer's
``CliRunner`` to keep the file fast.

Small corpus files live in ``tests/hostile/``; big or binary ones are made
here.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from helpers import subprocess_env
from trialrun.cli import app
from trialrun.config import MAX_EPISODES, parse_run_config
from trialrun.execution import run_evaluation
from trialrun.yaml_safe import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

CORPUS = Path(__file__).parent / "hostile"
MEMORY_LIMIT = 2 * 1024**3
TIMEOUT = 60.0


# --------------------------------------------------------------------------- checking one outcome


def check_one_error_line(
    code: int, stderr: str, *, expected_code: int, names: str, phrase: str, after_warnings: bool = False
) -> None:
    """Exit code, exactly one ``trialrun: error:`` line with ``names`` and
    ``phrase``, no traceback. ``after_warnings``: the command got far enough
    to log warnings about valid data first; the error is then the last line."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    if after_warnings:
        assert lines[0].startswith("WARNING"), stderr
        lines = lines[-1:]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("trialrun: error: "), stderr
    assert names in lines[0], stderr
    assert phrase in lines[0], stderr
    assert code == expected_code, stderr


def invoke(args: list[str]) -> tuple[int, str]:
    """``trialrun ARGS`` in-process: (exit code, stderr); an exception that
    escaped the guard fails the test with its traceback."""
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


def _limit_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_bounded(args: list[str], cwd: Path) -> tuple[int, str]:
    """``python -m trialrun ARGS`` under a memory limit and a timeout."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "trialrun", *args],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            cwd=cwd,
            timeout=TIMEOUT,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT} s (a hang)"
    return proc.returncode, proc.stderr + proc.stdout


# --------------------------------------------------------------------------- a small valid run


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-job run (CartPole with a factor, SeedProbe) that cases copy and break."""
    run_dir = tmp_path_factory.mktemp("hostile") / "base"
    config = parse_run_config(yaml.safe_load((CORPUS / "run.yaml").read_text()))
    assert run_evaluation(config, run_dir).exit_code == 0
    return run_dir


@pytest.fixture
def broken_copy(base_run: Path, tmp_path: Path) -> Path:
    """A copy of the base run for one case to break."""
    target = tmp_path / "run"
    shutil.copytree(base_run, target, ignore=shutil.ignore_patterns("report", ".trialrun.lock"))
    return target


def _lines(run: Path) -> list[str]:
    return (run / "episodes.jsonl").read_text().splitlines(keepends=True)


def _edit_record(run: Path, index: int, edit: Callable[[dict[str, Any]], None]) -> None:
    lines = _lines(run)
    record = json.loads(lines[index])
    edit(record)
    lines[index] = json.dumps(record) + "\n"  # json.dumps writes NaN / Infinity as they come
    (run / "episodes.jsonl").write_text("".join(lines))


def _edit_manifest(run: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _set(group: str, key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(record: dict[str, Any]) -> None:
        record[group][key] = value

    return edit


# --------------------------------------------------------------------------- broken run directories

READERS = ("analyze", "report", "compare", "resume", "replay")

Break = Callable[[Path], None]


@dataclass(frozen=True)
class RunBreak:
    """One way to break a run directory: the file broken, how, the phrase every
    reader's error shows (``overrides``: another phrase for some readers) and
    the readers that must refuse it."""

    file: str
    damage: Break
    phrase: str
    readers: tuple[str, ...] = READERS
    overrides: tuple[tuple[str, str], ...] = ()


def _manifest_config_string(m: dict[str, Any]) -> None:
    m["config"] = "x"


def _manifest_jobs_list(m: dict[str, Any]) -> None:
    m["jobs"] = []


def _manifest_episodes_too_many(m: dict[str, Any]) -> None:
    m["config"]["jobs"][0]["episodes"] = 10**12


def _manifest_schema_text(run: Path) -> None:
    text = (run / "manifest.json").read_text()
    (run / "manifest.json").write_text(text.replace('"schema": 1', '"schema": "one"', 1))


def _record_job(run: Path) -> None:
    _edit_record(run, 0, lambda r: r.update(job="not-in-config"))


def _record_episode_text(run: Path) -> None:
    _edit_record(run, 0, lambda r: r.update(episode="x"))


def _torn_middle(run: Path) -> None:
    lines = _lines(run)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"
    (run / "episodes.jsonl").write_text("".join(lines))


def _latin1_middle(run: Path) -> None:
    lines = [line.encode() for line in _lines(run)]
    lines[2] = lines[2].replace(b'"job": "a"', b'"job": "caf\xe9"').replace(b'"job":"a"', b'"job":"caf\xe9"')
    _replace(run / "episodes.jsonl", b"".join(lines))


def _return_1e999(run: Path) -> None:
    """A JSON number that parses as infinity (no NaN or Infinity spelled out)."""
    lines = _lines(run)
    record = json.loads(lines[0])
    record["outcome"]["return"] = "@@"
    lines[0] = json.dumps(record).replace('"@@"', "1e999") + "\n"
    (run / "episodes.jsonl").write_text("".join(lines))


def _duplicate(run: Path) -> None:
    lines = _lines(run)
    (run / "episodes.jsonl").write_text("".join([*lines, lines[0]]))


def _append(data: bytes) -> Break:
    def damage(run: Path) -> None:
        with open(run / "episodes.jsonl", "ab") as f:
            f.write(data)

    return damage


RUN_BREAKS: dict[str, RunBreak] = {
    # manifest.json
    "manifest-binary": RunBreak(
        "manifest.json", lambda r: _replace(r / "manifest.json", b"\xff\xfe\x00\x01" * 64), "not UTF-8 text"
    ),
    "manifest-latin1": RunBreak(
        "manifest.json", lambda r: _replace(r / "manifest.json", b'{"run": "caf\xe9"}'), "not UTF-8 text"
    ),
    "manifest-truncated": RunBreak(
        "manifest.json",
        lambda r: _replace(r / "manifest.json", (r / "manifest.json").read_bytes()[:300]),
        "not valid JSON (truncated or corrupt)",
    ),
    "manifest-empty": RunBreak(
        "manifest.json", lambda r: _replace(r / "manifest.json", b""), "not valid JSON (truncated or corrupt)"
    ),
    "manifest-list": RunBreak(
        "manifest.json", lambda r: _replace(r / "manifest.json", b"[1, 2]\n"), "Input should be an object"
    ),
    "manifest-config-string": RunBreak(
        "manifest.json", lambda r: _edit_manifest(r, _manifest_config_string), "field 'config'"
    ),
    "manifest-jobs-list": RunBreak(
        "manifest.json", lambda r: _edit_manifest(r, _manifest_jobs_list), "field 'jobs'"
    ),
    "manifest-schema-text": RunBreak("manifest.json", _manifest_schema_text, "field 'schema'"),
    "manifest-directory": RunBreak(
        "manifest.json", lambda r: _directory(r / "manifest.json"), "is a directory"
    ),
    "manifest-missing": RunBreak(
        "manifest.json",
        lambda r: (r / "manifest.json").unlink(),
        "no such file",
        overrides=(("report", "it has no manifest.json"),),
    ),
    "manifest-dev-zero": RunBreak(
        "manifest.json", lambda r: _dev_zero(r / "manifest.json"), "is not a regular file"
    ),
    "manifest-episodes-over-cap": RunBreak(
        "manifest.json",
        lambda r: _edit_manifest(r, _manifest_episodes_too_many),
        f"less than or equal to {MAX_EPISODES}",
        readers=("resume", "replay"),
    ),
    # episodes.jsonl
    "episodes-binary": RunBreak(
        "episodes.jsonl",
        lambda r: _replace(r / "episodes.jsonl", b"\xff\xfe\x00\x01" * 64 + b"\n"),
        "not UTF-8",
    ),
    "episodes-latin1-line-3": RunBreak("episodes.jsonl", _latin1_middle, "episodes.jsonl:3: not UTF-8 text"),
    "episodes-torn-middle-line": RunBreak(
        "episodes.jsonl", _torn_middle, "episodes.jsonl:2: not valid JSON (truncated or corrupt)"
    ),
    "episodes-nul-line": RunBreak("episodes.jsonl", _append(b"\x00" * 40 + b"\n"), "not valid JSON"),
    "episodes-list-line": RunBreak("episodes.jsonl", _append(b"[1, 2]\n"), "field '(line)'"),
    "episodes-deep-json-line": RunBreak(
        "episodes.jsonl", _append(b"[" * 100_000 + b"]" * 100_000 + b"\n"), "not valid JSON"
    ),
    "episodes-long-line": RunBreak(  # resume cuts it off as a torn last line, rightly
        "episodes.jsonl",
        _append(b"x" * (2 * 1024 * 1024)),
        "line longer than 1048576 bytes",
        readers=("analyze", "report", "compare", "replay"),
    ),
    "episodes-episode-text": RunBreak(
        "episodes.jsonl", _record_episode_text, "episodes.jsonl:1: field 'episode'"
    ),
    "episodes-nan-return": RunBreak(
        "episodes.jsonl",
        lambda r: _edit_record(r, 0, _set("outcome", "return", float("nan"))),
        "field 'outcome.return': nan is not a finite number",
    ),
    "episodes-infinite-return": RunBreak(
        "episodes.jsonl",
        lambda r: _edit_record(r, 1, _set("outcome", "return", float("-inf"))),
        "episodes.jsonl:2: field 'outcome.return': -inf is not a finite number",
    ),
    "episodes-1e999-return": RunBreak(
        "episodes.jsonl", _return_1e999, "field 'outcome.return': inf is not a finite number"
    ),
    "episodes-nan-factor": RunBreak(
        "episodes.jsonl",
        lambda r: _edit_record(r, 0, _set("factors", "pole_length", float("nan"))),
        "field 'factors.pole_length': nan is not a finite number",
    ),
    "episodes-unknown-job": RunBreak(
        "episodes.jsonl",
        _record_job,
        "which the run's config does not have",
        readers=("analyze", "report", "compare", "resume"),
    ),
    "episodes-duplicate-record": RunBreak(
        "episodes.jsonl", _duplicate, "two records of job 'a' episode", readers=("compare",)
    ),
    "episodes-directory": RunBreak(
        "episodes.jsonl", lambda r: _directory(r / "episodes.jsonl"), "is a directory"
    ),
    "episodes-missing": RunBreak(
        "episodes.jsonl",
        lambda r: (r / "episodes.jsonl").unlink(),
        "no such episodes file",
        readers=("analyze", "report", "compare", "replay"),
        overrides=(("replay", "has no record in"),),
    ),
    "episodes-dev-zero": RunBreak(
        "episodes.jsonl", lambda r: _dev_zero(r / "episodes.jsonl"), "is not a regular file"
    ),
    # summary.json (read by analyze and report)
    "summary-truncated": RunBreak(
        "summary.json",
        lambda r: _replace(r / "summary.json", (r / "summary.json").read_bytes()[:100]),
        "not valid JSON (truncated or corrupt)",
        readers=("analyze", "report"),
    ),
    "summary-binary": RunBreak(
        "summary.json",
        lambda r: _replace(r / "summary.json", b"\x89PNG\r\n\x1a\n" * 8),
        "not UTF-8 text",
        readers=("analyze", "report"),
    ),
    "summary-list": RunBreak(
        "summary.json",
        lambda r: _replace(r / "summary.json", b"[]"),
        "Input should be an object",
        readers=("analyze", "report"),
    ),
}


def _run_break_cases() -> Iterator[Any]:
    for name, case in RUN_BREAKS.items():
        overrides = dict(case.overrides)
        for reader in case.readers:
            yield pytest.param(name, reader, overrides.get(reader, case.phrase), id=f"{reader}-{name}")


def _reader_args(reader: str, run: Path, base_run: Path, tmp_path: Path) -> list[str]:
    return {
        "analyze": ["analyze", str(run), "--out", str(tmp_path / "analysis")],
        "report": ["report", str(run), "--out", str(tmp_path / "report")],
        "compare": ["compare", str(run), str(base_run), "--out", str(tmp_path / "compare")],
        "resume": ["run", "--resume", str(run), "--quiet"],
        "replay": ["replay", str(run), "a", "1"],
    }[reader]


@pytest.mark.parametrize(("name", "reader", "phrase"), list(_run_break_cases()))
def test_a_broken_run_directory_is_one_clear_error(
    name: str, reader: str, phrase: str, broken_copy: Path, base_run: Path, tmp_path: Path
) -> None:
    case = RUN_BREAKS[name]
    case.damage(broken_copy)
    code, stderr = invoke(_reader_args(reader, broken_copy, base_run, tmp_path))
    check_one_error_line(code, stderr, expected_code=2, names=case.file, phrase=phrase)


# --------------------------------------------------------------------------- hostile YAML, in-process

DEEP_BLOCK = "".join(f"{'  ' * i}a:\n" for i in range(100)) + "  " * 100 + "1\n"


@dataclass(frozen=True)
class YamlCase:
    text: bytes
    phrase: str
    flow: bool = True  # also fits as a --set value and a --policy spec
    policy: bool = True  # --policy reads it as YAML (a flow mapping, or a "key: value")


def _bomb_flow(levels: int) -> str:
    parts = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        parts.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "{" + ", ".join(parts) + "}"


YAML_CASES: dict[str, YamlCase] = {
    "duplicate-key": YamlCase(b"a: 1\nb: 2\na: 3\n", "duplicate key 'a' (first at line 1)"),
    "duplicate-nested-key": YamlCase(b"a:\n  b: 1\n  b: 2\n", "duplicate key 'b' (first at line 2)"),
    "duplicate-flow-key": YamlCase(b"{type: random, type: zero}", "duplicate key 'type'"),
    "duplicate-int-float-key": YamlCase(b"{1: a, 1.0: b}", "duplicate key 1.0"),
    "alias-bomb-flow": YamlCase(_bomb_flow(7).encode(), "alias expansion limit (100000) exceeded"),
    "alias-bomb-nested-map": YamlCase(
        b"{l0: &l0 {a: x, b: x, c: x, d: x, e: x, f: x, g: x, h: x, i: x, j: x}, "
        + b", ".join(
            f"l{i}: &l{i} [".encode() + b", ".join([f"*l{i - 1}".encode()] * 10) + b"]" for i in range(1, 6)
        )
        + b"}",
        "alias expansion limit (100000) exceeded",
    ),
    "deep-flow-list": YamlCase(
        ("{a: " + "[" * 5000 + "]" * 5000 + "}").encode(), f"nesting deeper than {MAX_YAML_DEPTH}"
    ),
    "deep-flow-map": YamlCase(
        ("{a: " + "{a: " * 200 + "1" + "}" * 201).encode(), f"nesting deeper than {MAX_YAML_DEPTH}"
    ),
    "deep-block": YamlCase(DEEP_BLOCK.encode(), f"nesting deeper than {MAX_YAML_DEPTH} levels", policy=False),
    "recursive-alias": YamlCase(b"{a: &x [1, *x]}", "alias *x refers to a node that contains it"),
    "undefined-alias": YamlCase(b"{a: *nope}", "found undefined alias 'nope'"),
    "unclosed-flow": YamlCase(b"{type: zero, kwargs: [1, 2}", "invalid YAML at line 1"),
    "bad-date": YamlCase(b"{a: 2026-13-45}", "month must be in 1..12"),
    "huge-int": YamlCase(("{a: " + "9" * 5000 + "}").encode(), "Exceeds the limit (4300 digits)"),
    "python-tag": YamlCase(
        b"{a: !!python/object/apply:os.system [echo pwned]}", "could not determine a constructor"
    ),
    "unhashable-key": YamlCase(b"{[1]: 2}", "found unhashable key"),
    "two-documents": YamlCase(
        b"a: 1\n---\nb: 2\n", "line 2, column 1: but found another document", flow=False
    ),
    "tab-indent": YamlCase(b"a:\n\tb: 1\n", "invalid YAML at line 2", flow=False),
    "nul-byte": YamlCase(
        b"a: 1\nb: 2\x00\n", "line 2, column 5: character #x0000 is not allowed", flow=False
    ),
    "not-utf8": YamlCase(b"a: caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 6)", flow=False),
    "utf16": YamlCase("a: 1\n".encode("utf-16"), "is not UTF-8 text (byte 0xff at offset 0)", flow=False),
}

FILE_CARRIERS = ("run", "suites", "factors", "import-factors")
TEXT_CARRIERS = ("set", "policy")


def _yaml_args(carrier: str, path: Path, text: str, base_run: Path, tmp_path: Path) -> tuple[list[str], str]:
    """Command line for one carrier of a YAML payload, and the name its error must show."""
    out = str(tmp_path / "out")
    episodes = str(base_run / "episodes.jsonl")
    suites = str(CORPUS / "suites.yaml")
    run = str(CORPUS / "run.yaml")
    return {
        "run": (["run", str(path), "--run-dir", out], path.name),
        "suites": (["suite", str(path), "--no-log", "-q", "-o", out], path.name),
        "factors": (["analyze", "--episodes", episodes, "--factors", str(path), "--out", out], path.name),
        "import-factors": (
            ["import", "jsonl", episodes, "--factors", str(path), "--run-dir", out],
            path.name,
        ),
        "set": (["run", run, "--run-dir", out, "--set", f"jobs.0.policy.kwargs.x={text}"], "--set"),
        "policy": (["suite", suites, "--policy", text, "--no-log", "-q", "-o", out], "--policy"),
    }[carrier]


def _yaml_cases() -> Iterator[Any]:
    for name, case in YAML_CASES.items():
        carriers = FILE_CARRIERS + (TEXT_CARRIERS if case.flow else ())
        if not case.policy:
            carriers = tuple(c for c in carriers if c != "policy")
        for carrier in carriers:
            yield pytest.param(name, carrier, id=f"{carrier}-{name}")


@pytest.mark.parametrize(("name", "carrier"), list(_yaml_cases()))
def test_hostile_yaml_is_one_clear_error(name: str, carrier: str, base_run: Path, tmp_path: Path) -> None:
    case = YAML_CASES[name]
    path = tmp_path / f"{carrier}.yaml"
    path.write_bytes(case.text)
    args, names = _yaml_args(carrier, path, case.text.decode("utf-8", "replace"), base_run, tmp_path)
    code, stderr = invoke(args)
    check_one_error_line(code, stderr, expected_code=2, names=names, phrase=case.phrase)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("carrier", FILE_CARRIERS)
@pytest.mark.parametrize(("kind", "phrase"), [("directory", "is a directory"), ("missing", "no such")])
def test_a_yaml_file_that_is_not_a_file(
    carrier: str, kind: str, phrase: str, base_run: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"{carrier}.yaml"
    if kind == "directory":
        path.mkdir()
    args, names = _yaml_args(carrier, path, "", base_run, tmp_path)
    code, stderr = invoke(args)
    check_one_error_line(code, stderr, expected_code=2, names=names, phrase=phrase)


# --------------------------------------------------------------------------- run-file values


def _run_doc(**job: object) -> dict[str, Any]:
    doc = yaml.safe_load((CORPUS / "run.yaml").read_text())
    doc["jobs"][0].update(job)
    return doc


CONFIG_CASES = {
    "episodes-10**12": (_run_doc(episodes=10**12), [], "field 'jobs.0.episodes'", f"{MAX_EPISODES}"),
    "episodes-cap-plus-one": (
        _run_doc(episodes=MAX_EPISODES + 1),
        [],
        "field 'jobs.0.episodes'",
        "less than",
    ),
    "episodes-zero": (_run_doc(episodes=0), [], "field 'jobs.0.episodes'", "greater than or equal to 1"),
    "episodes-text": (_run_doc(episodes="lots"), [], "field 'jobs.0.episodes'", "valid integer"),
    "min-return-nan": (_run_doc(success={"min_return": float("nan")}), [], "min_return", "finite number"),
    "min-return-inf": (_run_doc(success={"min_return": float("inf")}), [], "min_return", "finite number"),
    "min-return-minus-inf": (
        _run_doc(success={"min_return": float("-inf")}),
        [],
        "min_return",
        "finite number",
    ),
    "set-episodes-10**12": (
        _run_doc(),
        ["--set", "jobs.0.episodes=1000000000000"],
        "jobs.0.episodes",
        "10000000",
    ),
    "set-min-return-nan": (
        _run_doc(),
        ["--set", "jobs.0.success={min_return: .nan}"],
        "min_return",
        "finite",
    ),
    "set-duplicate-key": (_run_doc(), ["--set", "jobs.0.env={id: a, id: b}"], "--set", "duplicate key 'id'"),
    "target-half-width-nan": (
        {**_run_doc(), "target_half_width": float("nan")},
        [],
        "target_half_width",
        "Input should be less than 0.5",
    ),
    "seed-negative": ({**_run_doc(), "seed": -1}, [], "field 'seed'", "greater than or equal to 0"),
    "seed-2**64": ({**_run_doc(), "seed": 2**64}, [], "field 'seed'", "less than"),
    "no-jobs": ({**_run_doc(), "jobs": []}, [], "field 'jobs'", "at least 1 item"),
    "top-level-list": ([1, 2], [], "run.yaml", "mapping"),
}


@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_a_bad_value_fails_before_any_run_directory(name: str, tmp_path: Path) -> None:
    doc, extra, names, phrase = CONFIG_CASES[name]
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, stderr = invoke(["run", str(path), "--run-dir", str(tmp_path / "out"), *extra])
    check_one_error_line(code, stderr, expected_code=2, names=names, phrase=phrase)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- import sources and unwritable outputs


def _import_sources(tmp_path: Path, base_run: Path) -> dict[str, tuple[list[str], str, str]]:
    """name -> (args, name in the message, phrase); files are made on demand."""
    t = tmp_path

    def write(name: str, data: bytes) -> str:
        if t.is_dir():  # the case names are listed at collection time without a folder
            (t / name).write_bytes(data)
        return str(t / name)

    out = ["--run-dir", str(t / "out")]
    csv = ["--episode", "ep", "--factor", "x", "--outcome", "score"]
    return {
        "jsonl-binary": (
            ["import", "jsonl", write("b.jsonl", b"\xff\xfe\x00x\n"), *out],
            "b.jsonl",
            "cannot read",
        ),
        "jsonl-deep": (
            ["import", "jsonl", write("d.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n"), *out],
            "d.jsonl:1",
            "nested too deeply",
        ),
        "jsonl-truncated": (
            ["import", "jsonl", write("t.jsonl", b'{"job": "j", "episode": 0, "outcome": {"succ\n'), *out],
            "t.jsonl:1",
            "not valid JSON",
        ),
        "jsonl-list-row": (
            ["import", "jsonl", write("l.jsonl", b"[1, 2]\n"), *out],
            "l.jsonl:1",
            "JSON object",
        ),
        "jsonl-duplicate": (
            [
                "import",
                "jsonl",
                write("u.jsonl", b'{"job": "j", "episode": 0, "outcome": {}}\n' * 2),
                *out,
            ],
            "u.jsonl:2",
            "appears twice",
        ),
        "jsonl-directory": (["import", "jsonl", str(t), *out], str(t), "is a directory"),
        "jsonl-missing": (["import", "jsonl", str(t / "no.jsonl"), *out], "no.jsonl", "no such file"),
        "arena-binary": (
            ["import", "arena", write("a.jsonl", b"\x00\xff\n"), *out],
            "a.jsonl",
            "cannot read",
        ),
        "arena-directory": (["import", "arena", str(t), *out], str(t), "is a directory"),
        "csv-binary": (
            ["import", "csv", write("b.csv", b"\xff\xfe,\x00\n"), *csv, *out],
            "b.csv",
            "cannot read",
        ),
        "csv-ragged": (
            ["import", "csv", write("r.csv", b"ep,x,score\n0,1.5\n"), *csv, *out],
            "r.csv:2",
            "2 cell(s), but the header names 3 columns",
        ),
        "csv-directory": (["import", "csv", str(t), *csv, *out], str(t), "is a directory"),
        "csv-huge-field": (
            ["import", "csv", write("h.csv", b"ep,x,score\n0," + b"9" * 200_000 + b",1\n"), *csv, *out],
            "h.csv",
            "field larger than field limit",
        ),
        "import-run-dir-under-a-file": (
            [
                "import",
                "jsonl",
                str(base_run / "episodes.jsonl"),
                "--factors",
                str(CORPUS / "factors.yaml"),
                "--run-dir",
                write("f", b"") + "/run",
            ],
            "f",
            "cannot write",
        ),
        "analyze-out-under-a-file": (
            ["analyze", str(base_run), "--out", write("g", b"") + "/analysis"],
            "g",
            "cannot write",
        ),
        "analyze-out-in-proc": (
            ["analyze", str(base_run), "--out", "/proc/no/such"],
            "/proc/no",
            "cannot write",
        ),
        "compare-out-under-a-file": (
            ["compare", str(base_run), str(base_run), "--out", write("c", b"") + "/cmp"],
            "c",
            "cannot write",
        ),
        "report-out-under-a-file": (
            ["report", str(base_run), "--out", write("r", b"") + "/report"],
            "r",
            "cannot write",
        ),
    }


IMPORT_CASES = list(_import_sources(Path("/unused"), Path("/unused")))


@pytest.mark.parametrize("name", IMPORT_CASES)
def test_import_sources_and_unwritable_outputs(name: str, base_run: Path, tmp_path: Path) -> None:
    args, names, phrase = _import_sources(tmp_path, base_run)[name]
    code, stderr = invoke(args)
    analysed = name.startswith("analyze-")  # warns about its 12 episodes before writing
    check_one_error_line(code, stderr, expected_code=2, names=names, phrase=phrase, after_warnings=analysed)


# --------------------------------------------------------------------------- in a real process, bounded


def _bounded_cases(t: Path, base_run: Path) -> dict[str, tuple[list[str], str, str]]:
    """name -> (args, name in the message, phrase): inputs that eat memory,
    recurse or never end without the bounds."""

    def write(name: str, data: bytes) -> str:
        if t.is_dir():  # the case names are listed at collection time without a folder
            (t / name).write_bytes(data)
        return str(t / name)

    out = ["--run-dir", str(t / "out")]
    run = str(CORPUS / "run.yaml")
    episodes = str(base_run / "episodes.jsonl")
    deep = b"[" * 50_000 + b"]" * 50_000
    bomb = _bomb_flow(8).encode()
    csv = ["--episode", "ep"]
    return {
        "run-alias-bomb-544": (
            ["run", str(CORPUS / "alias_bomb_run.yaml"), *out],
            "alias_bomb_run.yaml",
            "alias expansion limit (100000) exceeded",
        ),
        "run-alias-bomb-660": (
            ["run", str(CORPUS / "alias_bomb_large_run.yaml"), *out],
            "alias_bomb_large_run.yaml",
            "alias expansion limit (100000) exceeded",
        ),
        "set-alias-bomb": (
            ["run", run, *out, "--set", "jobs.0.policy.kwargs=" + bomb.decode()],
            "--set",
            "alias expansion limit",
        ),
        "factors-alias-bomb": (
            [
                "analyze",
                "--episodes",
                episodes,
                "--factors",
                write("bomb.yaml", bomb),
                "--out",
                str(t / "out"),
            ],
            "bomb.yaml",
            "alias expansion limit",
        ),
        "run-deep": (
            ["run", write("deep.yaml", b"a: " + deep), *out],
            "deep.yaml",
            "nesting deeper than 64 levels",
        ),
        "set-deep": (
            ["run", run, *out, "--set", "seed=" + deep.decode()],
            "--set",
            "nesting deeper than 64 levels",
        ),
        "factors-deep": (
            [
                "analyze",
                "--episodes",
                episodes,
                "--factors",
                write("fdeep.yaml", deep),
                "--out",
                str(t / "out"),
            ],
            "fdeep.yaml",
            "nesting deeper than 64 levels",
        ),
        "run-dev-zero": (["run", "/dev/zero", *out], "/dev/zero", "is not a regular file"),
        "factors-dev-zero": (
            ["analyze", "--episodes", episodes, "--factors", "/dev/zero", "--out", str(t / "out")],
            "/dev/zero",
            "is not a regular file",
        ),
        "suites-dev-zero": (["suite", "/dev/zero", "--no-log", "-q"], "/dev/zero", "is not a regular file"),
        "import-jsonl-dev-zero": (
            ["import", "jsonl", "/dev/zero", *out],
            "/dev/zero",
            "is not a regular file",
        ),
        "import-csv-dev-zero": (
            ["import", "csv", "/dev/zero", *csv, *out],
            "/dev/zero",
            "is not a regular file",
        ),
        "run-oversized": (
            ["run", write("big.yaml", b"# padding\n" * (MAX_YAML_BYTES // 10 + 1)), *out],
            "big.yaml",
            f"larger than the limit of {MAX_YAML_BYTES} bytes",
        ),
        "run-too-many-nodes": (
            ["run", write("wide.yaml", b"a: [" + b"1," * (MAX_YAML_NODES + 1) + b"]\n"), *out],
            "wide.yaml",
            f"more than {MAX_YAML_NODES} nodes",
        ),
    }


BOUNDED_CASES = list(_bounded_cases(Path("/unused"), Path("/unused")))


@pytest.fixture(scope="module")
def bounded_results(
    base_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str, str, str]]:
    """Every bounded case run in its own process, two at a time (the machine has 2 cores)."""
    root = tmp_path_factory.mktemp("bounded")
    prepared = {}
    for name in BOUNDED_CASES:
        folder = root / name
        folder.mkdir()
        prepared[name] = (_bounded_cases(folder, base_run)[name], folder)

    def one(name: str) -> tuple[str, tuple[int, str, str, str]]:
        (args, names, phrase), folder = prepared[name]
        code, stderr = run_bounded(args, folder)
        if (folder / "out").exists():
            stderr += "\na run directory was made"
        return name, (code, stderr, names, phrase)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, BOUNDED_CASES))


@pytest.mark.parametrize("name", BOUNDED_CASES)
def test_inputs_that_would_eat_memory_fail_fast_in_a_real_process(
    name: str, bounded_results: dict[str, tuple[int, str, str, str]]
) -> None:
    code, stderr, names, phrase = bounded_results[name]
    check_one_error_line(code, stderr, expected_code=2, names=names, phrase=phrase)
