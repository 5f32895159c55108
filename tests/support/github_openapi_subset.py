"""Extract the response schemas of the GitHub REST operations the bot uses into a small fixture.

GitHub publishes its REST API as an OpenAPI 3.0 description in the npm package
`@octokit/openapi` (385 MB installed).  The tests only need the response schemas of a dozen
operations, so this script keeps those, follows their `$ref`s, and trims each object schema to
its `required` properties (plus the optional ones the bot reads), converting OpenAPI's
`nullable` into JSON Schema so that `jsonschema` can validate with Draft 2020-12.

Regenerate the committed fixture (from a temporary directory, never tests/harness):

    npm install --prefix /tmp/octokit-openapi --no-save --ignore-scripts @octokit/openapi@23.0.2
    python tests/support/github_openapi_subset.py \
        /tmp/octokit-openapi/node_modules/@octokit/openapi/generated/api.github.com.json \
        tests/fixtures/github-openapi-subset.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SOURCE = "@octokit/openapi@23.0.2 generated/api.github.com.json"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "github-openapi-subset.json"

# operationId → (method, path template); the statuses kept are those the local server sends.
OPERATIONS: dict[str, tuple[str, str]] = {
    "repos/get": ("get", "/repos/{owner}/{repo}"),
    "pulls/list": ("get", "/repos/{owner}/{repo}/pulls"),
    "pulls/create": ("post", "/repos/{owner}/{repo}/pulls"),
    "pulls/get": ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    "pulls/update": ("patch", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    "pulls/request-reviewers": (
        "post",
        "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
    ),
    "issues/add-labels": ("post", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    "issues/add-assignees": ("post", "/repos/{owner}/{repo}/issues/{issue_number}/assignees"),
    "issues/create-comment": ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    "issues/list-for-repo": ("get", "/repos/{owner}/{repo}/issues"),
    "issues/create": ("post", "/repos/{owner}/{repo}/issues"),
    "issues/update": ("patch", "/repos/{owner}/{repo}/issues/{issue_number}"),
    "reactions/create-for-issue-comment": (
        "post",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
    ),
    "repos/get-collaborator-permission-level": (
        "get",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
    ),
    "apps/list-installations": ("get", "/app/installations"),
    "apps/create-installation-access-token": (
        "post",
        "/app/installations/{installation_id}/access_tokens",
    ),
    "apps/list-repos-accessible-to-installation": ("get", "/installation/repositories"),
    "rate-limit/get": ("get", "/rate_limit"),
    "issues/list-comments": ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    "repos/get-commit": ("get", "/repos/{owner}/{repo}/commits/{ref}"),
    "repos/get-content": ("get", "/repos/{owner}/{repo}/contents/{path}"),
    "security-advisories/list-global-advisories": ("get", "/advisories"),
}
STATUSES = ("200", "201", "403", "404", "422")
# Where the description's inlined response schema contradicts its own component: list-installations
# inlines `account` as allOf(simple-user, enterprise) (both at once), while the `installation`
# component (and GitHub's answers) say anyOf.  Use the component there.
RESPONSE_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("apps/list-installations", "200"): {
        "type": "array",
        "items": {"$ref": "#/components/schemas/installation"},
    },
}

# Optional properties the bot reads (everything `required` is always kept).
OPTIONAL_KEPT: dict[str, tuple[str, ...]] = {
    "pull-request": ("draft", "assignees", "requested_reviewers", "requested_teams"),
    "issue": ("body", "assignees", "pull_request"),
    "issue-comment": ("body",),
    "full-repository": ("permissions",),
    "installation-token": ("permissions", "repository_selection"),
    "basic-error": ("message", "documentation_url", "status"),
    "validation-error": ("errors",),
}
DROPPED_KEYWORDS = (
    "description",
    "example",
    "examples",
    "title",
    "format",
    "deprecated",
    "readOnly",
    "x-github",
    "externalDocs",
    "maxLength",
    "minLength",
    "pattern",
)


class Extractor:
    """Walks schemas from the response roots, copying and trimming each referenced component."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components: dict[str, Any] = {}

    def reference(self, ref: str) -> dict[str, Any]:
        prefix = "#/components/schemas/"
        if not ref.startswith(prefix):
            raise ValueError(f"unexpected $ref {ref}")
        name = ref[len(prefix) :]
        if name not in self.components:
            self.components[name] = {}  # placeholder: breaks cycles
            self.components[name] = self.trim(
                self.document["components"]["schemas"][name], component=name
            )
        return {"$ref": ref}

    def trim(self, schema: dict[str, Any], *, component: str | None = None) -> dict[str, Any]:
        if "$ref" in schema:
            return self.reference(schema["$ref"])
        result: dict[str, Any] = {}
        for key, value in schema.items():
            if key in DROPPED_KEYWORDS or key == "nullable":
                continue
            if key == "properties":
                keep = set(schema.get("required", ())) | set(OPTIONAL_KEPT.get(component or "", ()))
                result[key] = {
                    name: self.trim(item) for name, item in value.items() if name in keep
                }
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                result[key] = self.trim(value)
            elif key in ("allOf", "anyOf", "oneOf"):
                result[key] = [self.trim(item) for item in value]
            else:
                result[key] = value
        if schema.get("nullable"):
            result = _nullable(result)
        return result

    def response(self, method: str, path: str, status: str) -> dict[str, Any] | None:
        responses = self.document["paths"][path][method]["responses"]
        response = responses.get(status)
        if response is None:
            return None
        if "$ref" in response:
            response = self.document["components"]["responses"][response["$ref"].split("/")[-1]]
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        return None if schema is None else self.trim(schema)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 `nullable: true` → JSON Schema that also accepts null."""
    kind = schema.get("type")
    if isinstance(kind, str) and not any(key in schema for key in ("allOf", "anyOf", "oneOf")):
        nullable = {**schema, "type": [kind, "null"]}
        if "enum" in schema and None not in schema["enum"]:
            nullable["enum"] = [*schema["enum"], None]
        return nullable
    return {"anyOf": [schema, {"type": "null"}]}


def extract(document: dict[str, Any]) -> dict[str, Any]:
    """The fixture: operations with their trimmed response schemas, and the components they use."""
    extractor = Extractor(document)
    operations: dict[str, Any] = {}
    for operation_id, (method, path) in OPERATIONS.items():
        found = document["paths"][path][method]["operationId"]
        if found != operation_id:
            raise ValueError(f"{method} {path} is {found}, expected {operation_id}")
        responses = {}
        for status in STATUSES:
            override = RESPONSE_OVERRIDES.get((operation_id, status))
            schema = (
                extractor.trim(override)
                if override is not None
                else extractor.response(method, path, status)
            )
            if schema is not None:
                responses[status] = schema
        operations[operation_id] = {"method": method, "path": path, "responses": responses}
    return {
        "source": SOURCE,
        "operations": operations,
        "components": {"schemas": dict(sorted(extractor.components.items()))},
    }


def main(argv: list[str]) -> None:
    """`github_openapi_subset.py API_JSON [OUTPUT]`."""
    document = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    output = Path(argv[1]) if len(argv) > 1 else FIXTURE
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(extract(document), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
