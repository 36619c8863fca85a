"""One daemon per output folder; the lock tells `status` whether a daemon is alive, even after kill -9."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mitotally.runtime.watch.lock import AlreadyRunning, FolderLock, is_locked


def test_second_holder_is_refused_and_release_frees(tmp_path):
    assert not is_locked(tmp_path)
    with FolderLock(tmp_path):
        assert is_locked(tmp_path)
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            FolderLock(tmp_path).acquire()
    assert not is_locked(tmp_path)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from mitotally.runtime.watch.lock import FolderLock
        FolderLock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        assert is_locked(tmp_path)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert not is_locked(tmp_path)
    finally:
        p.kill()
        p.wait()
