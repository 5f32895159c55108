"""Git, through GitPython: the target repository, a worktree per run, commits and branches.

The user's checkout is never modified: files are read from the base commit's objects, work
happens in a detached worktree in a temporary directory, and the only visible change is the
rotation branch (created in place for a local path, pushed for a remote).  Hooks never run and
no credential is written into any git config: pushes get an auth header through the
environment of that one command.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git

from bot.errors import ManifestError, RepositoryError, ServiceUnavailable, redact

log = logging.getLogger(__name__)

BOT_NAME = "rotation-bot"
BOT_EMAIL = "rotation-bot@users.noreply.github.com"
_OWNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": BOT_NAME,
    "GIT_AUTHOR_EMAIL": BOT_EMAIL,
    "GIT_COMMITTER_NAME": BOT_NAME,
    "GIT_COMMITTER_EMAIL": BOT_EMAIL,
}


_SYMLINK_MODE = 0o120000


def is_owner_name(value: str) -> bool:
    """Whether `value` looks like `owner/name` (a repository on the forge)."""
    return bool(_OWNER_NAME.match(value)) and not Path(value).exists()


def _prepare(repo: git.Repo) -> git.Repo:
    repo.git.update_environment(**_GIT_ENV)
    repo.git.set_persistent_git_options(c=["core.hooksPath=/dev/null", "commit.gpgSign=false"])
    return repo


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
        self, repo: git.Repo, *, name: str, local: bool, base_branch: str, auth: PushAuth | None
    ) -> None:
        self.repo = _prepare(repo)
        self.name = name
        self.local = local
        self.base_branch = base_branch
        self.auth = auth
        try:
            self.base_commit = repo.commit(base_branch).hexsha
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
        except (git.NoSuchPathError, git.InvalidGitRepositoryError) as error:
            raise RepositoryError(
                f"{path} is not a git repository; pass a checkout, a git URL or owner/name"
            ) from error
        if base is None:
            if repo.head.is_detached:
                raise RepositoryError(
                    f"{path}: HEAD is detached; check out a branch or pass --base"
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
            self.repo, name=self.name, local=self.local, base_branch=branch, auth=self.auth
        )

    # --- reading at the base commit ----------------------------------------------------

    def read_text(self, path: str) -> str | None:
        """A file's text at the base commit, or None when it does not exist there; a symlink
        (never followed: it could name a file outside the repository) or a file that is not
        UTF-8 is a `ManifestError` naming it."""
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
        data: bytes = blob.data_stream.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ManifestError(f"{path} is not UTF-8 text; fix its encoding") from error

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

    # --- changing ----------------------------------------------------------------------

    @contextmanager
    def worktree(self, run_id: str) -> Iterator[Path]:
        """A detached worktree at the base commit in a temp dir; always removed afterwards."""
        parent = Path(tempfile.mkdtemp(prefix=f"rotation-bot-{run_id[:8]}-"))
        path = parent / "worktree"
        self.repo.git.worktree("add", "--detach", str(path), self.base_commit)
        try:
            yield path
        finally:
            try:
                self.repo.git.worktree("remove", "--force", str(path))
            except git.GitCommandError as error:
                log.warning("worktree removal failed: %s", _last_line(error))
            shutil.rmtree(parent, ignore_errors=True)
            self.repo.git.worktree("prune")

    def commit(self, worktree: Path, message: str, files: list[str]) -> str:
        """Commit `files` in the worktree (on the detached HEAD); returns the commit id."""
        tree = git.Repo(worktree)
        tree.git.update_environment(**_GIT_ENV)
        tree.git.set_persistent_git_options(c=["core.hooksPath=/dev/null", "commit.gpgSign=false"])
        tree.git.add("--", *files)
        tree.git.commit("--no-verify", "-m", message)
        return tree.head.commit.hexsha

    def changed_files(self, worktree: Path) -> list[str]:
        """Paths that differ from the base commit in the worktree."""
        status: str = git.Repo(worktree).git.status("--porcelain", "-z")
        return sorted(entry[3:] for entry in status.split("\0") if len(entry) > 3)

    def publish_branch(self, branch: str, commit: str) -> None:
        """Point `branch` at `commit`: in place for a local repo, by push for a remote."""
        if self.local:
            self.repo.git.branch("--force", branch, commit)
            return
        self._push(f"+{commit}:refs/heads/{branch}")
        self.repo.git.branch("--force", branch, commit)

    def delete_branch(self, branch: str) -> None:
        """Remove a bot branch (a superseded rotation)."""
        if not self.local:
            self._push(f":refs/heads/{branch}")
        if self.branch_commit(branch) is not None:
            self.repo.git.branch("-D", branch)

    def _push(self, refspec: str) -> None:
        url = self.repo.git.config("--get", "remote.origin.url")
        environment: Mapping[str, str] = self.auth.environment() if self.auth else {}
        try:
            self.repo.git.push(url, refspec, env=dict(environment))
        except git.GitCommandError as error:
            raise ServiceUnavailable(
                f"push to {redact(url)} failed ({_last_line(error)}); check write access"
            ) from error


def _last_line(error: git.GitCommandError) -> str:
    text = redact(str(error.stderr or error)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "git failed"
