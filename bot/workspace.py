"""Git, through GitPython: the target repository, a worktree per run, commits and branches.

The user's checkout is never modified: files are read from the base commit's objects, work
happens in a detached worktree in a temporary directory, and the only visible change is the
rotation branch (created in place for a local path, pushed for a remote).  No credential is
written into any git config: pushes get an auth header through the environment of that one
command.

Nothing the repository's own config names is executed: every git command the bot runs on a
checkout or worktree gets `-c` overrides that switch off hooks (`core.hooksPath`), fsmonitor,
filter drivers (clean, smudge, process) and diff drivers (textconv, command) whatever their
names, credential helpers, `core.sshCommand` and `core.askPass` set by the repository, file and
ext transports for anything but a direct request, submodule recursion and automatic gc (which
would rewrite the user's packs); no command takes optional locks (`GIT_OPTIONAL_LOCKS=0`).

Temporary directories (worktrees, and the scratch directory holding the npm userconfig) live in
one directory per process, `<tmp>/rotation-bot-<host>-pid<PID>-…` (`private_temp_root`); the
next process removes those whose PID is gone and prunes their stale `git worktree` entries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git

from bot.config import check_branch_name
from bot.errors import ManifestError, RepositoryError, ServiceUnavailable, redact
from bot.limits import check_size, decode_file, describe_size

log = logging.getLogger(__name__)

BOT_NAME = "rotation-bot"
BOT_EMAIL = "rotation-bot@users.noreply.github.com"
_OWNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_AUTHOR_NAME": BOT_NAME,
    "GIT_AUTHOR_EMAIL": BOT_EMAIL,
    "GIT_COMMITTER_NAME": BOT_NAME,
    "GIT_COMMITTER_EMAIL": BOT_EMAIL,
}
# Always: nothing the checkout's config names may run, and nothing may rewrite its objects.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "protocol.file.allow=user",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
)
# Driver programs, whichever scope names them: (key pattern, the value that switches it off).
_DRIVERS = (
    (re.compile(r"^filter\..+\.(clean|smudge|process)$"), ""),
    (re.compile(r"^filter\..+\.required$"), "false"),
    (re.compile(r"^diff\..+\.(textconv|command)$"), ""),
    (re.compile(r"^merge\..+\.driver$"), ""),
)
# Programs only the operator may choose: switched off when the repository's config sets them.
_REPOSITORY_SCOPES = frozenset({"local", "worktree"})
_OPERATOR_ONLY = (
    (re.compile(r"^core\.sshcommand$"), "ssh"),
    (re.compile(r"^core\.askpass$"), ""),
    (re.compile(r"^credential\.(.+\.)?helper$"), ""),
)


_SYMLINK_MODE = 0o120000


def _not_a_checkout(path: Path) -> str:
    """Why `path` cannot be opened, and what to pass instead when it is inside a checkout."""
    try:
        top = git.Repo(path, search_parent_directories=True).working_tree_dir
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        top = None
    if top is None:
        return f"{path} is not a git repository; pass a checkout, a git URL or owner/name"
    inside = Path(path).resolve().relative_to(Path(top).resolve())
    return (
        f"{path} is inside the checkout {top}: pass --repo {top} (rotation-bot finds every "
        f"project in the repository; to rotate only this one, set runbooks.sharp.directories: "
        f'["{inside.as_posix()}/"] in .github/rotation-bot.yml)'
    )


def is_owner_name(value: str) -> bool:
    """Whether `value` looks like `owner/name` (a repository on the forge)."""
    return bool(_OWNER_NAME.match(value)) and not Path(value).exists()


def safe_config(repo: git.Repo) -> list[str]:
    """The `-c key=value` overrides that keep git from running anything `repo`'s config names."""
    try:  # `git config` only reads files; nothing it lists is run
        listing: str = repo.git.config("--list", "--show-scope", "--name-only", "-z")
    except git.GitCommandError as error:
        raise RepositoryError(
            f"{repo.git_dir}: cannot read the repository's git config ({_last_line(error)}); "
            "fix it with `git config --edit`"
        ) from error
    fields = listing.split("\0")
    overrides = dict(item.split("=", 1) for item in _SAFE_CONFIG)
    for scope, key in zip(fields[::2], fields[1::2], strict=False):
        for pattern, value in _DRIVERS + (_OPERATOR_ONLY if scope in _REPOSITORY_SCOPES else ()):
            if pattern.match(key):
                if "=" in key or "\n" in key:
                    raise RepositoryError(
                        f"{repo.git_dir}: config key {key!r} cannot be overridden (it contains "
                        "'='); rename that driver in the repository's .git/config"
                    )
                overrides[key] = value
    return [f"{key}={value}" for key, value in overrides.items()]


