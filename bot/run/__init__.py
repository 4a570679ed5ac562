"""The run path: one finished CI run, from its jobs to the comment, as stages with typed inputs and
outputs. ``flow.py`` reads top to bottom; each stage is a module of its own (``docs/architecture.md``).

This package imports nothing itself, so ``bot.run.results`` can be used by the pure modules.
"""
