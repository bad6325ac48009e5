"""General helpers shared by every part of the project (files, downloads, command lines, parsing, images).

Nothing here knows about networks: `stylegan2/` is networks, ops and their formats.
"""