def _prepare(repo: git.Repo, options: list[str] | None = None) -> list[str]:
    """Give `repo`'s git commands the bot's environment and the safe overrides; returns them."""
    repo.git.update_environment(**_GIT_ENV)
    chosen = options if options is not None else safe_config(repo)
    repo.git.set_persistent_git_options(c=chosen)
    return chosen


# --- temporary directories -------------------------------------------------------------------

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_ROOT = re.compile(rf"^rotation-bot-{_HOST}-pid(\d+)-")


def temp_root_prefix(pid: int) -> str:
    """The name prefix of process `pid`'s temporary directory on this host."""
    return f"rotation-bot-{_HOST}-pid{pid}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_temp_roots(parent: Path) -> list[Path]:
    """Remove this host's and this user's `rotation-bot-…-pid<PID>-…` directories in `parent`
    whose process is gone (killed before it could clean up); returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_ROOT.match(entry.name)
        try:
            if match is None or entry.is_symlink() or not entry.is_dir():
                continue
            if entry.stat().st_uid != os.getuid() or _alive(int(match.group(1))):
                continue
        except OSError:  # removed meanwhile by another process sweeping
            continue
        shutil.rmtree(entry, ignore_errors=True)
        log.warning("removed the temporary directory of a killed run", extra={"path": str(entry)})
        removed.append(entry)
    return removed


@contextmanager
def private_temp_root(parent: Path | None = None) -> Iterator[Path]:
    """This process's temporary directory, made the default for every temporary directory the
    bot creates (`tempfile.tempdir`), and removed when the block ends (on a signal too, as the
    stack unwinds).  Directories left behind by killed processes are removed first."""
    base = parent or Path(tempfile.gettempdir())
    sweep_temp_roots(base)
    try:
        root = Path(tempfile.mkdtemp(prefix=temp_root_prefix(os.getpid()), dir=base))
    except OSError as error:
        raise ServiceUnavailable(
            f"cannot create a temporary directory in {base} ({error.strerror}); free space "
            "there or point TMPDIR at a writable directory"
        ) from error
    previous = tempfile.tempdir
    tempfile.tempdir = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class ForeignCommit:
    """A commit on one of the bot's branches that someone else made."""

    sha: str
    author_name: str
    author_email: str


@dataclass(frozen=True)
class PushAuth:
    """An HTTP auth header for one push or fetch, passed through the environment only."""

    header: str

    def environment(self) -> dict[str, str]:
        """`GIT_CONFIG_*` variables that add the header for this command alone."""
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": self.header,
        }


