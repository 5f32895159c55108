"""Key-path look-ups in a loaded document tree (the dicts and lists that JSON and YAML load
into), shared by `package_json.PackageJson` and `yaml_document.YamlDocument`.

Pure: reads the tree, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

Path_ = tuple[str, ...]


def value_at(data: object, location: Path_) -> object:
    """The value at a key path in `data`, or None when a step is missing or not a mapping."""
    node = data
    for key in location:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def strings_under(node: object, path: Path_) -> Iterator[tuple[Path_, str]]:
    """Every string value in the mapping tree `node` (which sits at `path`), with its path;
    keys are turned into strings (YAML may load `1:` as an int), lists are not entered."""
    if isinstance(node, dict):
        for key, item in node.items():
            if isinstance(item, str):
                yield (*path, str(key)), item
            else:
                yield from strings_under(item, (*path, str(key)))
