import os
import signal
import time

import pytest

from deband.errors import OutputError, OutputExistsError, SameFileError
from deband.io.outputs import atomic_output, check_output, same_file, terminate_as_interrupt


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_refuses_an_existing_output_unless_asked(tmp_path):
    dst = tmp_path / "out.png"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="already exists"), atomic_output(dst) as tmp:
        tmp.write_bytes(b"new")
    assert dst.read_bytes() == b"precious" and _names(tmp_path) == ["out.png"]
    with atomic_output(dst, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert dst.read_bytes() == b"new" and _names(tmp_path) == ["out.png"]


@pytest.mark.parametrize("link", ["same", "hard", "sym"])
def test_refuses_to_write_over_an_input(tmp_path, link):
    src = tmp_path / "in.png"
    src.write_bytes(b"input")
    dst = {"same": src, "hard": tmp_path / "hard.png", "sym": tmp_path / "sym.png"}[link]
    if link == "hard":
        os.link(src, dst)
    elif link == "sym":
        dst.symlink_to(src)
    assert same_file(src, dst)
    with pytest.raises(SameFileError), atomic_output(dst, overwrite=True, sources=[src]) as tmp:
        tmp.write_bytes(b"output")
    assert src.read_bytes() == b"input"


def test_missing_folder_and_folder_as_output(tmp_path):
    with pytest.raises(OutputError, match="output folder does not exist"):
        check_output(tmp_path / "missing" / "x.png")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path / "d.png", overwrite=True)
    assert not same_file(tmp_path / "nothing", tmp_path / "nothing")


def test_rename_on_success_keeps_the_usual_mode(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "out.tif") as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.partial-") and tmp.suffix == ".tif"
            tmp.write_bytes(b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "out.tif").stat().st_mode & 0o777 == 0o640
    assert _names(tmp_path) == ["out.tif"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_temporary_file_is_removed_on_failure(tmp_path, error):
    with pytest.raises(error), atomic_output(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"half")
        raise error("stop")
    assert _names(tmp_path) == []


def test_writer_that_removes_its_temporary_is_fine(tmp_path):
    with pytest.raises(OSError), atomic_output(tmp_path / "out.png") as tmp:
        tmp.unlink()
        raise OSError(28, "No space left on device")
    assert _names(tmp_path) == []


def test_an_unwritable_folder_is_an_output_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputError, match="cannot write there"):
            with atomic_output(folder / "x.png"):
                pass
    finally:
        folder.chmod(0o700)


def test_terminate_becomes_keyboard_interrupt_and_handler_is_restored(tmp_path):
    def previous(signum, frame):
        raise AssertionError("the previous handler must not run inside")

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with pytest.raises(KeyboardInterrupt), terminate_as_interrupt(), atomic_output(tmp_path / "o.png") as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not interrupt")
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)
    assert _names(tmp_path) == []


@pytest.mark.parametrize("to", ["the process", "another thread"])
def test_an_interrupt_while_the_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch, to):
    """The signal comes the instant the file exists: sent to the process, or to another thread
    (as the kernel may choose, e.g. an OpenMP worker's); either way the main thread is
    interrupted at its next instruction."""
    import threading

    from deband.io import outputs

    made, idle = outputs._made, threading.Event()
    other = threading.Thread(target=idle.wait)
    other.start()

    def and_interrupted(tmp):
        made(tmp)
        if to == "the process":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            signal.pthread_kill(other.ident, signal.SIGTERM)
            for _ in range(1000):  # the handler runs in the main thread at one of these instructions
                time.sleep(0.001)
        return True

    monkeypatch.setattr(outputs, "_made", and_interrupted)
    try:
        with pytest.raises(KeyboardInterrupt), terminate_as_interrupt(), atomic_output(tmp_path / "a.png") as tmp:
            tmp.write_bytes(b"never")
    finally:
        idle.set()
        other.join()
    assert _names(tmp_path) == []
