"""The node's storage: the SQLite store and its single writer, numbered migrations, the data directory, backups."""
