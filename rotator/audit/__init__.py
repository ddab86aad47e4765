"""The audit trail: the chain of events and how each is linked (`chain`), who may sign it
(`signing`: writers' keys, the public keyring, roles), walking and replaying it (`verify`),
the key material on disk (`keys`), the checkpoints that pin it (`checkpoints`), and the
report built from it (`trail` assembles the facts, `render` writes HTML, JSON and CSV)."""
