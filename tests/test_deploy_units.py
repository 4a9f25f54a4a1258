"""The systemd units in systemd/ pass `systemd-analyze verify` and keep the properties the docs promise."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[1] / "systemd"
INSTALLED_BINARY = "/opt/iad-edge/.venv/bin/iad-edge"
UNITS = ("iad-edge@.service", "iad-assistant@.service", "iad.target")


def _analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze not installed (Debian: apt-get install -y systemd); CI installs it in .ci/setup")
    return binary


def _stage(tmp_path: Path, extra: dict[str, str] | None = None) -> list[Path]:
    """Copy the units as instances 'demo' into tmp_path, with ExecStart pointing at this venv's iad-edge.

    `systemd-analyze verify` insists that ExecStart's binary exists; the only
    edit is the install prefix (/opt/iad-edge/.venv -> this venv).
    """
    here = str(Path(sys.executable).parent / "iad-edge")
    assert Path(here).exists(), f"iad-edge entry point missing at {here} (pip install -e .)"
    staged = []
    for name in UNITS:
        text = (SYSTEMD_DIR / name).read_text().replace(INSTALLED_BINARY, here)
        text += (extra or {}).get(name, "")
        target = tmp_path / name.replace("@.", "@demo.")
        target.write_text(text)
        staged.append(target)
    return staged


def _verify(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([_analyze(), "verify", "--man=no", *map(str, paths)], capture_output=True, text=True, timeout=60,
                          cwd=paths[0].parent)


def test_units_pass_systemd_analyze_verify_without_any_warning(tmp_path: Path) -> None:
    result = _verify(_stage(tmp_path))
    assert result.returncode == 0, result.stderr
    # verify only warns (rc 0) about unknown keys or bad values: any output is a defect in the unit.
    assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr + result.stdout


def test_example_drop_ins_are_valid_too(tmp_path: Path) -> None:
    drop = {
        "iad-edge@.service": "\n" + (SYSTEMD_DIR / "drop-in" / "10-realtime.conf").read_text(),
        "iad-assistant@.service": "\n" + (SYSTEMD_DIR / "drop-in" / "20-assistant-cores.conf").read_text(),
    }
    result = _verify(_stage(tmp_path, drop))
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_verify_catches_a_typo_so_the_clean_result_means_something(tmp_path: Path) -> None:
    staged = _stage(tmp_path, {"iad-edge@.service": "\n[Service]\nWatchdogSecs=5\n"})
    result = _verify(staged)
    assert "Unknown key 'WatchdogSecs'" in result.stderr


def _service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment]
    parser.read_string((SYSTEMD_DIR / name).read_text())
    return parser["Service"]


def test_lane_unit_is_notify_with_watchdog_restart_and_hardening() -> None:
    svc = _service("iad-edge@.service")
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert float(svc["WatchdogSec"]) > 0 and svc["Restart"] == "on-failure"
    assert svc["ExecStart"].split()[:2] == [INSTALLED_BINARY, "run"]
    for key, value in {"User": "iad", "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "DevicePolicy": "closed"}.items():
        assert svc[key] == value, key
    writable = svc["ReadWritePaths"].split()
    assert writable == ["/var/lib/iad/%i", "/var/cache/iad/engines"]
    assert "IAD_ALLOWED_ROOTS=" in svc["Environment"]


def test_assistant_unit_yields_to_the_lane() -> None:
    lane, assistant = _service("iad-edge@.service"), _service("iad-assistant@.service")
    assert int(assistant["Nice"]) > int(lane["Nice"])
    assert int(assistant["CPUWeight"]) < int(lane["CPUWeight"])
    assert assistant["IOSchedulingClass"] == "idle" and assistant["CPUSchedulingPolicy"] == "idle"
    assert assistant["MemoryMax"] and assistant["Restart"] == "on-failure"
    assert assistant["ExecStart"].split()[:2] == [INSTALLED_BINARY, "assistant"]
