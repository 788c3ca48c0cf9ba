"""The stages behind the commands: train, mi, plot, sweep, browse (runs/show/ui), reproduce.

Each is a thin module over the library (store, activations, estimators, datasets,
models): it finds and creates runs, calls the library, and returns a summary the CLI
prints. Imports flow one way: `ibcli.cli` -> `ibcli.stages` -> the rest; nothing here
knows Typer.
"""
