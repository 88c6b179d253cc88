"""Sandboxes for running a submission's notebook kernel: bubblewrap, Linux namespaces, or none.

The grader (`labkit.course.grading`) runs every submitted notebook in a kernel started through
`Isolation.wrap`. Three levels, strongest first; `detect()` picks the strongest that works here:

``bwrap``
    Debian's bubblewrap (``apt-get install bubblewrap``). The kernel runs as uid 65534 in new
    user, PID, network, IPC, UTS and mount namespaces, with no capabilities and no network. Its
    filesystem is a fresh root holding only: the system folders (/usr, /bin, /lib...) and a few
    files of /etc, read-only; this Python, its venv and the course's ``labkit/``, ``datasets/``,
    ``checkpoints/`` and ``pyproject.toml``, read-only; its own copy of the notebook and its
    connection folder, writable; a private /tmp and /dev (/tmp and /dev/shm in memory, each at most
    ``View.tmp_bytes``). It sees no other submission, no grade file and no grader folder; its
    processes die with it (``--die-with-parent``, PID namespace).
``unshare``
    The same view built by this module with util-linux's ``unshare`` (user, PID, network, IPC,
    UTS and mount namespaces) and a chroot, then a second user namespace that drops to uid 65534
    with no capabilities. For machines with user namespaces but without bubblewrap.
``none``
    No sandbox: the kernel runs as the grader's own user, in its own session, in a private copy
    with a private HOME and TMPDIR and a scrubbed environment. It CAN read and write whatever
    that user can (other submissions, grade files), reach the network, and signal the grader's
    processes. The grader says so at the start of a batch and in every row it writes.

This file is also a script: ``python sandbox.py --enter PLAN -- COMMAND...`` is the step that
runs inside ``unshare`` (run by path, so that it does not import labkit, torch or matplotlib).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Isolation", "View", "LEVELS", "detect", "course_read_only_paths", "run_script_argv"]

LEVELS = ("bwrap", "unshare", "none")
"""Isolation levels, strongest first; "auto" in `detect` means the first of them that works."""

SANDBOX_UID = 65534
"""The user id (nobody) a sandboxed kernel runs as, inside its user namespace."""

# /etc holds secrets readable by root (and a sandbox's uid maps to the grader's user outside):
# only these entries, all world-readable on Debian, are shown to the kernel.
ETC_ENTRIES = ("passwd", "group", "nsswitch.conf", "hosts", "host.conf", "localtime", "ld.so.cache",
               "ld.so.conf", "ld.so.conf.d", "fonts", "ssl", "ca-certificates", "mime.types", "alternatives")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

RUNPY = "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"
"""`python -c RUNPY FILE ARGS...` runs FILE as a script without importing the labkit package."""


def run_script_argv(script: str | Path, *args: str, python: str | None = None) -> list[str]:
    """The command that runs `script` (a file of this package) with `args` as a plain script."""
    return [python or sys.executable, "-c", RUNPY, str(script), *args]


@dataclass
class View:
    """What a sandboxed command sees: folders shown read-only, folders it may write, where it starts.

    workdir: its current folder (writable). writable: more writable folders (same path inside).
    read_only: files and folders shown read-only at the same path. Everything else is absent.
    scratch: an empty folder of the grader's, the unshare level's mount point for the new root.
    tmp_bytes: the most its private /tmp and /dev/shm (each a tmpfs: in memory) may hold;
    0: the system's default (half the machine's memory each).
    """

    workdir: Path
    scratch: Path
    writable: list[Path] = field(default_factory=list)
    read_only: list[Path] = field(default_factory=list)
    tmp_bytes: int = 0


def course_read_only_paths() -> list[Path]:
    """What a notebook of the course needs to read: this Python, its venv and packages, the
    course's labkit package, its datasets, checkpoints and pyproject.toml (those that exist)."""
    paths: list[Path] = []
    for value in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  str(Path(sys.executable).resolve().parent.parent)):
        paths.append(Path(value).resolve())
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if found := sysconfig.get_paths().get(key):
            paths.append(Path(found).resolve())
    labkit_dir = Path(__file__).resolve().parent.parent  # labkit/ (this file is labkit/course/sandbox.py)
    course = labkit_dir.parent
    paths += [labkit_dir, course / "datasets", course / "checkpoints", course / "pyproject.toml"]
    if data_dir := os.environ.get("LABKIT_DATA_DIR"):
        paths.append(Path(data_dir).resolve())
    return _outermost(p for p in paths if p.exists())


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths, without duplicates and without those inside another one of them, shortest first."""
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: (len(p.parts), str(p))):
        if path == Path("/"):
            continue  # never show the whole machine
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def _mount_plan(view: View) -> list[list[str]]:
    """The view as operations, in order: ["tmpfs", dest], ["dev", dest], ["proc", dest],
    ["ro-bind", src, dest], ["bind", src, dest], ["symlink", target, dest]."""
    ops: list[list[str]] = [["dev", "/dev"], ["proc", "/proc"], ["tmpfs", "/tmp"], ["tmpfs", "/dev/shm"]]
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            ops.append(["symlink", os.readlink(path), name])
        elif path.is_dir():
            ops.append(["ro-bind", name, name])
    for name in ETC_ENTRIES:
        path = Path("/etc") / name
        if path.exists():
            ops.append(["ro-bind", str(path), str(path)])
    system = [Path(op[2]) for op in ops if op[0] == "ro-bind"]
    for path in _outermost(view.read_only):
        if not any(path.is_relative_to(s) for s in system):
            ops.append(["ro-bind", str(path), str(path)])
    for path in [view.workdir, *view.writable]:
        ops.append(["bind", str(path), str(path)])
    return ops


@dataclass(frozen=True)
class Isolation:
    """An isolation level (`LEVELS`) and what it means, in words for the batch's first line."""

    name: str
    summary: str
    why: str = ""
    """For a level chosen by "auto" below the strongest: why the stronger ones did not work here."""

    def wrap(self, argv: Sequence[str], view: View) -> list[str]:
        """`argv` as run inside this level's sandbox, seeing only `view` (unchanged for "none")."""
        if self.name == "bwrap":
            return [*_bwrap_args(view), "--", *argv]
        if self.name == "unshare":
            plan = {"root": str(view.scratch), "ops": _mount_plan(view), "chdir": str(view.workdir),
                    "tmp_bytes": view.tmp_bytes}
            return ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--net", "--ipc", "--uts",
                    "--kill-child", "--propagation", "private", "--",
                    *run_script_argv(__file__, "--enter", json.dumps(plan), "--"), *argv]
        return list(argv)

    def __str__(self) -> str:
        return f"{self.name}: {self.summary}" + (f" [{self.why}]" if self.why else "")


