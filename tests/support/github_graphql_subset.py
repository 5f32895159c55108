"""Extract the part of GitHub's GraphQL schema the bot uses into a small SDL fixture.

GitHub publishes its GraphQL schema in the npm package `@octokit/graphql-schema`
(`schema.graphql`, 1.2 MB).  The bot sends one mutation, `enablePullRequestAutoMerge`, so this
keeps that field of `Mutation`, its input type whole (so that every argument is checked), the
payload and object types trimmed to the fields the bot selects, and one field of `Query` (a
schema needs a query root); descriptions and directives' uses are dropped.  The local GitHub-shaped
server validates every GraphQL request against the result with graphql-core.

Regenerate the committed fixture (from a temporary directory, never tests/harness):

    (cd /tmp && npm pack @octokit/graphql-schema@15.26.1 && tar xzf octokit-graphql-schema-15.26.1.tgz)
    python tests/support/github_graphql_subset.py /tmp/package/schema.graphql \\
        tests/fixtures/github-graphql-subset.graphql
"""

from __future__ import annotations

import sys
from pathlib import Path

from graphql import build_schema, parse, print_ast
from graphql.language import (
    DocumentNode,
    EnumTypeDefinitionNode,
    InputObjectTypeDefinitionNode,
    ObjectTypeDefinitionNode,
    ScalarTypeDefinitionNode,
)

SOURCE = "@octokit/graphql-schema@15.26.1 schema.graphql"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "github-graphql-subset.graphql"
# type → the fields kept (None: every field: input types and enums are kept whole)
KEPT: dict[str, tuple[str, ...] | None] = {
    "Query": ("viewer",),
    "User": ("login",),
    "Mutation": ("enablePullRequestAutoMerge",),
    "EnablePullRequestAutoMergeInput": None,
    "EnablePullRequestAutoMergePayload": ("clientMutationId", "pullRequest"),
    "PullRequest": ("number", "autoMergeRequest"),
    "AutoMergeRequest": ("enabledAt", "mergeMethod", "commitHeadline"),
    "PullRequestMergeMethod": None,
    "DateTime": None,
    "GitObjectID": None,
}


def extract(document: DocumentNode) -> str:
    """The kept definitions of `document`, trimmed, as SDL."""
    kept = []
    for node in document.definitions:
        name = getattr(getattr(node, "name", None), "value", None)
        if name not in KEPT:
            continue
        fields = KEPT[name]
        node.description = None  # type: ignore[union-attr]
        node.directives = ()  # type: ignore[union-attr]
        if isinstance(node, ObjectTypeDefinitionNode) and fields is not None:
            node.interfaces = ()
            node.fields = tuple(f for f in node.fields if f.name.value in fields)
        for item in getattr(node, "fields", None) or getattr(node, "values", None) or ():
            item.description = None
            item.directives = ()
            for argument in getattr(item, "arguments", None) or ():
                argument.description = None
        assert isinstance(
            node,
            ObjectTypeDefinitionNode
            | InputObjectTypeDefinitionNode
            | EnumTypeDefinitionNode
            | ScalarTypeDefinitionNode,
        )
        kept.append(node)
    text = "\n\n".join(print_ast(node) for node in kept) + "\n"
    build_schema(text)  # the subset must be a schema on its own
    return f"# Extracted from {SOURCE} by tests/support/github_graphql_subset.py\n\n{text}"


def main(source: str, target: str) -> None:
    """Write the subset of the schema at `source` to `target`."""
    document = parse(Path(source).read_text(encoding="utf-8"), no_location=True)
    Path(target).write_text(extract(document), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
