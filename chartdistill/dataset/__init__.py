"""The two dataset variants: filter, deduplicate, split and write parquet with a card."""
