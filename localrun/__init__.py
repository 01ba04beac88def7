"""The local run: the main job end to end on loopback, and a producer command.

`python -m localrun` (or `python3 dev.py local`) starts the stand-ins, the function
under the local host loop, sends the sample messages (or yours: `--messages`, `--jobs`,
see docs/local-run.md) and prints the outcome events.
`python -m localrun.produce` sends one message to a queue after validating it.
"""
