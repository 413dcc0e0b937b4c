"""The container files: the compose file validates and the Dockerfile lints clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run([hadolint, str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_validates_and_keeps_secrets_out(tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    assert compose, "install Debian's docker-compose (.ci/run does)"
    env = {"PATH": "/usr/bin:/bin", "POSTGRES_PASSWORD": "pw-from-env", "ECG_DATA": str(tmp_path / "ecg.h5")}
    result = subprocess.run([compose, "-f", str(ROOT / "docker" / "compose.yaml"), "config"], env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert "pw-from-env" in config  # the password arrives from the environment...
    assert "pw-from-env" not in (ROOT / "docker" / "compose.yaml").read_text()  # ...never from the file
    assert "127.0.0.1:8080:8080" in config and "max_connections=300" in config
    no_password = {"PATH": "/usr/bin:/bin", "ECG_DATA": "x"}
    missing = subprocess.run([compose, "-f", str(ROOT / "docker" / "compose.yaml"), "config"], env=no_password,
                             capture_output=True, text=True)  # fmt: skip
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr
