"""A probe suite that expands to too many prompts, or is nested too deeply for the YAML
reader, is an input error (exit 2 at the CLI) with a message, not a crash or an exhausted
memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelward.errors import InputError
from modelward.forensics.probes import MAX_PROMPTS, load_suite


def test_a_suite_expanding_past_the_prompt_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    many = "[" + ", ".join(f"t{i}" for i in range(20_000)) + "]"
    path.write_text(
        f"suite: big\nversion: 1\nclean: [a]\nsafety: [b]\ntriggers: {many}\ntrigger_base: {many}\n"
    )
    with pytest.raises(InputError, match=f"expands to 400000002 prompts.*at most {MAX_PROMPTS}"):
        load_suite(path)


def test_a_deeply_nested_suite_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("suite: x\nversion: 1\nclean: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InputError, match="nested too deeply"):
        load_suite(path)


def test_the_cli_exits_2_on_a_deep_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelward.interfaces.cli import main

    monkeypatch.setenv("MODELWARD_HOME", str(tmp_path / "home"))
    path = tmp_path / "deep.yaml"
    path.write_text("suite: x\nversion: 1\nclean: " + "[" * 5000 + "]" * 5000 + "\n")
    code = main(["probe", "run", "models:/m/1", "--suite", str(path)])
    assert code == 2
    assert "nested too deeply" in capsys.readouterr().err
