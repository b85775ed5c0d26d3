"""The generator: candidate sources (one registry), template families, search and the knowledge base.

Importing this package registers every source and every family (discover by import).
"""

from . import baseline_variants, families, template_source  # noqa: F401  (registration)
