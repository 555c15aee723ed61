"""Side virtual environments for components whose pins clash with ours.

Label Studio's server and the `label-studio-ml` backend each get their own environment, built
from a committed constraints file and cached under a name that includes the file's hash, so a
changed pin builds a new environment and an unchanged one is reused by every clone.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smo_labelstudio.core.errors import ServiceError
from smo_labelstudio.core.paths import CONSTRAINTS_DIR, cache_home


class EnvError(ServiceError):
    """A side environment could not be built; the message names its log."""


@dataclass(frozen=True)
class SideEnv:
    """One side environment: a name and the constraints file it is installed from."""

    name: str
    constraints: Path

    @property
    def key(self) -> str:
        return hashlib.sha256(self.constraints.read_bytes()).hexdigest()[:12]

    @property
    def path(self) -> Path:
        return cache_home() / "envs" / f"{self.name}-{self.key}"

    @property
    def log(self) -> Path:
        return cache_home() / "envs" / f"{self.name}-{self.key}.log"

    def bin(self, program: str) -> Path:
        return self.path / "bin" / program

    def site_packages(self) -> Path:
        py = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.path / "lib" / py / "site-packages"

    def is_ready(self) -> bool:
        return (self.path / ".smo-complete").exists()

    def ensure(self, say: Callable[[str], None] = lambda _m: None) -> Path:
        """Build the environment unless a complete one exists; safe against concurrent callers."""
        if self.is_ready():
            return self.path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / f".{self.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_ready():
                return self.path
            say(f"{self.name}: building its environment in {self.path} (a few minutes, once; log: {self.log})")
            shutil.rmtree(self.path, ignore_errors=True)
            with open(self.log, "w") as log:
                steps = [
                    [sys.executable, "-m", "venv", str(self.path)],
                    [str(self.bin("pip")), "install", "--disable-pip-version-check", "-q", "-r", str(self.constraints)],
                ]
                for cmd in steps:
                    log.write(f"$ {' '.join(cmd)}\n")
                    log.flush()
                    if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                        raise EnvError(f"{self.name}: environment build failed (log: {self.log})")
            (self.path / ".smo-complete").write_text(self.key + "\n")
        return self.path


LABEL_STUDIO_ENV = SideEnv("label-studio", CONSTRAINTS_DIR / "label-studio.txt")
ML_BACKEND_ENV = SideEnv("ml-backend", CONSTRAINTS_DIR / "ml-backend.txt")
BENCH_ENV = SideEnv("bench", CONSTRAINTS_DIR / "bench.txt")
SIDE_ENVS = (LABEL_STUDIO_ENV, ML_BACKEND_ENV)
