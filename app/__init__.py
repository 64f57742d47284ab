"""The reference app: the novel bot of seed 000 built on db_manager."""
