"""`deband serve` in a process of its own, for the tests that talk to a real server."""

import re
import subprocess
import sys
import threading
import time
import urllib.request


def start_server(*args: str, deadline: float = 60.0) -> tuple[subprocess.Popen, str]:
    """`deband serve --port 0 ...` in a process of its own; returns it and its URL once it answers.

    What it says on stderr is collected in `proc.said` (lines) by a reader thread, `proc.reader`.
    """
    cmd = [sys.executable, "-m", "deband.cli", "serve", "--port", "0", "--device", "cpu", *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    proc.said = []
    proc.reader = threading.Thread(target=lambda: proc.said.extend(proc.stderr), daemon=True)
    proc.reader.start()
    end = time.monotonic() + deadline
    url = None
    while time.monotonic() < end:
        found = re.search(r"serving (http://\S+/)", "".join(proc.said))
        if found and url is None:
            url = found.group(1)
        if url is not None:
            try:
                with urllib.request.urlopen(url + "api/limits", timeout=5) as r:
                    if r.status == 200:
                        return proc, url
            except OSError:
                pass
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {''.join(proc.said)}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the server did not answer in {deadline} s: {''.join(proc.said)}")
