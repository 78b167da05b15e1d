"""meterctl whose reader goes away (``| head``) ends quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from meterd.policy.request import Outcome
from meterd.seclog import EventType, LogConfig, SecurityLog

CONFIG = LogConfig(append_only_attr=False)


def test_output_piped_into_head_ends_without_a_traceback(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    SecurityLog.init(directory, CONFIG)
    with SecurityLog.open(directory, CONFIG) as log:
        for n in range(1500):  # far more than a pipe buffers
            log.append(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR, detail={"n": n})
    pipeline = f"{sys.executable} -m meterd.cli.meterctl log show --dir {directory} --json | head -c 10"
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr
    assert "BrokenPipeError" not in done.stderr
    assert len(done.stdout) == 10