def _bwrap_args(view: View) -> list[str]:
    args = ["bwrap", "--unshare-all", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--hostname", "grading", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    flags = {"ro-bind": "--ro-bind", "bind": "--bind", "symlink": "--symlink"}
    for op in _mount_plan(view):
        if op[0] == "tmpfs" and view.tmp_bytes:
            args += ["--size", str(view.tmp_bytes)]  # applies to the next --tmpfs (bubblewrap ≥ 0.5)
        if op[0] in ("dev", "proc", "tmpfs"):
            args += [f"--{op[0]}", op[1]]
        else:
            args += [flags[op[0]], op[1], op[2]]
    return [*args, "--chdir", str(view.workdir)]


_SUMMARIES = {
    "bwrap": ("bubblewrap: each notebook's kernel runs as uid 65534 in its own user, PID, network, IPC and "
              "mount namespaces, with no network and no capabilities; it sees only the system folders, this "
              "Python and the course's labkit, datasets and checkpoints (read-only), its own copy of the "
              "notebook and a private /tmp: no other submission, no grades, no grader folder"),
    "unshare": ("Linux namespaces (unshare): each notebook's kernel runs as uid 65534 in its own user, PID, "
                "network, IPC and mount namespaces, with no network and no capabilities; it sees only the "
                "system folders, this Python and the course's labkit, datasets and checkpoints (read-only), "
                "its own copy of the notebook and a private /tmp: no other submission, no grades, no grader folder"),
    "none": ("NO SANDBOX: each notebook's kernel runs as "
             "this user ({user}) in its own session, in a private copy with a private HOME and TMPDIR, and "
             "every process it starts is killed afterwards; but it CAN read and write whatever {user} can "
             "(other submissions, grade files), use the network, and signal the grader. Install bubblewrap "
             "(apt-get install bubblewrap) before grading work you do not trust"),
}

_DETECTED: dict[str, Isolation | str] = {}


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.getuid()}"


