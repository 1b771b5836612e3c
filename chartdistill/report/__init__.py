"""The evaluation report: a static HTML page per variant and an index (stage `report`)."""
