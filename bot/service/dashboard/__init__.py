"""The read-only web dashboard and the per-repository dashboard issue.

`data` derives what to show from the audit trail, `chart` lays out the inline SVG charts,
`render` turns both into HTML (Jinja2, autoescaped; templates and CSS ship in this package) and
the issue's markdown, `auth` decides who may look, and `web` is the WSGI application that
`rotation-bot serve` mounts under `/dashboard`.
"""
