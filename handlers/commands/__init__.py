"""The intake's handlers: one module per aggregate a command changes (runs, definitions,
threads, tenants; forks start runs from recorded ones), one table of handlers by command
class (`intake.COMMAND_HANDLERS`), and `runs.new_run`, the one way a run begins."""
