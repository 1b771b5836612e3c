"""Chart inputs: the seeded synthetic generator, the Chart-to-text importer, shared records."""
