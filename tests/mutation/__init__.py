"""Mutation testing of the pure decision modules: `python -m tests.mutation --help`.

Not part of CI (it runs thousands of test selections); its result is committed as
docs/mutation-score.json. docs/mutation-testing.md says how it works.
"""
