"""Per-browser-session state (held in a `gr.State`: users never see each other's models).

Each session has its own chosen backbone, its own generator (trained in the Train tab
or loaded from a checkpoint) and its own scratch folder for uploads and checkpoints.
Backbones themselves are shared read-only across sessions (see `demo.backbones`).

Scratch folders (`ScratchSpace`): one folder per app process (`<tmp>/pini-app/run-<pid>-<id>`),
one sub-folder per session. A session's folder is bounded ($PINI_APP_SESSION_MB, default 1024
MB; the oldest unpacked datasets and checkpoints go first), removed when the session has been
idle for $PINI_APP_SESSION_TTL seconds (default 3 h; this covers sessions created through the
REST API, which Gradio never closes), when Gradio deletes the session's state, and — the whole
process folder — when the server shuts down. Folders of app processes that no longer run are
removed when the next app starts.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from pini_core.errors import ConfigError, DataError

# All files the app writes live under one folder in the system temp dir, which Gradio
# may serve (only the files the app returns are copied to Gradio's cache and served).
APP_TMP = Path(tempfile.gettempdir()) / "pini-app"

ENV_SESSION_MB = "PINI_APP_SESSION_MB"  # disk bound per session, in MB
ENV_TOTAL_MB = "PINI_APP_TOTAL_MB"  # disk bound of all sessions of one app together, in MB
DEFAULT_TOTAL_MB = 10240
ENV_SESSION_TTL = "PINI_APP_SESSION_TTL"  # seconds of inactivity after which a session's files go
ENV_SWEEP_EVERY = "PINI_APP_SWEEP_S"  # how often the janitor looks for idle sessions (seconds)
DEFAULT_SESSION_MB = 1024
DEFAULT_SESSION_TTL = 3 * 3600
DEFAULT_SWEEP_EVERY = 60.0
KEEP_CHECKPOINTS = 3  # a session's newest checkpoint folders kept (older ones are already downloaded)
_RUN_DIR = re.compile(r"^run-(\d+)-[0-9a-f]+$")


def _env_number(name: str, default: float, what: str) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"${name} must be a number ({what}), got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"${name} must be positive ({what}), got {raw!r}")
    return value


def session_quota_bytes() -> int:
    """Disk bound of one session's scratch folder ($PINI_APP_SESSION_MB, default 1024 MB)."""
    return int(_env_number(ENV_SESSION_MB, DEFAULT_SESSION_MB, "megabytes per session") * 1024 * 1024)


def total_quota_bytes() -> int:
    """Disk bound of all sessions of one app together ($PINI_APP_TOTAL_MB, default 10240 MB)."""
    return int(_env_number(ENV_TOTAL_MB, DEFAULT_TOTAL_MB, "megabytes for all sessions") * 1024 * 1024)


def session_ttl_s() -> float:
    """Idle seconds after which a session's scratch folder is removed ($PINI_APP_SESSION_TTL)."""
    return _env_number(ENV_SESSION_TTL, DEFAULT_SESSION_TTL, "seconds")


def sweep_every_s() -> float:
    """Seconds between two looks of the janitor for idle sessions ($PINI_APP_SWEEP_S)."""
    return _env_number(ENV_SWEEP_EVERY, DEFAULT_SWEEP_EVERY, "seconds")


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (symbolic links are not followed)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            total += st.st_size
    return total


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Entry:
    last_used: float
    busy: int = 0
    expired: bool = False


