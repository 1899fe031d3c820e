"""The ``vidfast`` command line: parses options and calls the library (``vidfast``)."""