def _probe(level: str) -> str:
    """"" if `level` can run this Python in a sandbox here, else why not (one line)."""
    if level == "none":
        return ""
    tool = "bwrap" if level == "bwrap" else "unshare"
    if shutil.which(tool) is None:
        return f"{tool} is not installed" + (" (apt-get install bubblewrap)" if tool == "bwrap" else "")
    with tempfile.TemporaryDirectory(prefix="labkit-sandbox-probe-") as folder:
        work, scratch = Path(folder) / "work", Path(folder) / "root"
        work.mkdir()
        scratch.mkdir()
        # a sized /tmp, as the grader asks for: a bubblewrap too old for --size fails here, not in a run
        view = View(workdir=work, scratch=scratch, read_only=course_read_only_paths(), tmp_bytes=2**26)
        probe = f"import os, socket; assert os.getuid() == {SANDBOX_UID:d}; open('ok', 'w').write(str(os.getpid()))"
        argv = Isolation(level, "").wrap([sys.executable, "-c", probe], view)
        try:
            done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{tool} failed to start ({type(error).__name__}: {error})"
        if done.returncode != 0 or not (work / "ok").exists():
            lines = (done.stderr or done.stdout).strip().splitlines()
            return f"{tool} could not run a sandboxed Python (exit {done.returncode}: {lines[-1] if lines else 'no message'})"
    return ""


def detect(requested: str = "auto") -> Isolation:
    """The isolation level to grade with: `requested` ("bwrap", "unshare", "none"), or for "auto"
    the strongest that works on this machine. A requested level that does not work raises
    RuntimeError saying why; the result of each probe is kept for the rest of the process."""
    if requested not in ("auto", *LEVELS):
        raise ValueError(f"isolation must be one of auto, {', '.join(LEVELS)}; got {requested!r}")
    reasons: list[str] = []
    for level in LEVELS if requested == "auto" else (requested,):
        if level not in _DETECTED:
            problem = _probe(level)
            _DETECTED[level] = problem or Isolation(level, _SUMMARIES[level].format(user=_user()))
        found = _DETECTED[level]
        if isinstance(found, Isolation):
            return Isolation(found.name, found.summary, "; ".join(reasons)) if reasons else found
        reasons.append(f"{level}: {found}")
    raise RuntimeError(f"isolation {requested!r} does not work on this machine ({'; '.join(reasons)}); "
                       "install bubblewrap (apt-get install bubblewrap), or choose another --isolation")


# --------------------------------------------------------------------------- inside unshare

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_NOATIME, _MS_NODIRATIME, _MS_BIND, _MS_REC, _MS_PRIVATE, _MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
_ST_TO_MS = {1: _MS_RDONLY, 2: _MS_NOSUID, 4: _MS_NODEV, 8: _MS_NOEXEC, 1024: _MS_NOATIME,
             2048: _MS_NODIRATIME, 4096: _MS_RELATIME}
_CLONE_NEWUSER = 0x10000000
_PR_SET_NO_NEW_PRIVS, _PR_SET_DUMPABLE = 38, 4