class ScratchSpace:
    """One app process's scratch folders: `root/<session id>/<scratch folder>/...`.

    Thread-safe. `touch`/`busy` record activity; `sweep` removes folders of sessions idle
    longer than the TTL (never one that is running a request); `close` removes everything."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._entries: Dict[str, _Entry] = {}

    # --- activity -------------------------------------------------------------------
    def session_dir(self, sid: str) -> Path:
        """The session's folder (created; the session counts as active)."""
        self.touch(sid)
        d = self.root / sid
        d.mkdir(parents=True, exist_ok=True)
        return d

    def touch(self, sid: str) -> None:
        with self._lock:
            e = self._entries.setdefault(sid, _Entry(time.time()))
            e.last_used = time.time()
            e.expired = False

    @contextlib.contextmanager
    def busy(self, sid: str) -> Iterator[None]:
        """While inside, the session's folder is never swept (a request is using it)."""
        with self._lock:
            e = self._entries.setdefault(sid, _Entry(time.time()))
            e.busy += 1
            e.last_used = time.time()
        try:
            yield
        finally:
            with self._lock:
                e.busy -= 1
                e.last_used = time.time()
                remove = e.expired and e.busy == 0
            if remove:
                self._remove(sid)

    # --- removal --------------------------------------------------------------------
    def _remove(self, sid: str) -> None:
        with self._lock:
            e = self._entries.get(sid)
            if e is not None and e.busy:
                e.expired = True  # removed when its last request ends
                return
            self._entries.pop(sid, None)
        shutil.rmtree(self.root / sid, ignore_errors=True)

    def expire(self, sid: str) -> None:
        """The session is gone (Gradio deleted its state): remove its folder now, or when its
        running request ends."""
        self._remove(sid)

    def sweep(self, now: Optional[float] = None, ttl: Optional[float] = None) -> List[str]:
        """Remove the folders of sessions idle for more than `ttl` seconds (default: the
        configured TTL), and folders no session in this process knows about that are that old
        (e.g. left by a session whose state was never stored). Returns the removed ids."""
        now = time.time() if now is None else now
        ttl = session_ttl_s() if ttl is None else ttl
        removed = []
        with self._lock:
            idle = [sid for sid, e in self._entries.items() if not e.busy and now - e.last_used > ttl]
            known = set(self._entries)
        for sid in idle:
            self._remove(sid)
            removed.append(sid)
        if self.root.is_dir():
            for d in self.root.iterdir():
                if d.name in known or d.name in removed:
                    continue
                try:
                    old = now - d.stat().st_mtime > ttl
                except OSError:
                    continue
                if old:
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d.name)
        return removed

    def close(self) -> None:
        """Remove every scratch folder of this process (server shutdown)."""
        with self._lock:
            self._entries.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- disk bound -----------------------------------------------------------------
    def usage(self, sid: str) -> int:
        return folder_bytes(self.root / sid)

    def make_room(self, sid: str, nbytes: int, *, keep: tuple = ()) -> None:
        """Make sure `nbytes` more fit in the session's bound: remove its oldest unpacked
        datasets and checkpoint folders (not those named in `keep`), else DataError."""
        quota = session_quota_bytes()
        if nbytes > quota:
            raise DataError(f"This needs {nbytes / 2**20:.0f} MB of scratch space; each session may use "
                            f"{quota / 2**20:.0f} MB. Please upload fewer or smaller images.")
        d = self.root / sid
        if folder_bytes(d) + nbytes > quota:
            old = sorted((p for p in d.iterdir() if p.is_dir() and p.name.startswith(("data-", "ckpt"))
                          and p.name not in keep), key=lambda p: p.stat().st_mtime) if d.is_dir() else []
            for p in old:  # the session's own older unpacked zips and checkpoints go first
                shutil.rmtree(p, ignore_errors=True)
                if folder_bytes(d) + nbytes <= quota:
                    break
            else:
                raise DataError(f"Your session's scratch space is full ({quota / 2**20:.0f} MB per session). "
                                "Reload the page to start a new session.")
        if folder_bytes(self.root) + nbytes > total_quota_bytes():
            self.sweep()  # idle sessions first
            if folder_bytes(self.root) + nbytes > total_quota_bytes():
                raise DataError("The server's scratch space for all visitors is full right now. "
                                "Please try again later.")

    @staticmethod
    def remove_dead_runs(base: Path = APP_TMP) -> List[str]:
        """Remove `run-<pid>-*` folders of app processes that no longer run (a killed server)."""
        removed = []
        if not base.is_dir():
            return removed
        for d in base.iterdir():
            m = _RUN_DIR.match(d.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
        return removed


_SPACES: Dict[str, ScratchSpace] = {}
_SPACES_LOCK = threading.Lock()


def new_space(base: Path = APP_TMP) -> ScratchSpace:
    """A fresh scratch space for one app (`build_app` makes one per app)."""
    ScratchSpace.remove_dead_runs(base)
    space = ScratchSpace(base / f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with _SPACES_LOCK:
        _SPACES[str(space.root)] = space
    return space


def space_for(root: Optional[str]) -> ScratchSpace:
    """The scratch space at `root` (registered by `new_space`); the process default for None."""
    key = root or ""
    with _SPACES_LOCK:
        space = _SPACES.get(key)
        if space is None and key:
            space = _SPACES[key] = ScratchSpace(Path(key))
    if space is None:
        space = new_space()
        with _SPACES_LOCK:
            space = _SPACES.setdefault("", space)
    return space


@dataclass
class SessionState:
    backbone_spec: Optional[str] = None  # e.g. "embedded", "ViT-B-16:openai"
    method: Any = None  # a PiNIModel for `method_backbone`, or None
    method_label: str = ""  # where the generator came from, shown in the UI
    method_backbone: Optional[str] = None
    history: List[Dict[str, Any]] = field(default_factory=list)  # last training run's epochs
    eval_data: List[Any] = field(default_factory=list)  # held-out images of the generator's task
    scratch_root: Optional[str] = None  # the app's ScratchSpace root (set by build_app)
    _id: str = ""
    _stop: Any = None  # threading.Event, created lazily (an Event cannot be deep-copied)

    @property
    def session_id(self) -> str:
        """A random id for this session's scratch folder (made on first use)."""
        if not self._id:
            self._id = uuid.uuid4().hex[:16]
        return self._id

    @property
    def space(self) -> ScratchSpace:
        return space_for(self.scratch_root)

    @property
    def workdir(self) -> Path:
        return self.space.session_dir(self.session_id)

    @property
    def stop_event(self) -> threading.Event:
        if self._stop is None:
            self._stop = threading.Event()
        return self._stop

    def generator_for(self, backbone_spec: str):
        """The session's generator if it belongs to the backbone in use, else None."""
        if self.method is not None and self.method_backbone == backbone_spec:
            return self.method
        from demo import backbones
        from demo.shipped import shipped_generator

        if backbones.is_embedded(backbone_spec):  # fall back to the generator shipped for it
            shipped = shipped_generator(backbones.CACHE.get_loaded(backbone_spec))
            if shipped is not None:
                model, label, test = shipped
                self.method_label = self.method_label or label
                if not self.eval_data:
                    self.eval_data = test
                return model
        return None

    def set_generator(self, method, label: str, backbone_spec: str) -> None:
        self.method, self.method_label, self.method_backbone = method, label, backbone_spec

    def cleanup(self) -> None:
        """Remove the session's scratch folder (now, or when its running request ends)."""
        if self._id:
            self.space.expire(self._id)


def new_scratch_dir(session: SessionState, prefix: str) -> Path:
    """A new folder inside the session's scratch folder. Checkpoint folders beyond the newest
    KEEP_CHECKPOINTS are removed (their files were already handed to the browser)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=session.workdir))
    if prefix.startswith("ckpt"):
        olds = sorted((p for p in d.parent.iterdir() if p.is_dir() and p.name.startswith("ckpt") and p != d),
                      key=lambda p: p.stat().st_mtime)
        for p in olds[:max(0, len(olds) - (KEEP_CHECKPOINTS - 1))]:
            shutil.rmtree(p, ignore_errors=True)
    return d


def cleanup_session(session: Optional[SessionState]) -> None:
    """gr.State's delete_callback: the session ended (closed tab, expired state)."""
    if isinstance(session, SessionState):
        session.cleanup()


@contextlib.contextmanager
def in_use(*values: Any) -> Iterator[None]:
    """Mark every SessionState among `values` busy (its files are not swept meanwhile)."""
    with contextlib.ExitStack() as stack:
        for v in values:
            if isinstance(v, SessionState):
                stack.enter_context(v.space.busy(v.session_id))
        yield


def file_sha256(path: os.PathLike) -> str:
    """Hex SHA-256 of a file's content (read in 1 MB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def session_zip(session: SessionState, zip_path: os.PathLike):
    """The uploaded zip unpacked (and every image checked) in the session's scratch folder,
    as a `pini_core.uploads.ZipDataset`. The same zip content is unpacked once per session and
    reused by later runs (keyed by its SHA-256); unpacking another zip first makes room within
    the session's disk bound by removing older unpacked data. Raises UploadError / DataError
    with a message naming the user's files only. For the Train tab:

        ds = session_zip(state, zip_path)   # instead of check_zip_images(extract_image_zip(...))
    """
    from pini_core.uploads import check_zip_images, extract_image_zip, load_unpacked, zip_unpacked_bytes

    digest = file_sha256(zip_path)
    name = f"data-{digest[:20]}"
    space, sid = session.space, session.session_id
    with space.busy(sid):
        work = session.workdir
        final = work / name
        ds = load_unpacked(final)
        if ds is not None:
            os.utime(final)  # most recently used: evicted last
            return ds
        shown = os.path.basename(os.fspath(zip_path))
        space.make_room(sid, zip_unpacked_bytes(zip_path, shown=shown), keep=(name,))
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=work))
        try:
            ds = check_zip_images(extract_image_zip(zip_path, tmp / "d", shown=shown))
            if final.exists():  # an unfinished copy (no index file): replace it
                shutil.rmtree(final)
            os.replace(tmp / "d", final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        from pini_core.uploads import save_unpacked

        return save_unpacked(ds, final)
