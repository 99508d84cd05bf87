"""One module per query source. Each one defines the same four names, which
:func:`sami.data.load_queries` dispatches over:

* ``SPECS``: the specs it lists in :func:`sami.data.query_specs`;
* ``claims(spec) -> bool``: whether the spec names this source;
* ``task(spec) -> str | None``: the task its queries are for (``"dialogue"`` or
  ``"summarisation"``; ``None`` when the source cannot know, as for a user file);
* ``load(spec, split, *, column, data_path, cache_dir) -> list[Query]``: the queries of a
  normalised split (``train`` / ``eval`` / ``all``), in source order, with unique ids.
"""
