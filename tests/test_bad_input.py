"""Bad input gets a one-line error naming the file or host, a distinct exit code, no branch, no
leftover worktree, and an audit record."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import git
import pytest

from bot.audit import AuditStore
from bot.managers.npm import DEFAULT_NPM
from tests.conftest import Env, bot, make_project
from tests.support.processes import free_port

NO_MAJOR = "runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"


def assert_nothing_changed(repo: git.Repo, env: Env, head: str) -> None:
    assert [h.name for h in repo.heads] == ["main"]
    assert repo.head.commit.hexsha == head
    assert len(repo.git.worktree("list").splitlines()) == 1
    runs = AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}").list_runs()
    assert runs and runs[0]["outcome"] == "error"


def mutate(repo: git.Repo, change: Callable[[Path], None]) -> str:
    root = Path(str(repo.working_tree_dir))
    change(root)
    repo.git.add("--all")
    repo.git.commit("-m", "break it", "--no-verify", "--allow-empty")
    return repo.head.commit.hexsha


LEFT_PAD_LOCK = {
    "lockfileVersion": 3,
    "packages": {
        "": {"name": "x", "dependencies": {"left-pad": "1.3.0"}},
        "node_modules/left-pad": {"version": "1.3.0"},
    },
}
CASES: dict[str, tuple[Callable[[Path], None], int, str]] = {
    "missing package.json": (
        lambda root: (root / "package.json").unlink(),
        2,
        "cannot rotate sharp: the repository has no Node.js project with a lockfile",
    ),
    "malformed package.json": (
        lambda root: (root / "package.json").write_text('{"dependencies": {"sharp": "0.33.4",}}'),
        2,
        "package.json is not valid JSON",
    ),
    "missing lockfile": (
        lambda root: (root / "package-lock.json").unlink(),
        2,
        "cannot rotate sharp: .: has a package.json but no lockfile: commit the lockfile",
    ),
    "malformed lockfile": (
        lambda root: (root / "package-lock.json").write_text('{"lockfileVersion": 1}'),
        2,
        "package-lock.json has lockfileVersion 1",
    ),
    "no sharp dependency": (
        lambda root: (
            (root / "package.json").write_text(
                json.dumps({"name": "x", "dependencies": {"left-pad": "1.3.0"}})
            ),
            (root / "package-lock.json").write_text(json.dumps(LEFT_PAD_LOCK)),
        ),
        2,
        "cannot rotate sharp: no project depends on sharp",
    ),
    "a yarn.lock without sharp": (
        lambda root: (
            (root / "package-lock.json").unlink(),
            (root / "yarn.lock").write_text("# yarn lockfile v1\n"),
        ),
        2,
        "cannot rotate sharp: .: yarn.lock has no sharp entry although package.json asks for it; "
        "run yarn install and commit the lockfile",
    ),
    "a bun project": (
        lambda root: (
            (root / "package-lock.json").unlink(),
            (root / "bun.lock").write_text("{}\n"),
        ),
        2,
        "cannot rotate sharp: .: uses bun (bun.lock)",
    ),
    "a pnpm lockfile v5": (
        lambda root: (
            (root / "package-lock.json").unlink(),
            (root / "pnpm-lock.yaml").write_text("lockfileVersion: 5.4\n"),
        ),
        2,
        "pnpm-lock.yaml has lockfileVersion '5.4'; rotation-bot reads v6 (pnpm 8) and v9",
    ),
    "a pnpm-workspace.yaml that is not YAML": (
        lambda root: (
            (root / "package-lock.json").unlink(),
            (root / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\n"),
            (root / "pnpm-workspace.yaml").write_text("packages: [unclosed\n"),
        ),
        2,
        "pnpm-workspace.yaml is not valid YAML",
    ),
    "a Yarn 1 yarn.lock that Yarn did not write": (
        lambda root: (
            (root / "package-lock.json").unlink(),
            (root / "yarn.lock").write_text(
                '# yarn lockfile v1\n\nsharp@0.33.4:\n  version "0.33.4"\n  resolved\n'
            ),
        ),
        2,
        "yarn.lock:5: cannot read 'resolved'; regenerate it with yarn install (remove it first "
        "if Yarn cannot read it) and commit it",
    ),
    "a Berry yarn.lock with an alias": (
        lambda root: (
            (root / "package-lock.json").unlink(),
            (root / "yarn.lock").write_text(
                "__metadata:\n  version: 8\na: &x {resolution: 'a@npm:1.0.0'}\nb: *x\n"
            ),
        ),
        2,
        "yarn.lock uses a YAML alias (*x); rotation-bot refuses aliases",
    ),
    "package.json not UTF-8": (
        lambda root: (root / "package.json").write_bytes(b'{"name": "caf\xe9"}'),
        2,
        "package.json is not UTF-8 text (invalid byte at offset 13); save it as UTF-8",
    ),
    "package.json 20,000 levels deep": (
        lambda root: (root / "package.json").write_text(
            '{"dependencies": {"sharp": "0.33.4"}, "x": ' + "[" * 20_000 + "]" * 20_000 + "}"
        ),
        2,
        "package.json nests deeper than 64 levels",
    ),
    "package.json of 10 MB": (
        lambda root: (root / "package.json").write_text(
            json.dumps({"dependencies": {"sharp": "0.33.4"}, "x": [0] * 3_500_000})
        ),
        2,
        "package.json is 10,500,044 bytes, over rotation-bot's 512 KiB cap for package.json",
    ),
    "lockfile 20,000 levels deep": (
        lambda root: (root / "package-lock.json").write_text(
            '{"lockfileVersion": 3, "packages": ' + "{" * 20_000 + "}" * 20_000 + "}"
        ),
        2,
        "package-lock.json nests deeper than 64 levels",
    ),
    ".npmrc not UTF-8": (
        lambda root: (root / ".npmrc").write_bytes(b"registry=http://127.0.0.1:9/\n# \xff\n"),
        2,
        ".npmrc is not UTF-8 text",
    ),
    "config not UTF-8": (
        lambda root: (root / ".github" / "rotation-bot.yml").write_bytes(b"version: 1 # \xfe\n"),
        2,
        ".github/rotation-bot.yml is not UTF-8 text",
    ),
    "config 20,000 levels deep": (
        lambda root: (root / ".github" / "rotation-bot.yml").write_text(
            "runbooks: " + "[" * 20_000 + "]" * 20_000 + "\n"
        ),
        2,
        ".github/rotation-bot.yml nests deeper than 64 levels",
    ),
    "unknown config key": (
        lambda root: (root / ".github" / "rotation-bot.yml").write_text(
            "runbooks:\n  sharp:\n    platfroms: [linux-x64]\n"
        ),
        2,
        ".github/rotation-bot.yml:3: unknown key runbooks.sharp.platfroms",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_repository_input(tmp_path: Path, env: Env, case: str) -> None:
    change, exit_code, message = CASES[case]
    repo = make_project(tmp_path / "app", env, config=NO_MAJOR)
    head = mutate(repo, change)

    result = bot(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert result.exit_code == exit_code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert_nothing_changed(repo, env, head)


PACKAGE_MANAGER_CASES = {
    "yarn@4.18.0": "package.json: packageManager says yarn@4.18.0 but the project's lockfile "
    "package-lock.json is npm's; make them agree",
    "npm@latest": "package.json: packageManager 'npm@latest' is not NAME@VERSION (npm, pnpm or "
    f'yarn); fix it (e.g. "npm@{DEFAULT_NPM}")',  # the project's own manager: following it works
}


@pytest.mark.parametrize("declared", sorted(PACKAGE_MANAGER_CASES))
def test_a_bad_package_manager_field_fails_the_plan_before_any_work(
    tmp_path: Path, env: Env, declared: str
) -> None:
    repo = make_project(tmp_path / "app", env, config=NO_MAJOR)

    def declare(root: Path) -> None:
        manifest = json.loads((root / "package.json").read_text())
        (root / "package.json").write_text(json.dumps({**manifest, "packageManager": declared}))

    head = mutate(repo, declare)

    for command in ("plan", "run"):
        result = bot(env, command, "--repo", str(tmp_path / "app"), "--runbook", "sharp")

        assert result.exit_code == 2, result.output
        assert PACKAGE_MANAGER_CASES[declared] in result.output
        assert "regenerate-lockfile" not in result.output
    assert_nothing_changed(repo, env, head)


def test_pins_that_disagree_with_the_locked_sharp_are_shown_and_realigned(
    tmp_path: Path, env: Env
) -> None:
    repo = make_project(tmp_path / "app", env, config=NO_MAJOR)
    mutate(
        repo,
        lambda root: (root / "package.json").write_text(
            (root / "package.json").read_text().replace('"1.0.2"', '"1.0.1"')
        ),
    )

    result = bot(env, "plan", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert result.exit_code == 0, result.output
    assert (
        "note: package.json overrides.@img/sharp-libvips-linux-x64 is '1.0.1' but sharp 0.33.4 "
        "needs 1.0.2; the rotation realigns it"
    ) in result.output


def test_repository_without_sharp_skips_the_runbook_when_not_asked_by_name(
    tmp_path: Path, env: Env
) -> None:
    repo = make_project(tmp_path / "app", env, config=NO_MAJOR)
    mutate(repo, CASES["no sharp dependency"][0])

    result = bot(env, "run", "--repo", str(tmp_path / "app"), "--json")

    assert result.exit_code == 0, result.output
    sharp = next(s for s in json.loads(result.stdout) if s["runbook"] == "sharp")
    assert sharp["outcome"] == "nothing-to-do"
    assert "no project depends on sharp" in sharp["message"]


def test_unreachable_registry_exits_3(tmp_path: Path, env: Env) -> None:
    repo = make_project(tmp_path / "app", env, config=NO_MAJOR)
    dead = f"http://127.0.0.1:{free_port()}/"
    env.extra["NPM_CONFIG_REGISTRY"] = dead

    result = bot(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert result.exit_code == 3
    assert f"{dead.rstrip('/')} is unreachable" in result.output
    assert_nothing_changed(repo, env, repo.head.commit.hexsha)


@pytest.fixture
def garbage_registry() -> Iterator[str]:
    """A registry answering a sharp packument whose newest version is not strict semver."""
    packument = {
        "name": "sharp",
        "versions": {
            "0.33.4": {
                "name": "sharp",
                "version": "0.33.4",
                "dist": {
                    "tarball": "http://127.0.0.1:1/sharp.tgz",
                    "integrity": "sha512-" + "A" * 86 + "==",
                },
            },
            "0.33.5-evil; rm -rf /": {"name": "sharp", "version": "0.33.5-evil; rm -rf /"},
        },
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(packument).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_version_from_registry_that_is_not_strict_semver(
    tmp_path: Path, env: Env, garbage_registry: str
) -> None:
    repo = make_project(tmp_path / "app", env, config=NO_MAJOR)
    env.extra["NPM_CONFIG_REGISTRY"] = garbage_registry

    result = bot(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert result.exit_code == 1
    assert "gave version '0.33.5-evil; rm -rf /', which is not strict semver" in result.output
    assert_nothing_changed(repo, env, repo.head.commit.hexsha)


def test_unknown_runbook_and_missing_repository(tmp_path: Path, env: Env) -> None:
    make_project(tmp_path / "app", env, config=NO_MAJOR)
    unknown = bot(env, "plan", "--repo", str(tmp_path / "app"), "--runbook", "esbuild")
    assert unknown.exit_code == 2 and "unknown runbook 'esbuild'" in unknown.output
    missing = bot(env, "plan", "--repo", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert "is not an existing path, a git URL or owner/name" in missing.output
