"""One module per command (group); each imports the library lazily inside the command."""
