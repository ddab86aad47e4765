"""The audit trail: the keyed, signed chain of events (`chain`), the keys that sign and
verify it (`keys`), the checkpoints that pin it (`checkpoints`), and the report built from
it (`trail` assembles the facts, `render` writes HTML, JSON and CSV)."""
