#!/usr/bin/python3
"""PTY relay for the E2B test server (Node has no pty in its standard library).

Usage (started by lib/process.js, never by hand):
  python3 -I pty_helper.py ROOT UID GID GROUPS CWD COLS ROWS -- CMD [ARGS...]

Allocates a pseudo-terminal, forks a child that becomes a session leader with
the pty as its controlling terminal, chroots into ROOT, changes to CWD, drops
to UID/GID/GROUPS (comma-separated) and runs CMD through `/bin/sh -c 'exec
"$@"'` (like envd). The parent relays bytes:
  fd 0 (from the server)  -> pty master   (input)
  pty master              -> fd 1         (output)
  fd 3 is a control socket: the helper first writes "pid <child pid>\\n";
       the server writes "resize <cols> <rows>\\n" lines.
When the child exits, remaining output is drained and the helper exits with
the child's exit status, or kills itself with the child's terminating signal.
"""

import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios


def set_winsize(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        data = data[n:]


def child(slave, master, root, uid, gid, groups, cwd, argv):
    try:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
        os.closerange(3, 1024)
        os.chroot(root)
        try:
            os.chdir(cwd)
        except OSError:
            os.chdir("/")
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        for s in (signal.SIGPIPE, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        os.execve("/bin/sh", ["/bin/sh", "-c", 'exec "$@"', "sh"] + argv, dict(os.environ))
    except BaseException as e:  # noqa: BLE001 - report anything, then exit
        try:
            os.write(2, ("pty_helper: %s\n" % e).encode())
        finally:
            os._exit(127)


def main():
    args = sys.argv[1:]
    if "--" not in args or args.index("--") != 7:
        sys.stderr.write(__doc__)
        return 2
    root, uid, gid, groups, cwd, cols, rows = args[:7]
    argv = args[8:]
    uid, gid, cols, rows = int(uid), int(gid), int(cols), int(rows)
    groups = [int(g) for g in groups.split(",") if g]

    master, slave = os.openpty()
    if cols > 0 and rows > 0:
        set_winsize(slave, cols, rows)
    pid = os.fork()
    if pid == 0:
        child(slave, master, root, uid, gid, groups, cwd, argv)
    os.close(slave)

    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ctl = 3
    try:
        write_all(ctl, b"pid %d\n" % pid)
    except OSError:
        ctl = -1

    status = None
    inputs = [master, 0] + ([ctl] if ctl >= 0 else [])
    ctl_buf = b""
    master_open = True
    while master_open:
        timeout = 0.05 if status is not None else 1.0
        try:
            readable, _, _ = select.select(inputs, [], [], timeout)
        except InterruptedError:
            continue
        if status is None:
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = st
        if not readable:
            if status is not None:
                break  # child gone and nothing left to read
            continue
        if master in readable:
            try:
                data = os.read(master, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                master_open = False
            else:
                try:
                    write_all(1, data)
                except OSError:
                    os.killpg(pid, signal.SIGHUP)
                    master_open = False
        if 0 in readable:
            data = os.read(0, 65536)
            if not data:
                inputs.remove(0)  # server closed our stdin; the pty stays open
            else:
                write_all(master, data)
        if ctl >= 0 and ctl in readable:
            data = os.read(ctl, 4096)
            if not data:
                inputs.remove(ctl)
            ctl_buf += data
            while b"\n" in ctl_buf:
                line, ctl_buf = ctl_buf.split(b"\n", 1)
                parts = line.decode(errors="replace").split()
                if len(parts) == 3 and parts[0] == "resize":
                    set_winsize(master, int(parts[1]), int(parts[2]))

    os.close(master)
    if status is None:
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


if __name__ == "__main__":
    sys.exit(main())
