"""track/aheadwrite.py: the record store's thread-written file gives exactly the bytes handed over,
in order, whatever the kernel's writes do, and hands a failed write back to the caller.

The files are real files in tmp_path and the writes real writev(2) calls; where a test needs the
kernel to write less than asked, it caps each call and passes it on to the real one, and the one
error test lets the kernel itself refuse (RLIMIT_FSIZE) in a child process."""

import errno
import fcntl
import os
import random
import subprocess
import sys
import textwrap
import threading

import pytest

from dsrdiag.track import aheadwrite
from dsrdiag.track.aheadwrite import AheadWriter


def _open(path):
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def _writer_threads():
    return [t for t in threading.enumerate() if t.name == "dsrdiag-aheadwrite"]


def _pieces(seed, count, most):
    rnd = random.Random(seed)
    return [rnd.randbytes(rnd.randrange(0, most)) for _ in range(count)]


def test_every_byte_handed_over_is_in_the_file_in_order_across_many_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(aheadwrite, "CHUNK", 1000)  # many chunks, the queue full most of the time
    pieces = _pieces(1, 3000, 700)
    w = AheadWriter(_open(tmp_path / "f"))
    for p in pieces:
        w.write(p)
    assert w.pos == sum(map(len, pieces))
    w.close()
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)
    assert not _writer_threads()


def test_flush_makes_the_file_readable_up_to_pos_and_writing_goes_on_after_it(tmp_path, monkeypatch):
    monkeypatch.setattr(aheadwrite, "CHUNK", 4096)
    first, second = _pieces(2, 500, 300), _pieces(3, 500, 300)
    w = AheadWriter(_open(tmp_path / "f"))
    for p in first:
        w.write(p)
    w.flush()
    assert (tmp_path / "f").read_bytes() == b"".join(first)
    assert w.pos == os.path.getsize(tmp_path / "f")
    for p in second:
        w.write(p)
    w.close()
    assert (tmp_path / "f").read_bytes() == b"".join(first + second)


def test_more_pieces_than_one_writev_takes_are_written_in_groups(tmp_path, monkeypatch):
    calls = []
    real = os.writev

    def counting(fd, bufs):
        calls.append(len(bufs))
        return real(fd, bufs)

    monkeypatch.setattr(aheadwrite.os, "writev", counting)
    pieces = [bytes([i % 251]) * 3 for i in range(2500)]  # one chunk of 7,500 bytes in 2,500 pieces
    w = AheadWriter(_open(tmp_path / "f"))
    for p in pieces:
        w.write(p)
    w.close()
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)
    assert max(calls) <= aheadwrite._IOV_MAX and sum(calls) == 2500


@pytest.mark.parametrize("cap", [1, 7, 300, 4095])
def test_writes_the_kernel_cuts_short_resume_inside_the_piece_they_cut(tmp_path, monkeypatch, cap):
    real = os.writev

    def short(fd, bufs):  # the kernel takes at most `cap` bytes, cutting pieces anywhere
        out, left = [], cap
        for b in bufs:
            if not left:
                break
            b = memoryview(b)[:left]
            out.append(b)
            left -= len(b)
        return real(fd, out)

    monkeypatch.setattr(aheadwrite.os, "writev", short)
    monkeypatch.setattr(aheadwrite, "CHUNK", 5000)
    pieces = _pieces(4, 400, 120)
    w = AheadWriter(_open(tmp_path / "f"))
    for p in pieces:
        w.write(p)
    w.close()
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)


def test_a_write_that_makes_no_progress_is_an_error_not_an_endless_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(aheadwrite.os, "writev", lambda fd, bufs: 0)
    w = AheadWriter(_open(tmp_path / "f"))
    w.write(b"x" * 10)
    with pytest.raises(OSError) as e:
        w.close()
    assert e.value.errno == errno.EIO
    assert not _writer_threads()