class Workspace:
    """One target repository: read at the base commit, change in worktrees, publish branches."""

    def __init__(
        self,
        repo: git.Repo,
        *,
        name: str,
        local: bool,
        base_branch: str,
        auth: PushAuth | None,
        git_options: list[str] | None = None,
    ) -> None:
        self.git_options = _prepare(repo, git_options)
        self.repo = repo
        self.name = name
        self.local = local
        self.base_branch = base_branch
        self.auth = auth
        try:
            check_branch_name(base_branch)
        except ValueError as error:
            raise RepositoryError(f"{name}: base {error}") from None
        try:  # refs/heads/… exactly: never a tag, a commit or a revision expression
            self.base_commit = repo.commit(f"refs/heads/{base_branch}").hexsha
        except (git.BadName, ValueError) as error:
            raise RepositoryError(
                f"{name}: base branch {base_branch!r} does not exist or has no commits; "
                "create it or fix pull-requests.base in .github/rotation-bot.yml"
            ) from error

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open_local(cls, path: Path, *, base: str | None = None) -> Workspace:
        """A local checkout; the base is `base` or the checked-out branch."""
        try:
            repo = git.Repo(path)
        except git.NoSuchPathError as error:
            raise RepositoryError(
                f"{path} is not a git repository; pass a checkout, a git URL or owner/name"
            ) from error
        except git.InvalidGitRepositoryError as error:
            raise RepositoryError(_not_a_checkout(path)) from error
        if base is None:
            if repo.head.is_detached:
                raise RepositoryError(
                    f"{path}: HEAD is detached; check out a branch, or set pull-requests.base "
                    "in .github/rotation-bot.yml"
                )
            base = repo.active_branch.name
        return cls(repo, name=str(Path(path).resolve()), local=True, base_branch=base, auth=None)

    @classmethod
    def open_remote(
        cls,
        url: str,
        *,
        cache_dir: Path,
        name: str | None = None,
        base: str | None = None,
        auth: PushAuth | None = None,
    ) -> Workspace:
        """A remote repository, cloned (bare) into the cache once and fetched on every run."""
        target = cache_dir / hashlib.sha256(url.encode()).hexdigest()[:24]
        environment = {**_GIT_ENV, **(auth.environment() if auth else {})}
        try:
            if not (target / "HEAD").exists():
                cache_dir.mkdir(parents=True, exist_ok=True)
                git.Repo.clone_from(url, target, bare=True, env=environment)
            repo = git.Repo(target)
            repo.git.fetch(url, "+refs/heads/*:refs/heads/*", "--prune", "--force", env=environment)
        except git.GitCommandError as error:
            raise ServiceUnavailable(
                f"cannot fetch {redact(url)} ({_last_line(error)}); check the URL and access"
            ) from error
        if base is None:
            base = repo.git.symbolic_ref("HEAD", "--short")
        return cls(repo, name=name or url, local=False, base_branch=base, auth=auth)

    def with_base(self, branch: str) -> Workspace:
        """The same repository, based on another branch (the repo config's `pull-requests.base`)."""
        if branch == self.base_branch:
            return self
        return Workspace(
            self.repo,
            name=self.name,
            local=self.local,
            base_branch=branch,
            auth=self.auth,
            git_options=self.git_options,
        )

    # --- reading at the base commit ----------------------------------------------------

    def read_text(self, path: str) -> str | None:
        """A file's text at the base commit, or None when it does not exist there.

        A symlink (never followed: it could name a file outside the repository), a file over its
        kind's size cap (checked before it is read), not UTF-8, or JSON nested too deep is a
        one-line `ManifestError` (`ConfigError` for configs) naming it."""
        try:
            blob = self.repo.commit(self.base_commit).tree / path
        except KeyError:
            return None
        if not isinstance(blob, git.Blob):
            return None
        if blob.mode == _SYMLINK_MODE:
            raise ManifestError(
                f"{path} is a symlink in the repository; rotation-bot does not follow links: "
                "commit the file itself"
            )
        kind = check_size(path, blob.size)
        data: bytes = blob.data_stream.read()
        return decode_file(path, data, kind)

    def tracked_files(self) -> list[str]:
        """Every file path at the base commit."""
        listing: str = self.repo.git.ls_tree("-r", "--name-only", "-z", self.base_commit)
        return [path for path in listing.split("\0") if path]

    def branch_commit(self, branch: str) -> str | None:
        """The commit a branch points at, or None."""
        try:
            return self.repo.commit(f"refs/heads/{branch}").hexsha
        except (git.BadName, ValueError):
            return None

    def foreign_commit(self, branch: str) -> ForeignCommit | None:
        """The newest commit on `branch` (and not on the base) that the bot did not commit:
        someone else pushed to the bot's branch.  None when every such commit is the bot's."""
        tip = self.branch_commit(branch)
        if tip is None:
            return None
        listing: str = self.repo.git.log(
            "--format=%H%x00%an%x00%ae%x00%ce", f"{self.base_commit}..{tip}", "--"
        )
        for line in listing.splitlines():
            sha, name, email, committer = line.split("\0")
            if committer != BOT_EMAIL:
                return ForeignCommit(sha, name, email)
        return None

    def conflicts(self, branch: str) -> bool:
        """Whether merging `branch` into the base would conflict (`git merge-tree`, in memory:
        nothing is checked out or written to a ref)."""
        tip = self.branch_commit(branch)
        if tip is None:
            return False
        try:
            self.repo.git.merge_tree("--write-tree", "--no-messages", self.base_commit, tip)
        except git.GitCommandError as error:
            if error.status == 1:
                return True
            raise RepositoryError(
                f"{self.name}: cannot compare {branch} with the base ({_last_line(error)})"
            ) from error
        return False

    def contains_base(self, branch: str) -> bool:
        """Whether `branch` already contains the base commit (False: the base moved on)."""
        tip = self.branch_commit(branch)
        if tip is None:
            return False
        try:
            self.repo.git.merge_base("--is-ancestor", self.base_commit, tip)
        except git.GitCommandError as error:
            if error.status == 1:
                return False
            raise RepositoryError(
                f"{self.name}: cannot compare {branch} with the base ({_last_line(error)})"
            ) from error
        return True

    # --- changing ----------------------------------------------------------------------

    @contextmanager
    def worktree(self, run_id: str) -> Iterator[Path]:
        """A detached worktree at the base commit in a temp dir; always removed afterwards.

        Stale worktree entries (their directory removed with a killed run's temp root) are
        pruned first."""
        self._prune()
        try:
            parent = Path(tempfile.mkdtemp(prefix=f"rotation-bot-{run_id[:8]}-"))
        except OSError as error:
            raise ServiceUnavailable(
                f"cannot create a worktree directory in {tempfile.gettempdir()} "
                f"({error.strerror}); free space there or point TMPDIR elsewhere"
            ) from error
        path = parent / "worktree"
        try:
            self.repo.git.worktree("add", "--detach", str(path), self.base_commit)
        except git.GitCommandError as error:
            free = shutil.disk_usage(parent).free
            shutil.rmtree(parent, ignore_errors=True)
            self._prune()
            raise ServiceUnavailable(
                f"cannot check out {self.name} into {parent} ({_first_error(error)}; "
                f"{describe_size(free)} free on that disk); free space there or point TMPDIR "
                "elsewhere"
            ) from error
        try:
            yield path
        finally:
            try:
                self.repo.git.worktree("remove", "--force", str(path))
            except git.GitCommandError as error:
                log.warning("worktree removal failed", extra={"error": _last_line(error)})
            shutil.rmtree(parent, ignore_errors=True)
            self._prune()

    def _prune(self) -> None:
        try:
            self.repo.git.worktree("prune")
        except git.GitCommandError as error:
            log.warning("git worktree prune failed", extra={"error": _last_line(error)})

    def _tree(self, worktree: Path) -> git.Repo:
        """A worktree's repository, with the same environment and safe overrides."""
        tree = git.Repo(worktree)
        _prepare(tree, self.git_options)
        return tree

    def commit(self, worktree: Path, message: str, files: list[str]) -> str:
        """Commit `files` in the worktree (on the detached HEAD); returns the commit id."""
        tree = self._tree(worktree)
        tree.git.add("--", *files)
        tree.git.commit("--no-verify", "-m", message)
        return tree.head.commit.hexsha

    def changed_files(self, worktree: Path) -> list[str]:
        """Paths that differ from the base commit in the worktree."""
        # GIT_OPTIONAL_LOCKS=0 is `git --no-optional-locks`: status writes nothing back
        status: str = self._tree(worktree).git.status(
            "--porcelain", "-z", "--ignore-submodules=all"
        )
        return sorted(entry[3:] for entry in status.split("\0") if len(entry) > 3)

    def publish_branch(self, branch: str, commit: str, *, expected: str | None = None) -> None:
        """Point `branch` at `commit` only if it still points at `expected` (None: only if it
        does not exist): in place for a local repo (a compare-and-swap of the ref), by a push
        with lease for a remote, so a commit someone pushed meanwhile is never overwritten."""
        ref = f"refs/heads/{branch}"
        if self.local:
            if not self.repo.head.is_detached and self.repo.active_branch.name == branch:
                raise RepositoryError(
                    f"{self.name}: {branch} is checked out; switch to another branch so the "
                    "bot can update it"
                )
            try:
                self.repo.git.update_ref(ref, commit, expected or "0" * 40)
            except git.GitCommandError as error:
                raise RepositoryError(
                    f"{self.name}: {branch} moved while the bot worked ({_last_line(error)}); "
                    "the next cycle looks again"
                ) from error
            return
        self._push(f"+{commit}:{ref}", lease=f"--force-with-lease={ref}:{expected or ''}")
        self.repo.git.update_ref(ref, commit)

    def delete_branch(self, branch: str) -> None:
        """Remove a bot branch (a superseded rotation)."""
        if not self.local:
            self._push(f":refs/heads/{branch}")
        if self.branch_commit(branch) is not None:
            self.repo.git.branch("-D", branch)

    def _push(self, refspec: str, *, lease: str | None = None) -> None:
        url = self.repo.git.config("--get", "remote.origin.url")
        environment: Mapping[str, str] = self.auth.environment() if self.auth else {}
        try:
            self.repo.git.push(url, *([lease] if lease else []), refspec, env=dict(environment))
        except git.GitCommandError as error:
            if "stale info" in str(error.stderr):
                raise RepositoryError(
                    f"{self.name}: the branch moved on the remote while the bot worked "
                    f"({_last_line(error)}); the next cycle looks again"
                ) from error
            raise ServiceUnavailable(
                f"push to {redact(url)} failed ({_last_line(error)}); check write access"
            ) from error


def _first_error(error: git.GitCommandError) -> str:
    """git's first `error:` or `fatal:` line (the cause; later ones are consequences)."""
    lines = redact(str(error.stderr or "")).splitlines()
    causes = [
        line.strip(" '") for line in lines if line.strip(" '").startswith(("error:", "fatal:"))
    ]
    return causes[0] if causes else _last_line(error)


def _last_line(error: git.GitCommandError) -> str:
    text = redact(str(error.stderr or error)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "git failed"