class _Sandbox:
    """The steps `unshare` cannot do itself: build the new root with mount(2), chroot into it,
    then leave the namespace's root user for uid 65534 in a nested user namespace."""

    def __init__(self, root: str) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.root = root

    def mount(self, source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        encode = lambda s: s.encode() if s is not None else None  # noqa: E731
        if self.libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"mount {source} on {target} failed: {os.strerror(error)}")

    def inside(self, dest: str) -> str:
        return self.root + dest

    def mount_point(self, dest: str, like: str | None = None) -> str:
        target = self.inside(dest)
        if like is not None and not os.path.isdir(like):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        else:
            os.makedirs(target, exist_ok=True)
        return target

    def bind(self, source: str, dest: str, read_only: bool) -> None:
        target = self.mount_point(dest, like=source)
        self.mount(source, target, None, _MS_BIND | _MS_REC)
        if read_only:  # keep the flags the source mount has (a user namespace may not clear them)
            st_flags = os.statvfs(source).f_flag
            kept = sum(ms for st, ms in _ST_TO_MS.items() if st_flags & st)
            self.mount("none", target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | kept)

    def build(self, ops: list[list[str]], tmp_bytes: int = 0) -> None:
        self.mount("none", "/", None, _MS_REC | _MS_PRIVATE)
        self.mount("tmpfs", self.root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
        for op in ops:
            kind, dest = op[0], op[-1]
            if kind == "tmpfs":
                size = f",size={tmp_bytes}" if tmp_bytes else ""
                self.mount("tmpfs", self.mount_point(dest), "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777" + size)
            elif kind == "dev":
                self.mount("tmpfs", self.mount_point(dest), "tmpfs", _MS_NOSUID, "mode=0755")
                for name in DEVICES:
                    if os.path.exists(f"/dev/{name}"):
                        self.bind(f"/dev/{name}", f"{dest}/{name}", read_only=False)
                for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                                     ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
                    os.symlink(target, self.inside(f"{dest}/{name}"))
            elif kind == "proc":
                self.mount("proc", self.mount_point(dest), "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
                for name in ("sys", "sysrq-trigger", "irq", "bus"):
                    path = self.inside(f"{dest}/{name}")
                    if os.path.exists(path):
                        self.bind(path, f"{dest}/{name}", read_only=True)
            elif kind == "symlink":
                os.makedirs(os.path.dirname(self.inside(dest)), exist_ok=True)
                os.symlink(op[1], self.inside(dest))
            elif kind in ("ro-bind", "bind"):
                self.bind(op[1], dest, read_only=kind == "ro-bind")
            else:
                raise ValueError(f"unknown mount operation {op!r}")

    def drop_to_nobody(self) -> None:
        """Enter a new user namespace where this process is uid/gid 65534: no capabilities after exec."""
        if self.libc.unshare(_CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER) failed")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{SANDBOX_UID} 0 1"), ("gid_map", f"{SANDBOX_UID} 0 1")):
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)
        if self.libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _enter(plan: dict, argv: list[str]) -> int:
    """Inside `unshare` (as its PID 1): build the view, start `argv` chrooted into it as uid 65534,
    and reap orphans until it ends. PID 1 keeps the namespace's root user, so it makes itself
    non-dumpable: the sandboxed processes may not ptrace it or read its /proc entries."""
    sandbox = _Sandbox(plan["root"])
    sandbox.build(plan["ops"], int(plan.get("tmp_bytes", 0)))
    if sandbox.libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")
    child = os.fork()
    if child == 0:
        try:
            sandbox.libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # its /proc/self files must be its own again
            os.setsid()
            sandbox.drop_to_nobody()  # before chroot: a chrooted process may not create a user namespace
            os.chroot(plan["root"])
            os.chdir(plan["chdir"])
            os.execvp(argv[0], argv)
        except BaseException as error:  # noqa: BLE001 - report anything, then leave
            print(f"labkit sandbox: could not start {argv[0]}: {error}", file=sys.stderr, flush=True)
        os._exit(127)
    os.chroot(plan["root"])
    os.chdir("/")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, lambda s, _frame: os.kill(child, s))
    while True:  # PID 1 adopts every orphan: reap them until the command itself ends
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == child:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "--enter" or sys.argv[3] != "--":
        print("usage: sandbox.py --enter PLAN_JSON -- COMMAND [ARGS...] (run by labkit's grader inside unshare)",
              file=sys.stderr)
        raise SystemExit(2)
    try:
        code = _enter(json.loads(sys.argv[2]), sys.argv[4:])
    except OSError as error:
        print(f"labkit sandbox: {error}", file=sys.stderr, flush=True)
        code = 125
    os._exit(code)
