"""The gradient datastore: building it (the ``datastore`` and ``targets`` stages) and reading it."""
