"""Where a result came from: date, commit and machine, for the result files."""

import datetime
import os
import platform
import subprocess


def describe():
    """`{"date", "commit", "machine"}` of this run (commit None outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True,
                                cwd=os.path.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"date": datetime.date.today().isoformat(), "commit": commit,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{platform.system()} {platform.python_version()}"}
