"""The test suites of db_manager and the reference app: a package, so each module has a unique name."""
