"""The DaVinci Resolve front end: a Workspace ▸ Scripts ▸ Edit script (`V2A Generate.py`), the
`v2a_resolve` module that does its work, and `install`, which copies both into Resolve."""
