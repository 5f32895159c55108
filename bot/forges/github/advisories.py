"""GitHub's advisory database: the reviewed security advisories that affect one npm version.

Asked only when a rotation would otherwise wait for a slot (a rotation that fixes an advisory is
never held by limits), so a normal cycle costs no request here.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.errors import InvalidRemoteData
from bot.forges.base import Advisory
from bot.forges.github.client import GitHubClient, string_field


class Advisories:
    """Global security advisories, read with the credentials of the repository asking."""

    def __init__(self, client: GitHubClient) -> None:
        self.client = client

    def find(self, repo: str, package: str, version: str) -> tuple[Advisory, ...]:
        """Reviewed npm advisories whose vulnerable range includes `package@version`."""
        client = self.client.client_for(repo)
        items = self.client.list_all(
            client,
            "/advisories",
            {"ecosystem": "npm", "affects": f"{package}@{version}", "type": "reviewed"},
        )
        source = f"{self.client.host} advisories"
        found = []
        for item in items:
            for affected in item.get("vulnerabilities") or ():
                if not isinstance(affected, Mapping):
                    raise InvalidRemoteData(f"{source}: a vulnerability that is not an object")
                named = affected.get("package")
                if not isinstance(named, Mapping) or named.get("name") != package:
                    continue
                found.append(
                    Advisory(
                        id=string_field(item.get("ghsa_id"), source=source, what="ghsa_id"),
                        summary=string_field(item.get("summary"), source=source, what="summary"),
                        url=string_field(item.get("html_url"), source=source, what="html_url"),
                        vulnerable_range=str(affected.get("vulnerable_version_range") or ""),
                        first_patched_version=str(affected.get("first_patched_version") or ""),
                    )
                )
        return tuple(found)
