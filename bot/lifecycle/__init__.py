"""Living with the bot after its first pull request: what happens to an open rotation when the
base moves or someone pushes to it, which versions people held back or approved, and how many
pull requests the bot may open.

- `policy`: pure decisions: regenerate, leave alone, hold for a human edit, wait for an
  approval or a slot, turn on auto-merge;
- `records`: the commands people gave (`/rotate ignore`, `unignore`, `approve`), stored as
  chained records in the audit trail, and the audit reads the limits need;
- `explain`: `/rotate explain` as text.
"""