def test_a_write_the_kernel_refuses_is_raised_in_the_caller_and_nothing_after_it_is_written(tmp_path):
    # a file size limit: the kernel writes up to it (a short write), then refuses with EFBIG
    script = textwrap.dedent(f"""
        import errno, os, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (9500, 9500))
        from dsrdiag.track import aheadwrite
        aheadwrite.CHUNK = 4096
        w = aheadwrite.AheadWriter(os.open({str(tmp_path / 'f')!r}, os.O_WRONLY | os.O_CREAT, 0o600))
        raised = None
        try:
            for i in range(100):
                w.write(bytes([i]) * 1000)
            w.flush()
        except OSError as e:
            raised = e.errno
        try:
            w.write(b"after")
            w.close()
        except OSError as e:
            raised = raised or e.errno
        print(raised)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(errno.EFBIG)
    data = (tmp_path / "f").read_bytes()
    assert data == b"".join(bytes([i]) * 1000 for i in range(10))[:9500]  # up to the limit, in order, no more


def test_discard_stops_the_thread_and_drops_what_was_not_yet_handed_on(tmp_path, monkeypatch):
    monkeypatch.setattr(aheadwrite, "CHUNK", 1 << 20)
    w = AheadWriter(_open(tmp_path / "f"))
    w.write(b"x" * 100)  # less than a chunk: still with the caller
    w.discard()
    assert w.closed and not _writer_threads()
    assert (tmp_path / "f").read_bytes() == b""
    w.discard()  # twice: nothing
    w.close()


def test_a_writer_that_never_filled_a_chunk_starts_no_thread_and_still_writes_on_close(tmp_path):
    w = AheadWriter(_open(tmp_path / "f"))
    w.write(b"abc")
    w.write(b"")
    assert not _writer_threads()
    w.close()
    assert (tmp_path / "f").read_bytes() == b"abc"
    assert w.pos == 3


def test_a_forked_copy_of_a_busy_writer_discards_without_waiting_and_refuses_to_write(monkeypatch):
    # a pipe nobody reads yet (64 KiB of buffer): the first chunk fills it, the thread blocks
    # writing the second, the third and fourth wait in the queue (full: the fourth's put returned
    # only once the thread had taken the second)
    monkeypatch.setattr(aheadwrite, "CHUNK", 1 << 16)
    r, wfd = os.pipe()
    fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 1 << 16)
    w = AheadWriter(wfd)
    for _ in range(4):
        w.write(b"q" * (1 << 16))
    pid = os.fork()
    if pid == 0:  # the copy: no thread, a full queue; discard must not wait for either
        code = 1
        try:
            try:
                w.write(b"x" * (1 << 16))
            except OSError as e:
                code = 0 if e.errno == errno.EBADF else 3
            w.discard()
        finally:
            os._exit(code)
    deadline = 100
    while deadline:  # bounded: 10 s
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        threading.Event().wait(0.1)
        deadline -= 1
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked copy hung in discard()")
    assert os.waitstatus_to_exitcode(status) == 0
    got = 0
    with os.fdopen(r, "rb") as f:  # now read: the parent's writer finishes
        def drain():
            nonlocal got
            while chunk := f.read(1 << 16):
                got += len(chunk)
        reader = threading.Thread(target=drain)
        reader.start()
        w.close()
        reader.join(10)
    assert got == 4 << 16
    assert not _writer_threads()


def test_a_failed_write_keeps_failing_at_every_later_call_and_close_still_closes(tmp_path, monkeypatch):
    def full(fd, bufs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(aheadwrite.os, "writev", full)
    monkeypatch.setattr(aheadwrite, "CHUNK", 16)
    fd = _open(tmp_path / "f")
    w = AheadWriter(fd)
    w.write(b"x" * 32)
    for call in (w.flush, lambda: w.write(b"y" * 32), w.flush, w.close):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.ENOSPC
    assert w.closed and not _writer_threads()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed: no descriptor left behind
    w.close()  # closed already: nothing


def test_writing_to_a_closed_writer_is_an_error_and_never_reaches_a_reused_descriptor(tmp_path):
    w = AheadWriter(_open(tmp_path / "a"))
    w.write(b"a")
    w.close()
    fd = _open(tmp_path / "b")  # likely the same descriptor number
    try:
        with pytest.raises(ValueError):
            w.write(b"STALE" * 1000)
        with pytest.raises(ValueError):
            w.flush()
    finally:
        os.close(fd)
    assert (tmp_path / "b").read_bytes() == b"" and not _writer_threads()


def test_an_error_that_is_not_an_oserror_in_the_thread_reaches_the_caller_instead_of_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(aheadwrite, "CHUNK", 4)
    w = AheadWriter(_open(tmp_path / "f"))
    w.write("text, not bytes")  # writev refuses it with a TypeError in the thread
    with pytest.raises(TypeError):
        for _ in range(10):  # bounded: the queue holds DEPTH; a dead thread would block here
            w.write(b"more bytes")
        w.flush()
    with pytest.raises(TypeError):
        w.close()
    assert not _writer_threads()


def test_discard_run_by_the_writer_thread_itself_neither_raises_nor_leaves_the_descriptor_open(tmp_path, monkeypatch):
    # a finalizer (the sink's) that the writer thread's own garbage collection happens to run,
    # while two more chunks wait in the queue
    real = os.writev
    queued = threading.Event()
    seen = {}

    def writev_then_discard(fd, bufs):
        queued.wait(10)
        n = real(fd, bufs)
        if not seen:
            seen["fd"] = fd
            try:
                w.discard()
            except BaseException as e:  # the failure this test exists for
                seen["error"] = e
        return n

    monkeypatch.setattr(aheadwrite.os, "writev", writev_then_discard)
    monkeypatch.setattr(aheadwrite, "CHUNK", 8)
    w = AheadWriter(_open(tmp_path / "f"))
    for i in range(3):  # the thread holds the first (waiting), the queue the other two
        w.write(b"%08d" % i)
    queued.set()
    for _ in range(100):  # bounded: 10 s for the thread to reach its end mark
        if not _writer_threads():
            break
        threading.Event().wait(0.1)
    assert "error" not in seen and w.closed
    assert not _writer_threads()
    assert (tmp_path / "f").read_bytes() == b"00000000"  # the two waiting were dropped
    with pytest.raises(OSError):
        os.fstat(seen["fd"])
