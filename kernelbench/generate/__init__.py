"""The generator: candidate sources (one registry), template families, search and the knowledge base."""
