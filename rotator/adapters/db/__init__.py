"""The SQL state store: schema, fenced writes, the audit chain, migrations."""
