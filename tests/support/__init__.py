"""Helpers shared by every suite, imported the ordinary way (``from tests.support.proxy import
TcpProxy``): one module per concept, each listed in its ``__all__``."""
