"""``python -m abm.params``: regenerate ``docs/parameters.md`` from the schema."""

from abm.params.docs import write

print(f"wrote {write()}")
